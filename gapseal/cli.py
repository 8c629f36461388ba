"""The ``gapseal`` command: mounts the sub-applications and maps errors to exit codes.

Exit codes everywhere: 0 ok, 1 error (verification failures included), 2 usage, 3 audit findings.
This is the only place that catches ``GapsealError``; tracebacks only with ``--verbose``.
"""

# No ``from __future__ import annotations``: see gapseal/commands/bundle.py.

import sys
import traceback
from collections.abc import Sequence

import typer

# typer >= 0.29 vendors click as typer._click; its exception classes are the ones raised.
from typer._click import exceptions as click_exceptions

from gapseal import __version__
from gapseal.commands import _output, audit, bundle, install, keys, registry
from gapseal.errors import EXIT_ERROR, EXIT_USAGE, GapsealError

app = typer.Typer(
    name="gapseal",
    help="Carry self-hosted AI across an air gap and prove it stayed there.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # keys and passphrases must never reach a traceback
    add_completion=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(bundle.app, name="bundle")
app.add_typer(registry.app, name="registry")
app.add_typer(install.hosts_app, name="hosts")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(audit.evidence_app, name="evidence")
app.add_typer(audit.policy_app, name="policy")
# ``gapseal install`` is a single command: install.py registers it on ``app`` through ``register``.
install.register(app)


def _version(value: bool) -> None:
    if value:
        _output.stdout.print(f"gapseal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Bundle, install and audit self-hosted AI on air-gapped hosts."""
    _output.state.verbose = verbose


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=list(argv) if argv is not None else None, prog_name="gapseal", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        _output.stderr.print("aborted")
        return EXIT_ERROR
    except click_exceptions.ClickException as e:
        e.show()
        return EXIT_USAGE if isinstance(e, click_exceptions.UsageError) else e.exit_code
    except GapsealError as e:
        if _output.state.verbose:
            traceback.print_exc()
        if _output.state.json:
            _output.emit_json(e.as_dict())
        _output.stderr.print(f"[bold red]error:[/] {e.diagnostics()}", highlight=False)
        return e.exit_code
    except KeyboardInterrupt:
        _output.stderr.print("interrupted")
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
