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


# ----------------------------------------------------------------------------------------- audit collect


@audit_app.command("collect")
def audit_collect(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the facts JSON here (default: print it to stdout).")
    ] = None,
    root: Annotated[
        Path, typer.Option("--root", help="Prefix of the host's files (a namespace host's gapseal_root).")
    ] = Path("/"),
    probe: Annotated[
        list[str] | None,
        typer.Option(
            "--probe",
            help="Active egress probe target HOST:PORT (TCP) or dns://HOST[:PORT], IP addresses only; repeatable. "
            "Without it no packet leaves the host.",
        ),
    ] = None,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", help="Seconds per active probe.")] = 2.0,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Install record to check (default: ROOT/var/lib/gapseal/installed.json)."),
    ] = None,
    data_path: Annotated[
        list[Path] | None, typer.Option("--data-path", help="A data directory whose storage to report; repeatable.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the facts document to stdout (for machines).")
    ] = False,
) -> int:
    """Collect the facts of this host: routes, firewall, DNS, proxies, sockets, probes, telemetry, storage, files."""
    import os
    import sys
    import tempfile

    from gapseal.audit.collect import collect_facts
    from gapseal.audit.probes import MAX_ACTIVE_PROBES, parse_probe_target
    from gapseal.commands import _output
    from gapseal.errors import UsageError

    _output.configure(json_output=json_output)
    targets = [parse_probe_target(p) for p in probe or []]
    if len(targets) > MAX_ACTIVE_PROBES:
        raise UsageError(f"at most {MAX_ACTIVE_PROBES} --probe targets, got {len(targets)}")
    if not root.is_dir():
        raise UsageError(f"--root {root} is not a directory")
    if out is not None:
        if out.exists() and not overwrite:
            raise UsageError(f"{out} exists", hint="pass --overwrite to replace it")
        if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
            raise UsageError(f"cannot write {out}: {out.parent} is not a writable directory")
    with _output.progress() as prog:
        facts = collect_facts(
            root=root,
            probes=targets,
            installed_record=record,
            progress=prog,
            data_paths=data_path or [],
            probe_timeout=probe_timeout,
        )
    document = facts.to_json()
    if out is not None:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(document)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if json_output or out is None:
        sys.stdout.write(document)
        sys.stdout.flush()
    unknown = facts.unknown_domains()
    _output.info(
        f"facts of {facts.host.hostname} ({facts.host.netns}): "
        + (f"unknown: {', '.join(unknown)}" if unknown else "every domain collected")
        + (f"; written to {out}" if out is not None else "")
    )
    return 0
