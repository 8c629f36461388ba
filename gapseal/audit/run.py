"""``gapseal audit run``: collect on every host, evaluate the policies, write and sign the evidence directory.

Without an inventory the local host is audited in-process. With one, ``playbooks/audit.yml`` runs through
ansible-runner and its ``gapseal_audit_facts`` module collects on each host; the facts come back in the module's
result. A host that cannot be audited (unreachable, module failure, facts that do not parse) is an error naming the
host, never a silent gap in the evidence.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapseal.audit.changes import PreviousEvidence, compare_results, load_previous
from gapseal.audit.controls import ControlsCatalog
from gapseal.audit.engines.policyset import PolicySet
from gapseal.audit.evidence import (
    SITE_FILE,
    WAIVERS_FILE,
    ControlInfo,
    HostEvidence,
    WrittenEvidence,
    check_host_name,
    check_output_dir,
    facts_path,
    input_file,
    write_evidence,
)
from gapseal.audit.facts import HostFacts, load_facts
from gapseal.audit.results import Results
from gapseal.audit.scope import Signer, signer_of
from gapseal.audit.site import SiteRecord, load_site, site_record
from gapseal.audit.waivers import WaiverSet
from gapseal.errors import AuditError, UsageError
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.resources import playbooks_dir
from gapseal.signing.keys import SigningKey

AUDIT_PLAYBOOK = "audit.yml"
FACTS_MODULE = "gapseal_audit_facts"
LOCAL_HOST_FALLBACK = "localhost"

FRAMEWORK_NAMES = {"eu-ai-act": "EU AI Act", "hipaa": "HIPAA"}
"""Short display names of the catalog's frameworks (the catalog carries their full titles)."""


@dataclass(frozen=True)
class AuditRunRequest:
    """What ``audit run`` was asked to do."""

    out_dir: Path
    key: SigningKey = field(repr=False)
    verify_key_hint: str = "AUDITOR.pub"
    """How the report names the public key in its verify command (the .pub beside the signing key)."""
    inventory: Path | None = None
    opa_url: str | None = None
    waivers: Path | None = None
    probes: tuple[str, ...] = ()
    overwrite: bool = False
    root: Path = Path("/")
    """File-system prefix for a local audit (tests and prefixed installs)."""
    site: Path | None = None
    """The site data file (``gapseal.audit.site``); None: the documented defaults apply and the evidence says so."""
    trust: Path | None = None
    """A trust file: names the signing key in the evidence, and its keys may verify ``previous``."""
    previous: Path | None = None
    """The last evidence directory: verified, then compared with (new, fixed and unchanged findings)."""
    pdf: bool = False
    """Print the report to PDF with headless Chromium (in an empty network namespace), when Chromium is there; the
    CLI asks for it by default (``--pdf/--no-pdf``), library callers opt in."""


@dataclass(frozen=True)
class AuditRunOutcome:
    """What ``audit run`` produced, and how long each phase took (seconds)."""

    evidence: WrittenEvidence
    results: Results
    timings: dict[str, float]
    site: SiteRecord
    """The site data the verdict rests on (also in ``results.json``)."""


def controls_from_catalog(catalog: ControlsCatalog | None = None) -> dict[str, ControlInfo]:
    """Return every control of ``catalog`` (default: the shipped one) as the report and OSCAL show it."""
    from gapseal.audit.controls import load_catalog

    catalog = catalog or load_catalog()
    out: dict[str, ControlInfo] = {}
    for fw in catalog.frameworks:
        name = FRAMEWORK_NAMES.get(fw.id, fw.title)
        for c in fw.controls:
            rationales = tuple(
                (rule, cited[c.id]) for rule, cited in sorted(catalog.citations.items()) if c.id in cited
            )
            out[c.id] = ControlInfo(
                id=c.id, framework=name, title=f"{c.reference}: {c.title}", requires=c.requires, rationales=rationales
            )
    return out


def _host_evidence(host: str, facts: HostFacts) -> HostEvidence:
    """Serialise ``facts`` once; these exact bytes are evaluated, stored and signed."""
    return HostEvidence(host=check_host_name(host), facts_bytes=facts.to_json().encode("utf-8"), facts=facts)


def collect_local(request: AuditRunRequest, progress: Progress = NO_PROGRESS) -> list[HostEvidence]:
    """Collect the facts of this host in-process."""
    from gapseal.audit.collect import collect_facts
    from gapseal.audit.probes import parse_probe_target

    targets = [parse_probe_target(p) for p in request.probes]
    facts = collect_facts(request.root, targets, progress=progress)
    name = socket.gethostname()
    try:
        check_host_name(name)
    except AuditError:
        name = LOCAL_HOST_FALLBACK
    return [_host_evidence(name, facts)]


def _facts_from_result(host: str, res: Mapping[str, Any]) -> HostFacts:
    """Find the facts document in the module's result (``facts``, or ``ansible_facts.gapseal_audit_facts``)."""
    doc: Any = res.get("facts")
    if doc is None:
        doc = (res.get("ansible_facts") or {}).get("gapseal_audit_facts")
    if doc is None:
        raise AuditError(f"{FACTS_MODULE} returned no facts for {host}", where=host)
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return load_facts(text, where=f"facts of {host}")


def collect_inventory(request: AuditRunRequest, progress: Progress = NO_PROGRESS) -> list[HostEvidence]:
    """Run ``playbooks/audit.yml`` on every inventory host; return each host's facts, or raise naming a host."""
    from gapseal.installer.inventory import load_inventory
    from gapseal.installer.runner import run_playbook

    if request.inventory is None:
        raise UsageError("no inventory given")
    inventory = load_inventory(request.inventory)
    names = inventory.names()
    if not names:
        raise UsageError("the inventory lists no hosts", where=str(request.inventory))
    for name in names:
        check_host_name(name)
    results: dict[str, Mapping[str, Any]] = {}

    def on_event(event: dict[str, Any]) -> None:
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and data.get("task_action", "").endswith(FACTS_MODULE):
            results[str(data.get("host"))] = data.get("res") or {}

    run = run_playbook(
        playbooks_dir() / AUDIT_PLAYBOOK,
        request.inventory,
        {"gapseal_audit_probes": list(request.probes)},
        progress=progress,
        on_event=on_event,
    )
    evidence: list[HostEvidence] = []
    for name in names:
        outcome = run.host(name)
        if not outcome.succeeded or name not in results:
            why = "; ".join(f"{f.task}: {f.message}" for f in outcome.failures) or "no facts came back"
            state = "unreachable" if any(f.unreachable for f in outcome.failures) else "failed"
            raise AuditError(
                f"cannot audit host {name} ({state}): {why}",
                where=name,
                hint="check ssh access and that python3 runs on the host",
            )
        evidence.append(_host_evidence(name, _facts_from_result(name, results[name])))
    return evidence


def evaluate(
    hosts: Sequence[HostEvidence], policy_set: PolicySet, *, waivers: WaiverSet, opa_url: str | None = None
) -> Results:
    """Evaluate ``policy_set`` on every host's stored facts (regopy in-process, or the OPA server at ``opa_url``)."""
    from gapseal.audit.engines import make_engine
    from gapseal.audit.evaluate import HostInput, evaluate_hosts

    inputs = [
        HostInput(
            host=he.host,
            facts=he.facts.model_dump(mode="json"),
            facts_ref=facts_path(he.host),
            facts_digest="sha256:" + hashlib.sha256(he.facts_bytes).hexdigest(),
        )
        for he in hosts
    ]
    with make_engine(opa_url) as engine:
        engine.load(policy_set)
        return evaluate_hosts(inputs, engine, waivers=waivers)


def _signer_and_previous(request: AuditRunRequest) -> tuple[Signer, PreviousEvidence | None]:
    """Name the signing key (from ``--trust``) and verify ``--previous`` with it and the trust file's keys."""
    from gapseal.signing.trust import load_named_trust

    named = load_named_trust(request.trust) if request.trust is not None else []
    signer = signer_of(request.key.public, {k.key_id: n for n, k in named}, str(request.trust))
    previous = None
    if request.previous is not None:
        previous = load_previous(request.previous, [request.key.public, *(k for _, k in named)])
    return signer, previous


def run_audit(request: AuditRunRequest, progress: Progress = NO_PROGRESS) -> AuditRunOutcome:
    """Collect, evaluate, write and sign; return the written evidence and the phase timings.

    Everything that can be refused is refused before the first host is touched: the output directory, the probe
    targets, the site file, the policy set and the waivers file.
    """
    from gapseal.audit.engines import load_policy_set
    from gapseal.audit.probes import parse_probe_target
    from gapseal.audit.waivers import NO_WAIVERS, load_waivers

    start = time.perf_counter()
    check_output_dir(request.out_dir, overwrite=request.overwrite)
    for p in request.probes:
        parse_probe_target(p)
    loaded = load_site(request.site) if request.site is not None else None
    # One load: the catalog the report names is the one hashed into the results' policy digest (site data included).
    policy_set = load_policy_set(data_override=loaded.site.data_override() if loaded else None)
    waivers = load_waivers(request.waivers) if request.waivers else NO_WAIVERS
    waivers.check_rules(r.id for r in policy_set.rules)
    signer, previous = _signer_and_previous(request)

    t0 = time.perf_counter()
    hosts = collect_inventory(request, progress) if request.inventory else collect_local(request, progress)
    t1 = time.perf_counter()
    record = site_record(loaded)
    results = evaluate(hosts, policy_set, waivers=waivers, opa_url=request.opa_url).model_copy(update={"site": record})
    t2 = time.perf_counter()
    inputs = (
        [input_file(request.waivers, WAIVERS_FILE, waivers.digest, "The waivers file applied")]
        if request.waivers
        else []
    )
    if loaded is not None and request.site is not None:
        inputs.append(input_file(request.site, SITE_FILE, loaded.digest, "The site file: scope and enclave data"))
    written = write_evidence(
        request.out_dir,
        hosts=hosts,
        results=results,
        controls=controls_from_catalog(policy_set.catalog),
        key=request.key,
        overwrite=request.overwrite,
        verify_key_hint=request.verify_key_hint,
        progress=progress,
        signer=signer,
        inputs=inputs,
        changes=compare_results(previous.results, results, previous.run) if previous is not None else None,
        pdf=request.pdf,
    )
    t3 = time.perf_counter()
    timings = {
        "load_policies": t0 - start,
        "collect": t1 - t0,
        "evaluate": t2 - t1,
        "write_and_sign": t3 - t2,
        "total": t3 - start,
    }
    return AuditRunOutcome(evidence=written, results=results, timings=timings, site=record)
