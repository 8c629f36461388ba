"""``install_bundle``: verify, stage, run ``site.yml`` through ansible-runner, report per host.

Order matters and is the security argument:

1. the inventory is parsed and checked (no host contacted);
2. the bundle is verified in full (signature by a trusted key, every blob's digest, the exact file set, expiry,
   rollback): a bundle that fails never reaches Ansible, so no host is touched;
3. the playbook receives the verified descriptor's file lists with the path of each blob in the verified layout
   (``src``); the ``gapseal_files`` action pushes only what a host lacks, and the host hashes every blob again
   before renaming it into place, so a blob changed after verification is still refused, on the host.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gapseal.bundler.descriptor import BundleDescriptor, FileEntry, ImageComponent
from gapseal.bundler.rollback import RollbackState
from gapseal.bundler.verify import VerifiedBundle, verify_bundle
from gapseal.errors import InstallError
from gapseal.installer.inventory import Inventory, load_inventory
from gapseal.installer.report import (
    HostReport,
    InstallReport,
    ReportBundle,
    ReportFailure,
    ReportService,
    ReportServiceAttempt,
)
from gapseal.installer.runner import HostOutcome, PlaybookRun, run_playbook
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.resources import playbooks_dir

SITE_PLAYBOOK = "site.yml"


@dataclass(frozen=True)
class InstallOptions:
    """How to run the install."""

    check: bool = False
    """Ansible check mode: report what would change, change nothing."""
    limit: str | None = None
    """Ansible ``--limit`` host pattern."""
    tags: Sequence[str] = ()
    """Run only roles with these tags (preflight and hardware always run)."""
    skip_tags: Sequence[str] = ()
    """Skip roles with these tags."""
    forks: int | None = None
    """Parallel hosts (default: ansible.cfg's 25)."""
    services: Sequence[Mapping[str, Any]] = ()
    """Services to define (``gapseal_services``) instead of the bundle's own (the site chooses bind and port)."""
    playbook: Path | None = None
    """Another site playbook (default: the shipped ``site.yml``)."""
    envvars: Mapping[str, str] | None = None
    """Extra environment for ansible-playbook."""


def _files(entries: Sequence[FileEntry], bundle: VerifiedBundle) -> list[dict[str, Any]]:
    return [
        {"path": f.path, "digest": f.digest, "size": f.size, "src": str(bundle.blob_path(f.digest))} for f in entries
    ]


def _image(image: ImageComponent, version: str, bundle: VerifiedBundle) -> dict[str, Any]:
    """One image for the images role: pinned digest, and every blob (for loading from the bundle, no registry)."""
    blobs = {image.digest: image.size}
    for m in image.manifests:
        if m.digest != image.digest:
            blobs[m.digest] = m.size
        blobs[m.config.digest] = m.config.size
        blobs.update({layer.digest: layer.size for layer in m.layers})
    return {
        "name": image.name,
        "digest": image.digest,
        "size": image.size,
        "media_type": image.media_type,
        "tag": f"{image.name}:{version}",
        "blobs": [
            {
                "path": digest.removeprefix("sha256:"),
                "digest": digest,
                "size": size,
                "src": str(bundle.blob_path(digest)),
            }
            for digest, size in sorted(blobs.items())
        ],
    }


def playbook_vars(bundle: VerifiedBundle, services: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Return the extra variables ``site.yml`` reads, from a verified bundle (see the playbook header)."""
    d: BundleDescriptor = bundle.descriptor
    return {
        "gapseal_bundle": {
            "name": d.name,
            "version": d.version,
            "manifest_digest": bundle.manifest_digest,
            "created": d.created,
        },
        "gapseal_models": [{"name": m.name, "files": _files(m.files, bundle)} for m in d.models],
        "gapseal_builds": [
            {
                "name": b.name,
                "variants": [
                    {
                        "backend": v.backend,
                        "arch": v.arch,
                        "requires": v.requires.model_dump(mode="json", exclude_none=True),
                        **({"binaries": v.binaries.model_dump(mode="json")} if v.binaries is not None else {}),
                        "files": _files(v.files, bundle),
                    }
                    for v in b.variants
                ],
            }
            for b in d.builds
        ],
        "gapseal_wheels": (
            {
                "python_version": d.wheels.python_version,
                "files": [
                    {**f, "name": w.name, "version": w.version}
                    for f, w in zip(_files(d.wheels.files, bundle), d.wheels.files, strict=True)
                ],
            }
            if d.wheels is not None
            else {}
        ),
        # Images are pulled by each host from the on-site registry `gapseal registry load` filled (images role),
        # pinned by the digest the signed descriptor names (``tag`` is the one the load gave them, for people).
        "gapseal_images": [_image(i, d.version, bundle) for i in d.images or []],
        # Services come from the signed descriptor (the spec's ``services:``); a --services file replaces them.
        "gapseal_services": [dict(s) for s in services] or [s.model_dump(mode="json") for s in d.services or []],
    }


def _variants(facts: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for build, entry in (facts.get("gapseal_variants") or {}).items():
        if isinstance(entry, Mapping):
            chosen = entry.get("chosen", entry)
            if isinstance(chosen, Mapping) and chosen.get("backend"):
                out[str(build)] = str(chosen["backend"])
    return out


def _attempt(a: Mapping[str, Any]) -> ReportServiceAttempt:
    raw_exit = a.get("exit")
    ex: Mapping[str, Any] = raw_exit if isinstance(raw_exit, Mapping) else {}
    return ReportServiceAttempt(
        backend=str(a.get("backend", "")),
        healthy=bool(a.get("healthy")),
        reason=str(a.get("reason") or ""),
        exit_code=str(ex.get("code") or "") if ex.get("active") != "active" else "",
        exit_status=str(ex.get("status") or "") if ex.get("active") != "active" else "",
        journal=[str(line) for line in a.get("journal") or []],
    )


def _service(s: Mapping[str, Any], check: Mapping[str, Any] | None) -> ReportService:
    """A service's state, with its health check's outcome (the service role's ``gapseal_service_checks``)."""
    if check is None:
        return ReportService(name=str(s["name"]), unit=str(s["unit"]), state=str(s["state"]))
    raw_exposure = check.get("exposure")
    exposure: Mapping[str, Any] = raw_exposure if isinstance(raw_exposure, Mapping) else {}
    restored = check.get("restored")
    return ReportService(
        name=str(s["name"]),
        unit=str(s["unit"]),
        state=str(s["state"]),
        backend=str(check.get("backend") or "") or None,
        healthy=bool(check.get("healthy")),
        ready_seconds=check.get("ready_seconds"),
        exposure=exposure.get("score"),
        exposure_level=exposure.get("level"),
        restored=str(restored) if restored else None,
        attempts=[_attempt(a) for a in check.get("attempts") or [] if isinstance(a, Mapping)],
    )


def _host_report(outcome: HostOutcome) -> HostReport:
    status = "unreachable" if outcome.unreachable else ("ok" if outcome.succeeded else "failed")
    checks = {
        str(c.get("name")): c for c in outcome.facts.get("gapseal_service_checks") or [] if isinstance(c, Mapping)
    }
    services = [
        _service(s, checks.get(str(s["name"])))
        for s in outcome.facts.get("gapseal_services") or []
        if isinstance(s, Mapping)
    ]
    variants = _variants(outcome.facts)
    for check in checks.values():  # after a fallback, the build runs on the variant its service settled on
        if check.get("healthy") and check.get("build") and check.get("backend"):
            variants[str(check["build"])] = str(check["backend"])
    if any(s.healthy is False for s in services):
        status = "failed" if status == "ok" else status  # a service that is not healthy never leaves a host "ok"
    return HostReport(
        name=outcome.name,
        status=status,
        ok=outcome.ok,
        changed=outcome.changed,
        failed=outcome.failed,
        unreachable=outcome.unreachable,
        skipped=outcome.skipped,
        variants=variants,
        services=services,
        failures=[ReportFailure(task=f.task, message=f.message, unreachable=f.unreachable) for f in outcome.failures],
        changed_tasks=outcome.changed_tasks,
    )


def build_report(
    bundle: VerifiedBundle,
    inventory: Inventory,
    run: PlaybookRun,
    *,
    options: InstallOptions,
    started: datetime,
    duration: float,
) -> InstallReport:
    """Summarize ``run`` per host, in inventory order (hosts outside ``--limit`` are left out)."""
    order = {name: i for i, name in enumerate(inventory.names())}
    outcomes = sorted(run.hosts.values(), key=lambda h: (order.get(h.name, len(order)), h.name))
    hosts = [_host_report(h) for h in outcomes]
    return InstallReport(
        ok=bool(hosts) and all(h.status == "ok" for h in hosts) and run.rc == 0,
        check=options.check,
        bundle=ReportBundle(
            name=bundle.descriptor.name,
            version=bundle.descriptor.version,
            manifest_digest=bundle.manifest_digest,
            signer_key_id=bundle.signer_key_id,
            bytes=bundle.descriptor.total_size(),
        ),
        inventory=str(inventory.path),
        limit=options.limit,
        tags=list(options.tags),
        started=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration_seconds=round(duration, 3),
        hosts=hosts,
    )


def install_bundle(
    bundle_path: Path,
    inventory_path: Path,
    trusted_keys: Sequence[Any],
    *,
    options: InstallOptions = InstallOptions(),  # noqa: B008 - frozen dataclass, never mutated
    rollback: RollbackState | None = None,
    allow_downgrade: bool = False,
    progress: Progress = NO_PROGRESS,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> InstallReport:
    """Verify ``bundle_path`` and install it onto every host of ``inventory_path``; return the report.

    Raises ``VerificationError`` (before any host is contacted) for a bundle that does not verify,
    ``InventoryError`` for a bad inventory, ``PlaybookError`` when Ansible cannot run at all. Host failures are
    in the report (``report.ok`` is False), not raised.
    """
    # Ansible runs in the playbooks' directory: the blob paths handed to it must not depend on the caller's cwd.
    bundle_path, inventory_path = Path(bundle_path).absolute(), Path(inventory_path).absolute()
    inventory = load_inventory(inventory_path)
    if not trusted_keys:
        raise InstallError("no trusted key given", hint="pass --key PUB or --trust trust.yaml")
    unpacked: Path | None = None
    try:
        if bundle_path.is_file():
            # A tar or the first part of a split set: unpacked by the strict reader and verified in the same pass
            # (every byte hashed as it is written), so what Ansible sends is exactly what was verified.
            from gapseal.bundler.unpack import unpack_and_verify

            progress.note(f"unpacking and verifying {bundle_path}")
            unpacked = Path(tempfile.mkdtemp(prefix=".gapseal-install-", dir=bundle_path.parent))
            result = unpack_and_verify(
                bundle_path,
                unpacked / "layout",
                trusted_keys=trusted_keys,
                rollback=rollback,
                allow_downgrade=allow_downgrade,
                record=True,
                progress=progress,
            )
            if result.verified is None:  # trusted_keys is not empty: unpack_and_verify verifies
                raise InstallError("the bundle was unpacked but not verified", where=str(bundle_path))
            bundle = result.verified
        else:
            progress.note(f"verifying {bundle_path}")
            bundle = verify_bundle(
                bundle_path,
                trusted_keys,
                rollback=rollback,
                allow_downgrade=allow_downgrade,
                record=True,
                progress=progress,
            )
        return _install_verified(bundle, inventory, inventory_path, options, progress, on_event)
    finally:
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)


def _install_verified(
    bundle: VerifiedBundle,
    inventory: Inventory,
    inventory_path: Path,
    options: InstallOptions,
    progress: Progress,
    on_event: Callable[[dict[str, Any]], None] | None,
) -> InstallReport:
    if bundle.layout_dir is None:  # pragma: no cover - install_bundle always verifies a directory
        raise InstallError("install needs the bundle as a layout directory", where=str(bundle.source))
    extravars = playbook_vars(bundle, options.services)
    playbook = options.playbook or playbooks_dir() / SITE_PLAYBOOK
    progress.note(
        f"installing {bundle.descriptor.name} {bundle.descriptor.version} onto {len(inventory.hosts)} host(s)"
    )
    started = datetime.now(UTC)
    t0 = time.monotonic()
    run = run_playbook(
        playbook,
        inventory_path,
        extravars,
        check=options.check,
        limit=options.limit,
        tags=options.tags,
        skip_tags=options.skip_tags,
        forks=options.forks,
        envvars=options.envvars,
        progress=progress,
        on_event=on_event,
    )
    return build_report(bundle, inventory, run, options=options, started=started, duration=time.monotonic() - t0)


_SERVICE_KEYS = frozenset({"name", "build", "model", "exec", "args", "port", "bind", "env", "health", "fallback"})


def load_services(path: Path) -> list[dict[str, Any]]:
    """Read a services file: a YAML list of ``{name, build, model, exec, args, port, bind, env}``, checked.

    They replace the services the bundle's spec declared: the bind address and port are the site's choice.
    """
    import ipaddress

    import yaml

    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise InstallError(f"services file {where} does not exist", where=where, hint="check the path") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        reason = getattr(e, "strerror", None) or ("not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e)
        raise InstallError(f"{where}: cannot read the services file: {reason}", where=where) from e
    if not isinstance(data, list):
        raise InstallError(f"{where}: must be a YAML list of services", where=where)
    out: list[dict[str, Any]] = []
    for i, svc in enumerate(data):
        at = f"{where}: services[{i}]"
        if not isinstance(svc, dict):
            raise InstallError(f"{at}: must be a mapping", where=where)
        unknown = set(svc) - _SERVICE_KEYS
        if unknown:
            raise InstallError(f"{at}: unknown field(s) {', '.join(sorted(map(str, unknown)))}", where=where)
        for required in ("name", "build"):
            if not isinstance(svc.get(required), str) or not svc[required]:
                raise InstallError(f"{at}: {required} is required (a string)", where=where)
        port = svc.get("port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise InstallError(f"{at}: port must be 1-65535, got {port!r}", where=where)
        try:
            ipaddress.ip_address(str(svc.get("bind", "127.0.0.1")))
        except ValueError as e:
            raise InstallError(f"{at}: bind must be an IP address ({e})", where=where) from e
        exe = str(svc.get("exec", "bin/serve"))
        if exe.startswith("/") or ".." in exe.split("/"):
            raise InstallError(f"{at}: exec must be a path inside the build, got {exe!r}", where=where)
        env = svc.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
            raise InstallError(f"{at}: env must be a mapping of names to values", where=where)
        if not isinstance(svc.get("args", []), list):
            raise InstallError(f"{at}: args must be a list", where=where)
        if svc.get("health") is not None:
            from pydantic import ValidationError

            from gapseal.bundler.spec import HealthCheck

            try:
                svc["health"] = HealthCheck.model_validate(svc["health"]).model_dump(mode="json")
            except ValidationError as e:
                first = e.errors()[0]
                raise InstallError(f"{at}: health: {first['msg']}", where=where) from e
        if not isinstance(svc.get("fallback", False), bool):
            raise InstallError(f"{at}: fallback must be true or false", where=where)
        out.append(dict(svc))
    return out
