"""``gapseal bundle``: create, pack, unpack, verify, inspect and extract signed offline bundles."""

# No ``from __future__ import annotations`` in the command modules: typer reads the annotations of every command
# at each start, and string annotations are eval'd one by one (about 800 evals: two thirds of building the CLI).

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gapseal.commands import _output
from gapseal.errors import UsageError, check_input

if TYPE_CHECKING:
    from gapseal.bundler.inspect import BundleInfo
    from gapseal.signing.keys import VerifyingKey

# The library is imported inside each command: the CLI starts in a fraction of the time when ``gapseal --help``
# or another command group does not pay for sigstore, pydantic models and model-signing.

app = typer.Typer(help="Build and check signed offline bundles.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print the result as one JSON document on stdout (implies --quiet).")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress display.")
_KEYS = typer.Option([], "--key", help="A trusted public key (NAME.pub); repeatable.")
_TRUST = typer.Option(None, "--trust", help="A trust.yaml listing trusted public keys.")
_ALLOW_HOST_HELP = (
    "Also accept redirects, upload locations and token realms pointing at this HOST:PORT (repeatable); "
    "by default only the registry named is ever contacted. Credentials are never sent there."
)
_TIMEOUT_HELP = "Seconds a stalled registry transfer may wait before it fails (each request also has a deadline)."


def _source_date_epoch() -> int | None:
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None:
        return None
    if not raw.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {raw!r}")
    return int(raw)


@app.command("create")
def create(
    spec: Path = typer.Argument(..., help="The bundle spec (YAML, apiVersion gapseal/v1, kind Bundle)."),
    key: Path = typer.Option(..., "--key", help="The signing key (NAME.key); passphrase from GAPSEAL_KEY_PASSPHRASE."),
    out: Path = typer.Option(..., "--out", help="The bundle directory to create (an OCI image layout)."),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks", help="Read through symlinks in inputs instead of refusing them."
    ),
    no_link: bool = typer.Option(
        False, "--no-link", help="Always copy inputs; by default they are hard-linked when on the same filesystem."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    base: Path | None = typer.Option(
        None,
        "--base",
        help="Make a delta: leave out every blob this earlier bundle (or 'bundle inventory' file) already holds.",
    ),
    include_self: bool = typer.Option(
        False, "--include-self", help="Add wheels of gapseal and all its dependencies, so the far side can install it."
    ),
    python_version: str | None = typer.Option(
        None, "--python-version", help="With --include-self: the target's Python X.Y (default: this one's)."
    ),
    platform: str | None = typer.Option(
        None, "--platform", help="With --include-self: the target's wheel platform tag (default: this machine's)."
    ),
    wheels_from: Path | None = typer.Option(
        None, "--wheels-from", help="With --include-self: resolve wheels only from this local wheelhouse (no network)."
    ),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Build a signed bundle from SPEC.

    Same spec and inputs give the same manifest digest when the spec sets metadata.created or SOURCE_DATE_EPOCH is set.
    With --base the bundle is written as a delta; the far side completes it with 'bundle apply DELTA --base OLD'.
    """
    from gapseal.bundler.create import create_bundle, prepare_output
    from gapseal.commands import _secrets

    _output.configure(json_output=json_output, quiet=quiet)
    if not include_self and (python_version or platform or wheels_from):
        raise UsageError("--python-version, --platform and --wheels-from go with --include-self")
    prepare_output(out, overwrite=overwrite)
    signing_key = _secrets.private_key_from(key)
    delta_doc: dict[str, object] = {}
    with _output.progress() as progress, contextlib.ExitStack() as cleanup:
        wheels = None
        if include_self:
            from gapseal.bundler.selfcontained import prepare_wheelhouse

            scratch = cleanup.enter_context(tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent))
            wheels = prepare_wheelhouse(
                Path(scratch) / "wheels",
                python_version=python_version,
                platform=platform,
                wheels_from=wheels_from,
                progress=progress,
            )
        if base is not None:
            from gapseal.bundler.delta import create_delta

            made = create_delta(
                spec,
                signing_key,
                out,
                base,
                follow_symlinks=follow_symlinks,
                link=not no_link,
                overwrite=overwrite,
                source_date_epoch=_source_date_epoch(),
                wheels=wheels,
                progress=progress,
            )
            result = made.full
            delta_doc = {
                "delta": {
                    "base": made.marker.describe_base(),
                    "omitted_blobs": len(made.marker.omitted),
                    "omitted_bytes": made.marker.omitted_bytes(),
                    "stored_blobs": made.stored_blobs,
                    "stored_bytes": made.stored_bytes,
                }
            }
        else:
            result = create_bundle(
                spec,
                signing_key,
                out,
                follow_symlinks=follow_symlinks,
                link=not no_link,
                overwrite=overwrite,
                source_date_epoch=_source_date_epoch(),
                wheels=wheels,
                progress=progress,
            )
    doc = {
        "ok": True,
        "bundle": str(result.path),
        "name": result.descriptor.name,
        "version": result.descriptor.version,
        "manifest_digest": result.manifest_digest,
        "signer_key_id": signing_key.key_id,
        "blobs": result.blob_count,
        "bytes": result.total_bytes,
        "linked_files": result.linked_files,
        "copied_files": result.copied_files,
        **delta_doc,
        "wheels": len(result.descriptor.wheels.files) if result.descriptor.wheels else 0,
        "sbom": result.descriptor.sbom.digest if result.descriptor.sbom else None,
        "warnings": list(result.warnings),
    }
    if json_output:
        _output.emit_json(doc)
    else:
        for warning in result.warnings:
            _output.stderr.print(f"[yellow]warning:[/] {warning}", highlight=False)
        _output.stdout.print(f"created {result.path}: {result.descriptor.name} {result.descriptor.version}")
        _output.stdout.print(f"  manifest {result.manifest_digest}")
        _output.stdout.print(
            f"  {result.blob_count} blobs, {result.total_bytes} bytes "
            f"({result.linked_files} files linked, {result.copied_files} copied); signed by {signing_key.key_id[:16]}"
        )
        if result.descriptor.wheels:
            w = result.descriptor.wheels
            _output.stdout.print(
                f"  {len(w.files)} wheels of gapseal and its dependencies for Python {w.python_version}"
                f" ({w.platform or 'this platform'})"
            )
        if delta_doc:
            dd = delta_doc["delta"]
            assert isinstance(dd, dict)  # noqa: S101 - built just above
            _output.stdout.print(
                f"  delta against {dd['base']}: {dd['omitted_blobs']} blobs ({dd['omitted_bytes']} bytes) left out, "
                f"{dd['stored_blobs']} blobs ({dd['stored_bytes']} bytes) stored"
            )
    return 0


@app.command("pack")
def pack(
    bundle: Path = typer.Argument(..., help="A bundle directory."),
    out: Path = typer.Option(..., "--out", help="The tar to write, e.g. NAME-VERSION.gapseal.tar."),
    part_size: str | None = typer.Option(
        None, "--part-size", help="Split into parts of at most this size (e.g. 4GiB), named OUT.partNNNN.tar."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Pack a bundle directory into one deterministic tar, or parts cut on blob boundaries."""
    from gapseal.bundler import wheel_bootstrap
    from gapseal.bundler.archive import pack_layout, parse_size
    from gapseal.bundler.inspect import read_layout_descriptor
    from gapseal.errors import output_exists

    _output.configure(json_output=json_output, quiet=quiet)
    size = parse_size(part_size) if part_size is not None else None  # usage errors first
    check_input(bundle, "bundle", want="directory", hint="pack reads a bundle directory (bundle create --out DIR)")
    epoch = _source_date_epoch()
    mtime = epoch if epoch is not None else _created_epoch(bundle)
    # A self-contained bundle (--include-self) travels with its stdlib-only bootstrap script, for a far side that has
    # no gapseal yet; its digest and the manifest digest are printed for the security team's handover note.
    script = None
    if read_layout_descriptor(bundle).wheels is not None:
        script = out.with_name(out.name.removesuffix(".tar").removesuffix(".gapseal") + ".bootstrap.py")
        if (script.exists() or script.is_symlink()) and not overwrite:
            raise output_exists(script)
    with _output.progress() as progress:
        result = pack_layout(bundle, out, mtime=mtime, part_size=size, overwrite=overwrite, progress=progress)
    doc: dict[str, object] = {"ok": True, **result.as_dict()}
    if script is not None:
        doc["bootstrap"] = {
            "path": str(script),
            "sha256": wheel_bootstrap.copy_script(script),
            "manifest_digest": wheel_bootstrap.manifest_digest(bundle),
        }
    if json_output:
        _output.emit_json(doc)
    else:
        _output.stdout.print(f"packed {bundle} into {result.out} ({result.total_bytes} bytes)")
        for part in result.parts if len(result.parts) > 1 else ():
            _output.stdout.print(f"  {part.path.name}  {part.size} bytes  sha256:{part.sha256}")
        for sidecar in result.sidecars:
            _output.stdout.print(f"  {sidecar.name}")
        if isinstance(boot := doc.get("bootstrap"), dict):
            _output.stdout.print(f"  {script.name if script else ''}  {boot['sha256']}  (far-side bootstrap)")
            _output.stdout.print(f"  hand over with the public key: manifest {boot['manifest_digest']}")
    return 0


def _created_epoch(bundle: Path) -> int:
    """The bundle's created time as tar mtime, so packing is deterministic without SOURCE_DATE_EPOCH."""
    from datetime import datetime

    from gapseal.bundler.inspect import read_layout_descriptor

    created = read_layout_descriptor(bundle).created
    return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())


@app.command("unpack")
def unpack(
    archive: Path = typer.Argument(..., help="A bundle tar, or the first part of a split set."),
    out: Path = typer.Option(..., "--out", help="The bundle directory to create."),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="With --key/--trust: accept a version older than one this host accepted."
    ),
    state_file: Path | None = typer.Option(
        None, "--state-file", help="Rollback state file (default: $GAPSEAL_STATE_DIR or ~/.local/state/gapseal)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Extract a bundle tar safely: no absolute paths, no '..', no links, no devices, no duplicates.

    With --key or --trust the bundle is verified in the same pass (every byte hashed as it is written; signature,
    file set, expiry, rollback) and --out appears only if it verifies. Like verify, unpack never moves the rollback
    mark.
    """
    from gapseal.bundler.rollback import RollbackState, default_state_file
    from gapseal.bundler.unpack import unpack_and_verify
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    if allow_downgrade and not (key or trust):
        raise UsageError("--allow-downgrade goes with --key or --trust (unpack checks rollback only when it verifies)")
    keys = trusted_keys(key, trust) if key or trust else []
    state = RollbackState(state_file or default_state_file()) if keys else None
    with _output.progress() as progress:
        result = unpack_and_verify(
            archive,
            out,
            overwrite=overwrite,
            trusted_keys=keys,
            rollback=state,
            allow_downgrade=allow_downgrade,
            progress=progress,
        )
    verified = result.verified
    doc: dict[str, object] = {
        "ok": True,
        "bundle": str(result.path),
        "files": result.files,
        "bytes": result.bytes,
        "verified": verified is not None,
    }
    if verified is not None:
        doc |= {
            "name": verified.descriptor.name,
            "version": verified.descriptor.version,
            "manifest_digest": verified.manifest_digest,
            "signer_key_id": verified.signer_key_id,
            "downgrade_allowed": bool(verified.rollback and verified.rollback.downgrade),
        }
    if json_output:
        _output.emit_json(doc)
    elif verified is not None:
        d = verified.descriptor
        _output.stdout.print(f"[green]verified[/] and unpacked {archive} into {result.path}: {d.name} {d.version}")
        _output.stdout.print(f"  manifest {verified.manifest_digest}, signed by {verified.signer_key_id} (trusted)")
        _output.stdout.print(f"  {result.files} files, {result.bytes} bytes, every byte hashed as it was written")
    else:
        _output.stdout.print(
            f"unpacked {archive} into {result.path} (not verified); run 'gapseal bundle verify {result.path} --key …'"
            " next, or unpack with --key"
        )
    return 0


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="A bundle directory, a bundle tar, or the first part of a split set."),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Accept a version older than one this host already accepted."
    ),
    state_file: Path | None = typer.Option(
        None, "--state-file", help="Rollback state file (default: $GAPSEAL_STATE_DIR or ~/.local/state/gapseal)."
    ),
    base: Path | None = typer.Option(
        None, "--base", help="BUNDLE is a delta: complete it with the blobs of this earlier bundle, then verify."
    ),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Verify a bundle offline: signature by a trusted key, every digest and size, the exact file set, expiry, rollback.

    Exit 0 when every check passes, 1 with every problem named otherwise.
    """
    from gapseal.bundler.rollback import RollbackState, default_state_file
    from gapseal.bundler.verify import verify_bundle
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    keys = trusted_keys(key, trust)
    state = RollbackState(state_file or default_state_file())
    with _output.progress() as progress:
        if base is not None:
            from gapseal.bundler.delta import verify_delta

            result = verify_delta(
                bundle, base, keys, rollback=state, allow_downgrade=allow_downgrade, progress=progress
            )
        else:
            result = verify_bundle(bundle, keys, rollback=state, allow_downgrade=allow_downgrade, progress=progress)
    d = result.descriptor
    doc = {
        "ok": True,
        "bundle": str(bundle),
        "name": d.name,
        "version": d.version,
        "created": d.created,
        "expires": d.expires,
        "manifest_digest": result.manifest_digest,
        "signer_key_id": result.signer_key_id,
        "files": len(d.layers()),
        "bytes": d.total_size(),
        "downgrade_allowed": bool(result.rollback and result.rollback.downgrade),
        "ignored_signatures": [r.as_dict() for r in result.ignored_signatures],
    }
    if json_output:
        _output.emit_json(doc)
    else:
        _output.stdout.print(f"[green]verified[/] {bundle}: {d.name} {d.version}", highlight=False)
        for report in result.ignored_signatures:
            _output.stdout.print(f"  [yellow]not relied on:[/] {report.describe()}", highlight=False)
        _output.stdout.print(f"  manifest {result.manifest_digest}")
        _output.stdout.print(f"  signed by {result.signer_key_id} (trusted)")
        _output.stdout.print(f"  {len(d.layers())} files, {d.total_size()} bytes, every digest checked")
        if result.rollback and result.rollback.downgrade:
            _output.stdout.print(f"  [yellow]downgrade from {result.rollback.highest_seen} allowed by the operator[/]")
    return 0


def _format_facts(fmt: str, details: dict[str, object]) -> str:
    """One line of what a model's headers say: tensors, parameters, dtypes or quantization."""
    st = details.get("safetensors")
    if fmt == "safetensors" and isinstance(st, dict):
        dtypes = "/".join(sorted(st.get("dtypes", {})))
        return f"{st.get('tensor_count')} tensors, {st.get('parameter_count'):,} parameters, {dtypes}"
    gg = details.get("gguf")
    if fmt == "gguf" and isinstance(gg, list) and gg:
        first = gg[0]
        return f"{first.get('architecture')}, {first.get('quantization')}, {first.get('parameter_count'):,} parameters"
    return "no header facts"


def _shown(value: object) -> str:
    """Free text from a bundle, safe for a terminal: inspect reads unverified bundles, so no escape sequence passes."""
    return "".join(c if c.isprintable() else "?" for c in str(value))


def _print_info(info: "BundleInfo") -> None:
    d = info.as_dict()
    out = _output.stdout
    out.print(f"[bold]{d['name']}[/] {d['version']}", highlight=False)
    out.print(f"  created   {d['created']}   expires {d['expires'] or 'never'}")
    if d["description"]:
        out.print(f"  about     {_shown(d['description'])}", highlight=False, markup=False)
    out.print(f"  licence   {_shown(d['license'] or 'not stated')}", highlight=False, markup=False)
    out.print(f"  manifest  {d['manifest_digest']}")
    verified = "verified" if info.signature_verified else "unverified key hint; pass --key to verify"
    out.print(f"  signer    {d['signer_key_id']} ({verified})")
    out.print(f"  stored    {d['blobs']} blobs, {d['stored_bytes']} bytes")
    for m in d["models"]:  # type: ignore[attr-defined]
        facts = _format_facts(m["format"], m["format_details"])
        out.print(f"  model     {m['name']}: {m['format']}, {m['files']} files, {m['bytes']} bytes ({facts})")
    for c in d["files"]:  # type: ignore[attr-defined]
        out.print(f"  files     {c['name']}: {c['files']} files, {c['bytes']} bytes")
    for i in d["images"]:  # type: ignore[attr-defined]
        platforms = ", ".join(i["platforms"]) or "single platform"
        out.print(f"  image     {i['name']}: {i['digest']} ({_shown(platforms)}), {i['bytes']} bytes", markup=False)
    for b in d["builds"]:  # type: ignore[attr-defined]
        for v in b["variants"]:
            req = ", ".join(f"{k} {'/'.join(v2) if isinstance(v2, list) else v2}" for k, v2 in v["requires"].items())
            out.print(
                f"  build     {b['name']} {v['backend']}/{v['arch']}: {v['files']} files; requires {req or 'nothing'}"
            )
    for svc in info.descriptor.services or []:
        where = f"{svc.bind}:{svc.port}" if svc.port else svc.bind
        model = f", model {svc.model}" if svc.model else ""
        out.print(f"  service   {svc.name}: build {svc.build}{model}, {svc.exec} on {where}", highlight=False)
    wheels, sbom = info.descriptor.wheels, info.descriptor.sbom
    if wheels is not None:
        size = sum(w.size for w in wheels.files)
        target = f"Python {wheels.python_version}, {wheels.platform or 'the building machine'}"
        out.print(f"  wheels    {len(wheels.files)} (gapseal and its dependencies, {target}), {size} bytes")
    if sbom is not None:
        out.print(f"  sbom      CycloneDX {sbom.path} ({sbom.size} bytes); print it with --sbom")


@app.command("inspect")
def inspect(
    bundle: Path = typer.Argument(..., help="A bundle directory, tar, or first part of a split set."),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    sbom: bool = typer.Option(
        False, "--sbom", help="Print the bundle's CycloneDX SBOM (JSON) instead; verified when --key/--trust is given."
    ),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Show a bundle's name, version, signer, components with sizes and formats, and build variants."""
    from gapseal.bundler.inspect import inspect_bundle
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    keys = trusted_keys(key, trust) if key or trust else []
    if sbom:
        return _print_sbom(bundle, keys)
    with _output.progress() as progress:
        info = inspect_bundle(bundle, keys, progress=progress)
    if json_output:
        _output.emit_json(info.as_dict())
    else:
        _print_info(info)
    return 0


@app.command("extract")
def extract(
    bundle: Path = typer.Argument(..., help="A bundle directory, a bundle tar, or the first part of a split set."),
    out: Path = typer.Option(..., "--out", help="The directory to create."),
    model: str | None = typer.Option(None, "--model", help="Extract this model (with its model.sig)."),
    files: str | None = typer.Option(None, "--files", help="Extract this files component."),
    wheels: bool = typer.Option(
        False, "--wheels", help="Extract gapseal's wheels (--include-self) for 'pip install --no-index --find-links'."
    ),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Accept a version older than one this host already used."
    ),
    state_file: Path | None = typer.Option(
        None, "--state-file", help="Rollback state file (default: $GAPSEAL_STATE_DIR or ~/.local/state/gapseal)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Verify a bundle, then write one model or files component out as a plain directory.

    Every file is copied (never linked) and hashed as it is written; a byte that differs from the signed one removes
    the output. A tar or split set is first unpacked and verified in one pass into a scratch directory beside --out.
    Extracting uses the bundle: the rollback check applies and this host's high-water mark moves to it.
    """
    from gapseal.bundler.create import prepare_output
    from gapseal.bundler.extract import component_files, extract_component, verified_for_use
    from gapseal.bundler.rollback import RollbackState, default_state_file
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    if [model is not None, files is not None, wheels].count(True) != 1:
        raise UsageError("name exactly one of --model, --files or --wheels")
    check_input(bundle, "bundle", want="any")
    keys = trusted_keys(key, trust)
    prepare_output(out, overwrite=overwrite)  # before the long work of verifying
    state = RollbackState(state_file or default_state_file())
    with _output.progress() as progress, contextlib.ExitStack() as stack:
        verified = stack.enter_context(
            verified_for_use(
                bundle, keys, beside=out, rollback=state, allow_downgrade=allow_downgrade, progress=progress
            )
        )
        kind, name = ("model", model) if model is not None else ("files", files) if files is not None else ("", "")
        if wheels:
            from gapseal.bundler.selfcontained import wheel_entries

            kind, name = "wheels", "of gapseal"
            entries = wheel_entries(verified.descriptor)
        else:
            entries = component_files(verified, kind, name)
        extract_component(verified, entries, out, overwrite=overwrite, progress=progress)
    downgrade = bool(verified.rollback and verified.rollback.downgrade)
    if json_output:
        _output.emit_json({"ok": True, "out": str(out), "files": len(entries), "downgrade_allowed": downgrade})
    else:
        _output.stdout.print(f"extracted {kind} {name} ({len(entries)} files) into {out}")
        if downgrade and verified.rollback:
            seen = verified.rollback.highest_seen
            _output.stdout.print(f"  [yellow]downgrade from {seen} allowed by the operator[/]")
    return 0


@app.command("pull")
def pull(
    reference: str = typer.Argument(..., help="HOST:PORT/gapseal/NAME:VERSION on an on-site registry."),
    out: Path = typer.Option(..., "--out", help="The bundle directory to create."),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    insecure: bool = typer.Option(
        False, "--insecure", help="Talk plain HTTP (or TLS without certificate checks) to the registry."
    ),
    allow_host: list[str] = typer.Option([], "--allow-host", help=_ALLOW_HOST_HELP),
    timeout: float = typer.Option(20.0, "--timeout", min=0.1, help=_TIMEOUT_HELP),
    max_blob_size: str | None = typer.Option(
        None, "--max-blob-size", help="Without --key: read no blob past this size (e.g. 10GiB; default 64GiB)."
    ),
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Accept a version older than one this host already used."
    ),
    state_file: Path | None = typer.Option(
        None, "--state-file", help="Rollback state file (default: $GAPSEAL_STATE_DIR or ~/.local/state/gapseal)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Fetch a bundle, its signature and its images from a registry into a directory, and verify it (--key/--trust).

    Only the registry in REFERENCE is contacted. The signature is checked before any blob it sizes is read; the
    bundle must be the name and version asked for; with a key the whole bundle is verified (expiry and the rollback
    check included; a pull never moves the high-water mark) before --out appears. Without a key nothing is verified.
    """
    from gapseal.bundler.archive import parse_size
    from gapseal.bundler.registry import DEFAULT_MAX_BLOB, pull_bundle
    from gapseal.bundler.rollback import RollbackState, default_state_file
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    keys = trusted_keys(key, trust) if key or trust else []
    with _output.progress() as progress:
        result = pull_bundle(
            reference,
            out,
            trusted_keys=keys,
            rollback=RollbackState(state_file or default_state_file()) if keys else None,
            allow_downgrade=allow_downgrade,
            insecure=insecure,
            allow_hosts=allow_host,
            timeout=timeout,
            max_blob=parse_size(max_blob_size) if max_blob_size else DEFAULT_MAX_BLOB,
            overwrite=overwrite,
            progress=progress,
        )
    doc = {
        "ok": True,
        "bundle": str(result.path),
        "name": result.name,
        "version": result.version,
        "manifest_digest": result.manifest_digest,
        "blobs": result.blobs,
        "bytes": result.bytes,
        "signature": result.signature_mode,
        "verified": result.verified_by is not None,
        "signer_key_id": result.verified_by,
    }
    if json_output:
        _output.emit_json(doc)
    else:
        _output.stdout.print(f"pulled {reference} into {result.path}: {result.name} {result.version}", highlight=False)
        _output.stdout.print(f"  manifest {result.manifest_digest}; {result.blobs} blobs, {result.bytes} bytes")
        if result.verified_by is not None:
            _output.stdout.print(f"  [green]verified[/]: signed by {result.verified_by} (trusted)", highlight=False)
        else:
            _output.stdout.print(
                f"  [yellow]NOT verified[/]: no --key given; run 'gapseal bundle verify {result.path} --key …'",
                highlight=False,
            )
    return 0


@app.command("diff")
def diff(
    old: Path = typer.Argument(..., help="The earlier bundle (directory, tar or first part)."),
    new: Path = typer.Argument(..., help="The later bundle (directory, tar or first part)."),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Show what changed from OLD to NEW: components, files, variants and images, and the bytes a delta would carry.

    With --key/--trust both bundles are verified first; without, they are compared as they claim to be (said so).
    """
    from gapseal.bundler.diff import diff_bundles
    from gapseal.bundler.inspect import inspect_bundle
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    keys = trusted_keys(key, trust) if key or trust else []
    with _output.progress() as progress:
        a, b = (inspect_bundle(p, keys, progress=progress) for p in (old, new))
    result = diff_bundles(a.descriptor, a.manifest_digest, b.descriptor, b.manifest_digest, verified=bool(keys))
    if json_output:
        _output.emit_json(result.model_dump(mode="json"))
        return 0
    out = _output.stdout
    out.print(f"{result.old.name} {result.old.version} -> {result.new.name} {result.new.version}", highlight=False)
    if not result.verified:
        out.print("  [yellow]not verified[/] (pass --key or --trust to verify both bundles first)")
    for label, changes in (
        ("components", result.components),
        ("variants", result.variants),
        ("images", result.images),
        ("files", result.files),
    ):
        if changes.empty:
            out.print(f"  {label}: no change")
            continue
        out.print(f"  {label}:")
        for mark, names in (("+", changes.added), ("-", changes.removed), ("~", changes.changed)):
            for name in names:
                out.print(f"    {mark} {name}", highlight=False, markup=False)
    out.print(
        f"  a delta from {result.old.version} would carry {result.delta_blobs} blobs, {result.delta_bytes} bytes"
        f" (the full bundle: {result.new.bytes} bytes)",
        highlight=False,
    )
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Deltas: the second delivery (gapseal.bundler.delta)


@app.command("inventory")
def inventory(
    bundles: list[Path] = typer.Argument(
        ..., help="Bundles on this side: directories, tars, first parts, or HOST:PORT/gapseal/NAME:VERSION."
    ),
    out: Path = typer.Option(..., "--out", help="The inventory file to write, e.g. have.json."),
    insecure: bool = typer.Option(
        False, "--insecure", help="For a registry reference: plain HTTP (or TLS without certificate checks)."
    ),
    allow_host: list[str] = typer.Option([], "--allow-host", help=_ALLOW_HOST_HELP),
    timeout: float = typer.Option(20.0, "--timeout", min=0.1, help=_TIMEOUT_HELP),
    key: list[Path] = typer.Option([], "--key", help="Verify registry bundles with this key; repeatable."),
    trust: Path | None = _TRUST,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Write what this side holds (every blob whose content hashes to its name) for 'bundle create --base'.

    Carry the file to the security team; the next bundle they build against it leaves those blobs out.
    A bundle on an on-site registry is pulled into a scratch directory (digest-checked, and with --key/--trust verified
    and refused unless it is the name and version asked for) to be inventoried.
    """
    from gapseal.bundler.create import prepare_output
    from gapseal.bundler.delta import take_inventory, write_inventory
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    prepare_output(out, overwrite=overwrite)
    with _output.progress() as progress:
        result = take_inventory(
            bundles,
            insecure=insecure,
            allow_hosts=allow_host,
            timeout=timeout,
            trusted_keys=trusted_keys(key, trust) if key or trust else [],
            progress=progress,
        )
    write_inventory(result, out, overwrite=overwrite)
    size = sum(b.size for b in result.blobs)
    if json_output:
        _output.emit_json(
            {
                "ok": True,
                "out": str(out),
                "blobs": len(result.blobs),
                "bytes": size,
                "bundles": [b.model_dump(mode="json") for b in result.bundles],
            }
        )
    else:
        names = ", ".join(f"{b.name} {b.version}" for b in result.bundles) or "no readable bundle"
        _output.stdout.print(f"wrote {out}: {len(result.blobs)} blobs, {size} bytes ({names})", highlight=False)
    return 0


@app.command("apply")
def apply(
    delta: Path = typer.Argument(..., help="A delta made by 'bundle create --base' (directory, tar or first part)."),
    base: Path = typer.Option(..., "--base", help="The earlier bundle already on this side (directory, tar, part)."),
    out: Path = typer.Option(..., "--out", help="The full bundle directory to create."),
    key: list[Path] = _KEYS,
    trust: Path | None = _TRUST,
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Accept a version older than one this host already used."
    ),
    state_file: Path | None = typer.Option(
        None, "--state-file", help="Rollback state file (default: $GAPSEAL_STATE_DIR or ~/.local/state/gapseal)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    json_output: bool = _JSON,
    quiet: bool = _QUIET,
) -> int:
    """Complete a delta with its base into a full bundle, verified as it is written.

    Every file is copied or streamed (never linked) and hashed as it is written; --out appears only once what was
    written verifies as the signed bundle. A base lacking some of the blobs the delta left out is refused, naming
    them. Applying uses the bundle: the rollback check applies and this host's high-water mark moves to it.
    """
    from gapseal.bundler.delta import apply_delta
    from gapseal.bundler.rollback import RollbackState, default_state_file
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    keys = trusted_keys(key, trust)
    state = RollbackState(state_file or default_state_file())
    with _output.progress() as progress:
        result = apply_delta(
            delta,
            base,
            out,
            keys,
            overwrite=overwrite,
            rollback=state,
            allow_downgrade=allow_downgrade,
            progress=progress,
        )
    d = result.verified.descriptor
    doc = {
        "ok": True,
        "bundle": str(result.path),
        "name": d.name,
        "version": d.version,
        "manifest_digest": result.verified.manifest_digest,
        "signer_key_id": result.verified.signer_key_id,
        "from_delta": result.from_delta,
        "from_base": result.from_base,
        "linked": result.linked,
        "downgrade_allowed": bool(result.verified.rollback and result.verified.rollback.downgrade),
    }
    if json_output:
        _output.emit_json(doc)
    else:
        _output.stdout.print(f"[green]applied[/] {delta} onto {base}: {out} ({d.name} {d.version})", highlight=False)
        _output.stdout.print(f"  manifest {result.verified.manifest_digest}, verified standalone")
        _output.stdout.print(
            f"  {result.from_delta} files from the delta, {result.from_base} from the base; "
            "every byte hashed as it was written"
        )
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# The self-contained bundle: SBOM (gapseal.bundler.sbom)


def _print_sbom(bundle: Path, keys: "list[VerifyingKey]") -> int:
    """``inspect --sbom``: the stored CycloneDX JSON, byte for byte, on stdout."""
    import sys

    from gapseal.bundler.sbom import read_sbom

    with _output.progress() as progress:
        data, verified = read_sbom(bundle, keys, progress=progress)
    if not verified:
        _output.stderr.print("note: bundle not verified (pass --key or --trust); the SBOM matches its descriptor entry")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0
