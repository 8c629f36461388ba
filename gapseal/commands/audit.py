"""``gapseal audit``, ``gapseal evidence`` and ``gapseal policy``: facts, policies and signed evidence."""

from __future__ import annotations

import typer

audit_app = typer.Typer(
    help="Collect facts from hosts, evaluate policies, write signed evidence.", no_args_is_help=True
)
evidence_app = typer.Typer(help="Verify signed audit evidence offline.", no_args_is_help=True)
policy_app = typer.Typer(help="Test the Rego policies.", no_args_is_help=True)
