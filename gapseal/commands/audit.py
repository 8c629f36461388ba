"""``gapseal audit``, ``gapseal evidence`` and ``gapseal policy``: facts, policies and signed evidence."""

# No ``from __future__ import annotations`` in the command modules: typer reads the annotations of every command
# at each start, and string annotations are eval'd one by one (about 800 evals: two thirds of building the CLI).

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
    key: Annotated[
        list[Path] | None,
        typer.Option("--key", help="The auditor's public key (.pub); repeat to trust several."),
    ] = None,
    trust: Annotated[
        Path | None,
        typer.Option("--trust", help="A trust file (kind: Trust); its keys are trusted and name the signer."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the verification result as JSON.")] = False,
) -> int:
    """Verify an evidence directory offline: signature, every file's digest, no missing or extra file."""
    from gapseal.audit.verify_evidence import verify_evidence
    from gapseal.commands import _output
    from gapseal.signing.trust import load_named_trust, trusted_keys

    _output.configure(json_output=json_output)
    trusted = trusted_keys(key or [], trust)
    names = {k.key_id: n for n, k in load_named_trust(trust)} if trust is not None else {}
    verified = verify_evidence(evidence_dir, trusted)
    signer_name = names.get(verified.signer_key_id)
    if json_output:
        _output.emit_json(
            {
                "ok": True,
                "path": str(evidence_dir),
                "compliant": verified.compliant,
                "signer_key_id": verified.signer_key_id,
                "signer_name": signer_name,
                "files": list(verified.files),
                "predicate": verified.predicate,
            }
        )
    else:
        verdict = "compliant" if verified.compliant else "NOT compliant (findings)"
        who = (
            f"{signer_name!r} (key {verified.signer_key_id[:16]}…)"
            if signer_name
            else f"key {verified.signer_key_id[:16]}…"
        )
        _output.stdout.print(
            f"evidence verified: {len(verified.files)} files, signed by {who}; audit verdict: {verdict}",
            highlight=False,
            markup=False,
        )
        scope = verified.predicate.get("scope") or {}
        if isinstance(scope, dict) and scope.get("site_digest"):
            _output.stdout.print(
                f"scope: {scope.get('organisation')} / {scope.get('system')}, assessed by {scope.get('assessor')}",
                highlight=False,
                markup=False,
            )
        pdf = (verified.predicate.get("report") or {}).get("pdf") or {}
        if isinstance(pdf, dict) and pdf.get("made") is False:
            _output.stdout.print(f"report.pdf: {pdf.get('reason')}", highlight=False, markup=False)
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
    from gapseal.errors import UsageError, output_exists

    _output.configure(json_output=json_output)
    targets = [parse_probe_target(p) for p in probe or []]
    if len(targets) > MAX_ACTIVE_PROBES:
        raise UsageError(f"at most {MAX_ACTIVE_PROBES} --probe targets, got {len(targets)}")
    if not root.is_dir():
        raise UsageError(f"--root {root} is not a directory")
    if out is not None:
        if out.exists() and not overwrite:
            raise output_exists(out)
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


# ----------------------------------------------------------------------------------------- audit run


@audit_app.command("run")
def audit_run(
    out: Annotated[Path, typer.Option("--out", "-o", help="The evidence directory to write (must not exist).")],
    key: Annotated[
        Path, typer.Option("--key", help="The auditor's signing key (.key); passphrase from GAPSEAL_KEY_PASSPHRASE.")
    ],
    inventory: Annotated[
        Path | None, typer.Option("--inventory", "-i", help="Ansible inventory of the hosts (default: this host).")
    ] = None,
    opa_url: Annotated[
        str | None, typer.Option("--opa-url", help="Evaluate on this OPA server instead of in-process regopy.")
    ] = None,
    waivers: Annotated[Path | None, typer.Option("--waivers", help="Waivers file (rule, hosts, expiry).")] = None,
    probe: Annotated[
        list[str] | None,
        typer.Option(
            "--probe",
            help="Active egress probe target HOST:PORT or dns://HOST[:PORT], IP addresses only; repeatable. "
            "Without it no packet leaves any host.",
        ),
    ] = None,
    root: Annotated[
        Path, typer.Option("--root", help="Prefix of this host's files, for a local audit (a gapseal_root).")
    ] = Path("/"),
    site: Annotated[
        Path | None,
        typer.Option(
            "--site",
            help="Site data file (apiVersion: gapseal/v1, kind: Site): scope, and the allowlist of enclave networks, "
            "default-route gateways, resolvers, NTP servers, proxies, registries and log hosts; its sha256 is "
            "recorded in the evidence. Without it the defaults apply: enclave = RFC 1918, ULA and link-local "
            "ranges; no gateway, resolver, NTP server, proxy, registry or log host allowed (and the evidence "
            "says so).",
        ),
    ] = None,
    trust: Annotated[
        Path | None,
        typer.Option(
            "--trust",
            help="Trust file (kind: Trust): the evidence names the signing key as this file does, and --previous "
            "evidence may be signed by any of its keys.",
        ),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            help="The last evidence directory: verified (auditor key or --trust), then new, fixed and unchanged "
            "findings are shown and signed in changes.json.",
        ),
    ] = None,
    pdf: Annotated[
        bool,
        typer.Option(
            "--pdf/--no-pdf",
            help="Also print the report to report.pdf with headless Chromium (run in an empty network namespace). "
            "Without Chromium the audit keeps the HTML, says so, and records that no PDF was made.",
        ),
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing evidence directory.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> int:
    """Audit the hosts: collect facts, evaluate the policies, write and sign the evidence (exit 3 on findings)."""
    from gapseal.audit.evidence import check_output_dir
    from gapseal.audit.probes import MAX_ACTIVE_PROBES, parse_probe_target
    from gapseal.audit.run import AuditRunRequest, run_audit
    from gapseal.commands import _output
    from gapseal.commands._secrets import private_key_from
    from gapseal.errors import EXIT_FINDINGS, EXIT_OK, UsageError, check_input

    _output.configure(json_output=json_output, quiet=quiet)
    probes = list(probe or [])
    for p in probes:
        parse_probe_target(p)
    if len(probes) > MAX_ACTIVE_PROBES:
        raise UsageError(f"at most {MAX_ACTIVE_PROBES} --probe targets, got {len(probes)}")
    # a missing or wrong-kind input is exit 1 like every bad input (errors.check_input: one wording everywhere)
    if inventory is not None:
        check_input(inventory, "inventory")
    if waivers is not None:
        check_input(waivers, "waivers file")
    if site is not None:
        check_input(site, "site file", hint="write one as described in `gapseal audit run --help`")
    if inventory is None and not root.is_dir():
        raise UsageError(f"--root {root} is not a directory")
    if trust is not None:
        check_input(trust, "trust file", hint="pass the trust.yaml that names the auditor key")
    if previous is not None:
        check_input(
            previous, "previous evidence", want="directory", hint="name the evidence directory of the last audit"
        )
    check_output_dir(out, overwrite=overwrite)  # before the long work
    signing_key = private_key_from(key)
    _output.info(f"signing with auditor key {signing_key.key_id[:16]}… from {key}")
    pub = key.with_suffix(".pub")
    request = AuditRunRequest(
        out_dir=out,
        key=signing_key,
        verify_key_hint=str(pub) if pub.is_file() else "AUDITOR.pub",
        inventory=inventory,
        opa_url=opa_url,
        waivers=waivers,
        probes=tuple(probes),
        overwrite=overwrite,
        root=root,
        site=site,
        trust=trust,
        previous=previous,
        pdf=pdf,
    )
    with _output.progress() as prog:
        outcome = run_audit(request, prog)
    s = outcome.results.summary
    if json_output:
        _output.emit_json(
            {
                "ok": True,
                "compliant": s.compliant,
                "evidence": str(out),
                "report": str(out / "report.html"),
                "summary": s.model_dump(mode="json"),
                "site": outcome.site.model_dump(mode="json"),
                "report_pdf": outcome.evidence.pdf.as_data() if outcome.evidence.pdf else None,
                "changes": outcome.evidence.predicate.get("previous"),
                "findings": [
                    {
                        "host": h.host,
                        "rule": r.rule,
                        "status": r.status,
                        "controls": list(r.controls),
                        "message": r.message,
                    }
                    for h in outcome.results.hosts
                    for r in h.rules
                    if r.status in ("fail", "unknown")
                ],
                "timings": outcome.timings,
            }
        )
    else:
        for h in outcome.results.hosts:
            for r in h.rules:
                if r.status in ("fail", "unknown"):
                    _output.stdout.print(
                        f"{h.host}: {r.status.upper()} {r.rule} [{', '.join(r.controls)}] {r.message}", highlight=False
                    )
        written_pdf = outcome.evidence.pdf
        if written_pdf is not None and not written_pdf.made:
            _output.stderr.print(
                f"warning: {written_pdf.reason}; the HTML report is complete and signed", highlight=False, markup=False
            )
        changed = outcome.evidence.predicate.get("previous")
        if isinstance(changed, dict):
            _output.stdout.print(
                f"since {changed['path']}: {changed['new']} new, {changed['fixed']} fixed, "
                f"{changed['unchanged']} unchanged finding(s)",
                highlight=False,
                markup=False,
            )
        verdict = "COMPLIANT" if s.compliant else f"NOT COMPLIANT ({s.failed} failed, {s.unknown} unknown)"
        _output.stdout.print(
            f"{verdict}: {s.hosts} host(s), {s.rules} rule(s), {s.waived} waived; evidence signed in {out}; report "
            f"{out / 'report.html'}"
            + (f" and {out / 'report.pdf'}" if written_pdf is not None and written_pdf.made else ""),
            highlight=False,
        )
    return EXIT_OK if s.compliant else EXIT_FINDINGS


# ----------------------------------------------------------------------------------------- audit evaluate


def _load_data_override(path: Path | None) -> dict[str, object] | None:
    """Read a ``--data`` file: a site file (``kind: Site``) or a plain mapping deep-merged over policies/data."""
    if path is None:
        return None
    from gapseal.audit.site import load_data_file
    from gapseal.errors import AuditError, UsageError

    try:
        return load_data_file(path)[0]
    except AuditError as e:  # a bad --data argument is a usage error (exit 2), as it always was
        raise UsageError(e.message, where=e.where, hint=e.hint) from e


@audit_app.command("evaluate")
def audit_evaluate(
    facts: Annotated[list[Path], typer.Argument(help="Facts JSON file(s) written by `gapseal audit collect`.")],
    opa_url: Annotated[
        str | None, typer.Option("--opa-url", help="Evaluate on this OPA server instead of in-process regopy.")
    ] = None,
    waivers: Annotated[Path | None, typer.Option("--waivers", help="Waivers file (rule, hosts, expiry).")] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Site data: a site file (kind: Site, as `audit run --site` takes) or a YAML/JSON mapping "
            "deep-merged over policies/data, e.g. {allowlist: {enclave: [10.20.0.0/16]}}.",
        ),
    ] = None,
    policies: Annotated[
        Path | None, typer.Option("--policies", help="Policies directory (default: the policies shipped with gapseal).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results document as JSON.")] = False,
) -> int:
    """Evaluate the policies on saved facts: exit 0 compliant, 3 findings, 1 error."""
    from gapseal.audit.engines import load_policy_set, make_engine
    from gapseal.audit.evaluate import evaluate_hosts, load_host_input
    from gapseal.audit.waivers import NO_WAIVERS, load_waivers
    from gapseal.commands import _output
    from gapseal.errors import EXIT_FINDINGS, EXIT_OK, UsageError, check_input

    _output.configure(json_output=json_output)
    for path in facts:
        check_input(path, "facts file")
    if waivers is not None:
        check_input(waivers, "waivers file")
    if policies is not None and not policies.is_dir():
        raise UsageError(f"--policies {policies} is not a directory")
    override = _load_data_override(data)
    waiver_set = load_waivers(waivers) if waivers is not None else NO_WAIVERS
    policy_set = load_policy_set(policies, data_override=override)
    hosts = [load_host_input(path) for path in facts]
    with make_engine(opa_url) as engine:
        engine.load(policy_set)
        results = evaluate_hosts(hosts, engine, waivers=waiver_set)
    if json_output:
        _output.emit_json(results.model_dump(mode="json"))
    else:
        for h in results.hosts:
            for r in h.rules:
                if r.status == "pass":
                    continue
                _output.stdout.print(
                    f"{h.host}: {r.status.upper()} {r.rule} ({r.severity}) {r.title} [{', '.join(r.controls)}]",
                    highlight=False,
                    markup=False,
                )
                for f in r.findings:
                    _output.stdout.print(f"    - {f.message}", highlight=False, markup=False)
                if r.status in ("fail", "unknown"):
                    _output.stdout.print(f"    remediation: {r.remediation}", highlight=False, markup=False)
        s = results.summary
        verdict = "COMPLIANT" if s.compliant else "NOT COMPLIANT"
        _output.stdout.print(
            f"{verdict}: {s.hosts} host(s), {s.rules} rule(s): {s.passed} passed, {s.failed} failed, "
            f"{s.unknown} unknown, {s.waived} waived ({results.engine})",
            highlight=False,
            markup=False,
        )
    return EXIT_OK if results.compliant else EXIT_FINDINGS


# ----------------------------------------------------------------------------------------- policy test


@policy_app.command("test")
def policy_test(
    opa_url: Annotated[
        str | None, typer.Option("--opa-url", help="Run the tests on this OPA server instead of in-process regopy.")
    ] = None,
    policies: Annotated[
        Path | None, typer.Option("--policies", help="Policies directory (default: the policies shipped with gapseal).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print each test's outcome as JSON.")] = False,
) -> int:
    """Run every *_test.rego test with the chosen engine; exit 1 if any fails."""
    from gapseal.audit.engines import load_policy_set, make_engine
    from gapseal.commands import _output
    from gapseal.errors import EXIT_ERROR, EXIT_OK, AuditError

    _output.configure(json_output=json_output)
    if policies is not None and not policies.is_dir():
        from gapseal.errors import UsageError

        raise UsageError(f"--policies {policies} is not a directory")
    policy_set = load_policy_set(policies)
    if not policy_set.tests:
        raise AuditError("no Rego tests found (test_* rules in *_test.rego files)", where=str(policy_set.root))
    with make_engine(opa_url) as engine:
        engine.load(policy_set, include_tests=True)
        outcomes = engine.run_tests()
        description = engine.description
    passed = sum(1 for o in outcomes if o.passed)
    failed = len(outcomes) - passed
    if json_output:
        _output.emit_json(
            {
                "ok": failed == 0,
                "engine": description,
                "passed": passed,
                "failed": failed,
                "tests": [
                    {
                        "package": o.test.package,
                        "name": o.test.name,
                        "file": f"{o.test.file}:{o.test.line}",
                        "passed": o.passed,
                        "detail": o.detail,
                    }
                    for o in outcomes
                ],
            }
        )
    else:
        for o in outcomes:
            mark = "PASS" if o.passed else "FAIL"
            line = f"{mark} data.{o.test.package}.{o.test.name} ({o.test.file}:{o.test.line})"
            _output.stdout.print(line + ("" if o.passed else f": {o.detail}"), highlight=False, markup=False)
        _output.stdout.print(f"{description}:", highlight=False, markup=False)
        _output.stdout.print(f"{passed} passed, {failed} failed", highlight=False, markup=False)
    return EXIT_OK if failed == 0 else EXIT_ERROR
