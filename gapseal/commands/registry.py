"""``gapseal registry``: load verified bundles into an on-site OCI registry."""

from __future__ import annotations

import typer

app = typer.Typer(help="Serve bundles and their images from an on-site OCI registry.", no_args_is_help=True)
