"""``gapseal install`` and ``gapseal hosts``: verified bundles onto isolated hosts with Ansible."""

# No ``from __future__ import annotations`` in the command modules: typer reads the annotations of every command
# at each start, and string annotations are eval'd one by one (about 800 evals: two thirds of building the CLI).

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gapseal.commands import _output
from gapseal.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table

    from gapseal.installer.runlog import RunLog

hosts_app = typer.Typer(help="Inspect the hosts of an inventory: hardware and build variants.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print the result as one JSON document on stdout (implies --quiet).")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress display.")
_KEYS = typer.Option([], "--key", help="A trusted public key (NAME.pub); repeatable.")
_TRUST = typer.Option(None, "--trust", help="A trust.yaml listing trusted public keys.")
_INVENTORY = typer.Option(..., "--inventory", "-i", help="Ansible YAML inventory of the hosts.")
_LIMIT = typer.Option(None, "--limit", "-l", help="Only hosts matching this Ansible pattern.")


def _split(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def _summary_table(report: Any) -> "Table":
    from rich.table import Table

    title = f"{report.bundle.name} {report.bundle.version}" + (" (check mode: nothing changed)" if report.check else "")
    table = Table(title=title)
    changed = "would change" if report.check else "changed"
    for column in ("host", "status", "variant", changed, "failed", "services"):
        table.add_column(column)
    for h in report.hosts:
        colour = {"ok": "green", "failed": "red", "unreachable": "red"}[h.status]
        variants = ", ".join(f"{b}={v}" for b, v in sorted(h.variants.items())) or "-"
        services = ", ".join(f"{s.name}: {s.state}" for s in h.services) or "-"
        table.add_row(h.name, f"[{colour}]{h.status}[/]", variants, str(h.changed), str(h.failed), services)
    return table


def _print_failures(report: Any) -> None:
    """The full reason per failed host: every failing task with its whole message (unmet variant requirements)."""
    for h in report.hosts:
        for f in h.failures:
            kind = "unreachable" if f.unreachable else "failed"
            _output.stdout.print(f"[red]{h.name}[/] {kind} at task '{f.task}':", highlight=False)
            for line in f.message.splitlines() or [""]:
                _output.stdout.print(f"    {line}", highlight=False, markup=False)


def _print_plan(report: Any, log: "RunLog") -> None:
    for h in report.hosts:
        items = log.changes.get(h.name, [])
        _output.stdout.print(f"[bold]{h.name}[/]: " + (f"{len(items)} task(s) would change" if items else "no change"))
        for task, lines in items:
            _output.stdout.print(f"  ~ {task}", highlight=False, markup=False)
            for line in lines:
                _output.stdout.print(f"      {line}", highlight=False, markup=False)


def install(
    bundle: Path = typer.Argument(..., help="A bundle directory, a bundle tar, or the first part of a split set."),
    inventory: Path = _INVENTORY,
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    check: bool = typer.Option(
        False, "--check", help="Ansible check and diff mode: print per host what would change, change nothing."
    ),
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
    log_dir: Path | None = typer.Option(
        None, "--log-dir", help="Keep this run's log and events here (default: runs/ beside the rollback state)."
    ),
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
    from gapseal.errors import output_exists
    from gapseal.installer.install import SITE_PLAYBOOK, InstallOptions, install_bundle, load_services
    from gapseal.installer.inventory import load_inventory
    from gapseal.installer.selection import check_limit, check_tags, playbook_tags
    from gapseal.resources import playbooks_dir
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    # Ansible runs in the playbooks' directory: every path handed to it must not depend on this shell's cwd.
    bundle, inventory = bundle.absolute(), inventory.absolute()
    if report_file is not None and (report_file.exists() or report_file.is_symlink()) and not overwrite:
        raise output_exists(report_file)
    if not key and trust is None:
        raise UsageError("no trusted key given", hint="pass --key PUB (repeatable) or --trust trust.yaml")
    valid_tags = playbook_tags(playbooks_dir() / SITE_PLAYBOOK)
    check_tags(_split(tags), valid_tags, "--tags")
    check_tags(_split(skip_tags), valid_tags, "--skip-tags")
    check_limit(load_inventory(inventory), limit)
    keys = trusted_keys(key, trust)
    options = InstallOptions(
        check=check,
        limit=limit,
        tags=tuple(_split(tags)),
        skip_tags=tuple(_split(skip_tags)),
        forks=forks,
        services=tuple(load_services(services_file)) if services_file else (),
        # diff mode: template/copy/file tasks and gapseal's modules say what they would change
        envvars={"ANSIBLE_DIFF_ALWAYS": "True"} if check else None,
    )
    from gapseal.installer.runlog import RunLog, new_run_dir

    # beside the rollback state (the controller's own records) unless --log-dir says otherwise
    run_dir = new_run_dir(log_dir if log_dir is not None else (state_file or default_state_file()).parent / "runs")
    plain = not _output.state.quiet and not _output.stderr.is_terminal  # a CI log: one line per host and task
    log = RunLog(run_dir, on_line=_output.info if plain else None)
    try:
        with _output.progress() as progress:
            report = install_bundle(
                bundle,
                inventory,
                keys,
                options=options,
                rollback=RollbackState(state_file or default_state_file()),
                allow_downgrade=allow_downgrade,
                progress=progress,
                on_event=log,
            )
    finally:
        log.close()  # removes the directory when Ansible never ran (the bundle did not verify)
    report = report.model_copy(update={"run_log": str(run_dir)})
    document = report.model_dump(mode="json")
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    (run_dir / "report.json").write_text(text)
    if report_file is not None:
        report_file.write_text(text)
    if json_output:
        _output.emit_json(document)
        return 0 if report.ok else 1
    _output.stdout.print(_summary_table(report))
    if check:
        _print_plan(report, log)
    _print_failures(report)
    failed = [h.name for h in report.hosts if h.status != "ok"]
    if failed:
        _output.stdout.print(f"[red]{len(failed)} of {len(report.hosts)} host(s) failed:[/] {', '.join(failed)}")
    elif check:
        _output.stdout.print(f"check mode: nothing changed on {len(report.hosts)} host(s)")
    else:
        _output.stdout.print(f"[green]installed on {len(report.hosts)} host(s)[/] in {report.duration_seconds}s")
    _output.stdout.print(f"run log: {run_dir}", highlight=False)
    return 0 if report.ok else 1


def uninstall(
    inventory: Path = _INVENTORY,
    check: bool = typer.Option(False, "--check", help="Show per host what would be removed; remove nothing."),
    limit: str | None = _LIMIT,
    remove_egress: bool = typer.Option(
        False, "--remove-egress", help="Also remove the egress lockdown (kept by default: the host stays closed)."
    ),
    keep_state: bool = typer.Option(
        False, "--keep-state", help="Keep the services' state directories (/var/lib/gapseal-NAME); listed as kept."
    ),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Remove everything gapseal installed: units and their state, files, venvs, rollback copies, the record.

    Files gapseal did not put there stay and are listed. Idempotent: a rerun finishes an interrupted run; a clean
    host is left alone. Exit 0 when every host is clean.
    """
    from gapseal.installer.inventory import load_inventory
    from gapseal.installer.selection import check_limit
    from gapseal.installer.uninstall import uninstall_hosts

    _output.configure(json_output=json_output, quiet=quiet)
    inventory = inventory.absolute()
    check_limit(load_inventory(inventory), limit)
    with _output.progress() as progress:
        report = uninstall_hosts(
            inventory, check=check, limit=limit, remove_egress=remove_egress, keep_state=keep_state, progress=progress
        )
    if json_output:
        _output.emit_json(report.model_dump(mode="json"))
        return 0 if report.ok else 1
    for h in report.hosts:
        colour = "green" if h.status in ("removed", "nothing installed") else "red"
        what = h.status if not (check and h.status == "removed") else "would remove"
        _output.stdout.print(
            f"[bold]{h.name}[/]: [{colour}]{what}[/]" + (f" {h.bundle}" if h.bundle else ""), highlight=False
        )
        for action in h.actions:
            _output.stdout.print(f"  {action}", highlight=False, markup=False)
        for problem in h.problems:
            _output.stdout.print(f"  {problem}", highlight=False, markup=False)
        for kept in h.kept:
            _output.stdout.print(f"  kept {kept}", highlight=False, markup=False)
        if h.status == "removed" and h.egress_kept:
            _output.stdout.print("  egress lockdown kept (--remove-egress removes it)")
        for image in h.images_kept:
            _output.stdout.print(f"  image kept in podman's store: {image} (podman rmi removes it)", highlight=False)
    if check:
        _output.stdout.print("check mode: nothing changed")
    return 0 if report.ok else 1


def register(root: typer.Typer) -> None:
    """Add the top-level ``gapseal install`` and ``gapseal uninstall`` commands to the root application."""
    root.command("install")(install)
    root.command("uninstall")(uninstall)


@hosts_app.command("status")
def status(
    inventory: Path = _INVENTORY,
    limit: str | None = _LIMIT,
    full: bool = typer.Option(False, "--full", help="Re-hash every installed file (default: presence and size)."),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Show each host's install: bundle, version, variant per build, unit state, and whether its files are intact.

    Exit 0 when every host is reached, installed and intact; 1 otherwise.
    """
    from gapseal.installer.inventory import load_inventory
    from gapseal.installer.selection import check_limit
    from gapseal.installer.status import hosts_status

    _output.configure(json_output=json_output, quiet=quiet)
    inventory = inventory.absolute()
    check_limit(load_inventory(inventory), limit)
    with _output.progress() as progress:
        result = hosts_status(inventory, limit=limit, full=full, progress=progress)
    if json_output:
        _output.emit_json(result.model_dump(mode="json"))
        return 0 if result.ok else 1
    from rich.table import Table

    table = Table(title="hosts status")
    for column in ("host", "bundle", "variants", "units", "files"):
        table.add_column(column)
    for h in result.hosts:
        files = "-"
        if h.files is not None:
            colour = "green" if h.files.ok == h.files.total else "red"
            files = f"[{colour}]{h.files.ok}/{h.files.total} ok[/] ({h.files.method})"
        table.add_row(
            h.name,
            f"{h.bundle} {h.version}" if h.installed else ("[red]unreachable[/]" if not h.reachable else "-"),
            ", ".join(f"{b}={v}" for b, v in sorted(h.variants.items())) or "-",
            ", ".join(f"{u.name}: {u.state}" for u in h.units) or "-",
            files,
        )
    _output.stdout.print(table)
    for h in result.hosts:
        for problem in h.problems:
            _output.stdout.print(f"[red]{h.name}[/]: {problem}", highlight=False)
    return 0 if result.ok else 1


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
    """Show each host's hardware and, with --bundle, the variant each build would get there, and why.

    Exit 1 when a host is unreachable or some build has no variant a host satisfies (install would fail there).
    """
    from gapseal.installer.detect import detect_hosts
    from gapseal.installer.install import playbook_vars
    from gapseal.installer.inventory import load_inventory
    from gapseal.installer.selection import check_limit

    _output.configure(json_output=json_output, quiet=quiet)
    inventory = inventory.absolute()  # Ansible runs elsewhere: no path may depend on this shell's cwd
    check_limit(load_inventory(inventory), limit)
    builds: list[dict[str, Any]] = []
    if bundle is not None:
        bundle = bundle.absolute()
        from gapseal.bundler.verify import verify_bundle
        from gapseal.signing.trust import trusted_keys

        if not key and trust is None:
            raise UsageError("--bundle needs a trusted key", hint="pass --key PUB or --trust trust.yaml")
        with _output.progress() as progress:
            verified = verify_bundle(bundle, trusted_keys(key, trust), progress=progress)
        builds = playbook_vars(verified)["gapseal_builds"] if verified.layout_dir else []
    with _output.progress() as progress:
        hosts = detect_hosts(inventory, builds, limit=limit, progress=progress)
    ok = all(h.reachable and not h.errors and not h.unfit for h in hosts)
    if json_output:
        _output.emit_json({"ok": ok, "hosts": [h.as_dict() for h in hosts]})
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
        unfit = [f"{h.name} ({', '.join(h.unfit)})" for h in hosts if h.unfit]
        if unfit:
            _output.stdout.print(f"[red]no variant fits:[/] {'; '.join(unfit)}", highlight=False)
    return 0 if ok else 1
