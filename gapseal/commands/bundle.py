"""``gapseal bundle``: create, pack, unpack, verify and inspect signed offline bundles."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build and check signed offline bundles.", no_args_is_help=True)
