"""``gapseal install`` and ``gapseal hosts``: verified bundles onto isolated hosts with Ansible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gapseal.commands import _output
from gapseal.errors import UsageError

hosts_app = typer.Typer(help="Inspect the hosts of an inventory: hardware and build variants.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print the result as one JSON document on stdout (implies --quiet).")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress display.")
_KEYS = typer.Option([], "--key", help="A trusted public key (NAME.pub); repeatable.")
_TRUST = typer.Option(None, "--trust", help="A trust.yaml listing trusted public keys.")
_INVENTORY = typer.Option(..., "--inventory", "-i", help="Ansible YAML inventory of the hosts.")
_LIMIT = typer.Option(None, "--limit", "-l", help="Only hosts matching this Ansible pattern.")


def _split(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def _summary_table(report: Any) -> Table:
    table = Table(title=f"{report.bundle.name} {report.bundle.version}" + (" (check mode)" if report.check else ""))
    for column in ("host", "status", "variant", "changed", "failed", "services", "reason"):
        table.add_column(column)
    for h in report.hosts:
        colour = {"ok": "green", "failed": "red", "unreachable": "red"}[h.status]
        variants = ", ".join(f"{b}={v}" for b, v in sorted(h.variants.items())) or "-"
        services = ", ".join(f"{s.name}: {s.state}" for s in h.services) or "-"
        reason = h.failures[0].message.splitlines()[0] if h.failures else ""
        table.add_row(h.name, f"[{colour}]{h.status}[/]", variants, str(h.changed), str(h.failed), services, reason)
    return table


def install(
    bundle: Path = typer.Argument(..., help="A bundle directory, a bundle tar, or the first part of a split set."),
    inventory: Path = _INVENTORY,
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    check: bool = typer.Option(False, "--check", help="Ansible check mode: report what would change, change nothing."),
    limit: str | None = _LIMIT,
    tags: list[str] = typer.Option([], "--tags", "-t", help="Only these roles (comma-separated or repeated)."),
    skip_tags: list[str] = typer.Option([], "--skip-tags", help="Skip these roles (e.g. egress)."),
    forks: int | None = typer.Option(None, "--forks", min=1, help="Hosts in parallel (default 25)."),
    services_file: Path | None = typer.Option(
        None,
        "--services",
        help="YAML list of services ({name, build, model, args, ...}) replacing the bundle's own.",
    ),
    report_file: Path | None = typer.Option(None, "--report", help="Also write the JSON install report here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --report file."),
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Accept a version older than one this controller already accepted."
    ),
    state_file: Path | None = typer.Option(
        None, "--state-file", help="Rollback state file (default: $GAPSEAL_STATE_DIR or ~/.local/state/gapseal)."
    ),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Verify BUNDLE, then install it onto every host of the inventory with Ansible (playbooks/site.yml).

    A bundle that does not verify is refused before any host is contacted. Exit 0 only if every host succeeded.
    """
    from gapseal.bundler.rollback import RollbackState, default_state_file
    from gapseal.installer.install import InstallOptions, install_bundle, load_services
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    if report_file is not None and report_file.exists() and not overwrite:
        raise UsageError(f"{report_file} exists", where=str(report_file), hint="pass --overwrite to replace it")
    if not key and trust is None:
        raise UsageError("no trusted key given", hint="pass --key PUB (repeatable) or --trust trust.yaml")
    keys = trusted_keys(key, trust)
    options = InstallOptions(
        check=check,
        limit=limit,
        tags=tuple(_split(tags)),
        skip_tags=tuple(_split(skip_tags)),
        forks=forks,
        services=tuple(load_services(services_file)) if services_file else (),
    )
    with _output.progress() as progress:
        report = install_bundle(
            bundle,
            inventory,
            keys,
            options=options,
            rollback=RollbackState(state_file or default_state_file()),
            allow_downgrade=allow_downgrade,
            progress=progress,
        )
    document = report.model_dump(mode="json")
    if report_file is not None:
        report_file.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    if json_output:
        _output.emit_json(document)
    else:
        _output.stdout.print(_summary_table(report))
        failed = [h.name for h in report.hosts if h.status != "ok"]
        if failed:
            _output.stdout.print(f"[red]{len(failed)} of {len(report.hosts)} host(s) failed:[/] {', '.join(failed)}")
        else:
            _output.stdout.print(f"[green]installed on {len(report.hosts)} host(s)[/] in {report.duration_seconds}s")
    return 0 if report.ok else 1


def register(root: typer.Typer) -> None:
    """Add the top-level ``gapseal install`` command to the root application."""
    root.command("install")(install)


@hosts_app.command("detect")
def detect(
    inventory: Path = _INVENTORY,
    bundle: Path | None = typer.Option(None, "--bundle", help="Evaluate this (verified) bundle's builds per host."),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    limit: str | None = _LIMIT,
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Show each host's hardware and, with --bundle, the variant each build would get there, and why."""
    from gapseal.installer.detect import detect_hosts
    from gapseal.installer.install import playbook_vars

    _output.configure(json_output=json_output, quiet=quiet)
    builds: list[dict[str, Any]] = []
    if bundle is not None:
        from gapseal.bundler.verify import verify_bundle
        from gapseal.signing.trust import trusted_keys

        if not key and trust is None:
            raise UsageError("--bundle needs a trusted key", hint="pass --key PUB or --trust trust.yaml")
        with _output.progress() as progress:
            verified = verify_bundle(bundle, trusted_keys(key, trust), progress=progress)
        builds = playbook_vars(verified)["gapseal_builds"] if verified.layout_dir else []
    with _output.progress() as progress:
        hosts = detect_hosts(inventory, builds, limit=limit, progress=progress)
    if json_output:
        _output.emit_json(
            {"ok": all(h.reachable and not h.errors for h in hosts), "hosts": [h.as_dict() for h in hosts]}
        )
    else:
        for h in hosts:
            _output.stdout.print(f"[bold]{h.name}[/]" + ("" if h.reachable else " [red]unreachable[/]"))
            hw = h.hardware or {}
            if hw:
                gpus = []
                if hw.get("nvidia"):
                    gpus.append(f"nvidia driver {hw['nvidia'].get('driver_version')}")
                if hw.get("rocm"):
                    gpus.append("rocm " + ", ".join(a.get("name", "?") for a in hw["rocm"].get("agents", [])))
                if hw.get("vulkan"):
                    gpus.append("vulkan " + ", ".join(d.get("name", "?") for d in hw["vulkan"].get("devices", [])))
                _output.stdout.print(f"  arch {hw.get('arch')}; {'; '.join(gpus) or 'no GPU tools'}", highlight=False)
            for build, sel in h.variants.items():
                chosen = sel.get("chosen")
                _output.stdout.print(
                    f"  {build}: " + (f"[green]{chosen['backend']}/{chosen['arch']}[/]" if chosen else "[red]none[/]")
                )
                for v in sel.get("variants", []):
                    unmet = [f"{c['requirement']}: {c['reason']}" for c in v.get("checks", []) if not c.get("met")]
                    mark = "ok" if v.get("satisfied") else "; ".join(unmet)
                    _output.stdout.print(f"    - {v['backend']}/{v['arch']}: {mark}", highlight=False)
            for e in h.errors:
                _output.stdout.print(f"  [red]{e}[/]", highlight=False)
    return 0 if all(h.reachable and not h.errors for h in hosts) else 1
