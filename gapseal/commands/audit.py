"""``gapseal audit``, ``gapseal evidence`` and ``gapseal policy``: facts, policies and signed evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

audit_app = typer.Typer(
    help="Collect facts from hosts, evaluate policies, write signed evidence.", no_args_is_help=True
)
evidence_app = typer.Typer(help="Verify signed audit evidence offline.", no_args_is_help=True)
policy_app = typer.Typer(help="Test the Rego policies.", no_args_is_help=True)


# ----------------------------------------------------------------------------------------- evidence verify (evidence)


@evidence_app.command("verify")
def evidence_verify(
    evidence_dir: Annotated[Path, typer.Argument(help="The evidence directory written by `gapseal audit run`.")],
    key: Annotated[list[Path], typer.Option("--key", help="The auditor's public key (.pub); repeat to trust several.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the verification result as JSON.")] = False,
) -> int:
    """Verify an evidence directory offline: signature, every file's digest, no missing or extra file."""
    from gapseal.audit.verify_evidence import verify_evidence
    from gapseal.commands import _output
    from gapseal.signing.keys import load_public_key

    _output.configure(json_output=json_output)
    trusted = [load_public_key(k) for k in key]
    verified = verify_evidence(evidence_dir, trusted)
    if json_output:
        _output.emit_json(
            {
                "ok": True,
                "path": str(evidence_dir),
                "compliant": verified.compliant,
                "signer_key_id": verified.signer_key_id,
                "files": list(verified.files),
                "predicate": verified.predicate,
            }
        )
    else:
        verdict = "compliant" if verified.compliant else "NOT compliant (findings)"
        _output.stdout.print(
            f"evidence verified: {len(verified.files)} files, signed by key {verified.signer_key_id[:16]}…; "
            f"audit verdict: {verdict}",
            highlight=False,
        )
    return 0
