"""``gapseal keys``: key pairs for signing bundles and evidence."""

from __future__ import annotations

import typer

app = typer.Typer(help="Create and inspect signing keys.", no_args_is_help=True)
