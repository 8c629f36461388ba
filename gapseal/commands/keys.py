"""``gapseal keys``: key pairs for signing bundles and evidence."""

# No ``from __future__ import annotations`` in the command modules: typer reads the annotations of every command
# at each start, and string annotations are eval'd one by one (about 800 evals: two thirds of building the CLI).

from pathlib import Path
from typing import Annotated, Any

import typer

from gapseal.commands import _output

# The key functions (and cryptography under them) are imported inside each command, so that ``gapseal --help`` and
# the other command groups do not pay for them.

app = typer.Typer(help="Create and inspect signing keys.", no_args_is_help=True)


@app.command("generate")
def generate(
    name: Annotated[
        Path,
        typer.Argument(help="Path stem: writes NAME.key (private, 0600) and NAME.pub; NAME.key or NAME.pub work too."),
    ],
    unencrypted: bool = typer.Option(
        False, "--unencrypted", help="Store the private key without a passphrase (unsafe; ask for it by name)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace NAME.key and NAME.pub if they exist."),
    weak_passphrase: bool = typer.Option(
        False, "--weak-passphrase", help="Accept a passphrase shorter than 12 characters (unsafe; ask for it by name)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> int:
    """Generate an ECDSA P-256 key pair; the passphrase comes from GAPSEAL_KEY_PASSPHRASE or a prompt."""
    from gapseal.commands import _secrets
    from gapseal.signing.keys import KEY_TYPE, check_key_pair_writable, generate_key_pair, load_public_key

    _output.configure(json_output=json_output)
    check_key_pair_writable(name, overwrite=overwrite)  # before asking for a passphrase
    passphrase = _secrets.new_key_passphrase(unencrypted=unencrypted, weak_ok=weak_passphrase)
    private_path, public_path = generate_key_pair(name, passphrase, overwrite=overwrite)
    key_id = load_public_key(public_path).key_id
    result = {
        "ok": True,
        "private_key": str(private_path),
        "public_key": str(public_path),
        "key_id": key_id,
        "type": KEY_TYPE,
        "encrypted": passphrase is not None,
    }
    if json_output:
        _output.emit_json(result)
    else:
        _output.stdout.print(f"private key: {private_path} ({'encrypted' if passphrase else 'UNENCRYPTED'}, 0600)")
        _output.stdout.print(f"public key:  {public_path}")
        _output.stdout.print(f"key id:      {key_id}")
    return 0


@app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A .key or .pub file.")],
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> int:
    """Show a key file's id, type, and whether it is private and encrypted."""
    from gapseal.commands import _secrets
    from gapseal.signing.keys import KEY_TYPE, inspect_key_file, load_private_key, load_public_key

    _output.configure(json_output=json_output)
    info = inspect_key_file(file)
    result: dict[str, Any] = {"path": str(file), "key_kind": info.kind, "type": KEY_TYPE, "encrypted": info.encrypted}
    if info.kind == "public":
        result["key_id"] = load_public_key(file).key_id
    elif not info.encrypted:
        result["key_id"] = load_private_key(file, None).key_id
    else:
        passphrase = _secrets.existing_key_passphrase(file)
        # Without a passphrase the public half (and so the id) cannot be derived from an encrypted key.
        result["key_id"] = load_private_key(file, passphrase).key_id if passphrase is not None else None
    if json_output:
        _output.emit_json({"ok": True, **result})
    else:
        _output.stdout.print(f"file:      {file}")
        _output.stdout.print(f"kind:      {info.kind} key")
        _output.stdout.print(f"type:      {KEY_TYPE}")
        if info.kind == "private":
            _output.stdout.print(f"encrypted: {'yes' if info.encrypted else 'NO'}")
        key_id = result["key_id"] or "(unknown: set GAPSEAL_KEY_PASSPHRASE to read it from the encrypted key)"
        _output.stdout.print(f"key id:    {key_id}")
    return 0
