"""``gapseal install`` and ``gapseal hosts``: verified bundles onto isolated hosts with Ansible."""

from __future__ import annotations

import typer

hosts_app = typer.Typer(help="Inspect the hosts of an inventory: hardware and build variants.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add the top-level ``gapseal install`` command to the root application."""
