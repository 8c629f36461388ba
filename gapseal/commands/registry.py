"""``gapseal registry``: load verified bundles into an on-site OCI registry."""

# No ``from __future__ import annotations`` in the command modules: typer reads the annotations of every command
# at each start, and string annotations are eval'd one by one (about 800 evals: two thirds of building the CLI).

from pathlib import Path

import typer

from gapseal.commands import _output

app = typer.Typer(help="Serve bundles and their images from an on-site OCI registry.", no_args_is_help=True)

ALLOW_HOST_HELP = (
    "Also accept redirects, upload locations and token realms pointing at this HOST:PORT (repeatable); "
    "by default only the registry named is ever contacted. Credentials are never sent there."
)
TIMEOUT_HELP = (
    "Seconds a stalled transfer may wait for the registry before it fails (each request also has a deadline)."
)


@app.command("load")
def load(
    bundle: Path = typer.Argument(..., help="A bundle directory (unpack a tar first)."),
    registry: str = typer.Option(
        ..., "--registry", help="The on-site registry, HOST:PORT (only this host is contacted)."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Talk plain HTTP (or TLS without certificate checks) to the registry."
    ),
    allow_host: list[str] = typer.Option([], "--allow-host", help=ALLOW_HOST_HELP),
    timeout: float = typer.Option(20.0, "--timeout", min=0.1, help=TIMEOUT_HELP),
    key: list[Path] = typer.Option([], "--key", help="A trusted public key (NAME.pub); repeatable."),
    trust: Path | None = typer.Option(None, "--trust", help="A trust.yaml listing trusted public keys."),
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Load a version older than one this host already used."
    ),
    state_file: Path | None = typer.Option(
        None, "--state-file", help="Rollback state file (default: $GAPSEAL_STATE_DIR or ~/.local/state/gapseal)."
    ),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=32, help="Blobs in flight at once."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as one JSON document (implies --quiet)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> int:
    """Verify BUNDLE, then push its images (NAME:VERSION) and itself (gapseal/BUNDLE:VERSION) to the registry.

    The bundle is verified first (rollback included; loading it moves this host's high-water mark). Blobs the
    registry already has are not sent again, so a load that stopped half-way resumes when run again. Everything
    pushed is read back by digest and checked before the version tags are written.
    """
    from gapseal.bundler.registry import load_bundle, result_dict
    from gapseal.bundler.rollback import RollbackState, default_state_file
    from gapseal.signing.trust import trusted_keys

    _output.configure(json_output=json_output, quiet=quiet)
    keys = trusted_keys(key, trust)
    with _output.progress() as progress:
        result = load_bundle(
            bundle,
            keys,
            registry,
            insecure=insecure,
            allow_hosts=allow_host,
            timeout=timeout,
            rollback=RollbackState(state_file or default_state_file()),
            allow_downgrade=allow_downgrade,
            concurrency=concurrency,
            progress=progress,
        )
    doc = {"ok": True, **result_dict(result)}
    if json_output:
        _output.emit_json(doc)
    else:
        out = _output.stdout
        out.print(f"loaded {bundle} into {registry}", highlight=False)
        out.print(f"  bundle    {result.bundle_reference} (signature as {result.signature_mode})", highlight=False)
        for name, ref in result.image_references.items():
            out.print(f"  image     {name}: {ref}", highlight=False)
        out.print(
            f"  blobs     {len(result.blobs_sent)} sent ({result.bytes_sent} bytes), "
            f"{len(result.blobs_present)} already there, {len(result.blobs_mounted)} mounted",
            highlight=False,
        )
        out.print(f"  checked   {result.manifests_checked} manifests and tags read back by digest", highlight=False)
    return 0
