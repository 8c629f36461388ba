"""Passphrases for private keys: from ``GAPSEAL_KEY_PASSPHRASE`` or a hidden prompt, never from argv.

Command modules call :func:`private_key_from` to open a signing key. The fact that a passphrase was used, and where
it came from, is logged; its value never is.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from gapseal.commands import _output
from gapseal.errors import UsageError
from gapseal.signing.keys import SigningKey, inspect_key_file, load_private_key

PASSPHRASE_ENV = "GAPSEAL_KEY_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
MIN_PASSPHRASE_CHARS = 12
"""A new key's passphrase is at least this long unless ``--weak-passphrase`` is given by name."""


def _interactive() -> bool:
    return sys.stdin.isatty()


def _prompt(prompt: str) -> str:
    return getpass.getpass(prompt)


def _from_env() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        return None
    if not value:
        raise UsageError(
            f"{PASSPHRASE_ENV} is set but empty", hint=f"unset it or give a real passphrase in {PASSPHRASE_ENV}"
        )
    _output.info(f"using the passphrase from {PASSPHRASE_ENV}")
    return value.encode("utf-8")


def _strong_enough(passphrase: bytes, *, weak_ok: bool) -> bytes:
    if weak_ok or len(passphrase.decode("utf-8")) >= MIN_PASSPHRASE_CHARS:
        return passphrase
    raise UsageError(
        f"the passphrase is shorter than {MIN_PASSPHRASE_CHARS} characters",
        hint="choose a longer one (a few words), or pass --weak-passphrase to accept it anyway",
    )


def new_key_passphrase(*, unencrypted: bool, weak_ok: bool = False) -> bytes | None:
    """Return the passphrase for a new private key, or None when ``unencrypted`` was asked for by name.

    Order: ``--unencrypted``, then ``GAPSEAL_KEY_PASSPHRASE``, then a hidden prompt with confirmation. With none of
    them possible (no terminal), raise ``UsageError`` (exit 2) naming the three options. A passphrase shorter than
    ``MIN_PASSPHRASE_CHARS`` is refused unless ``weak_ok`` (``--weak-passphrase``).
    """
    if unencrypted:
        if os.environ.get(PASSPHRASE_ENV):
            _output.info(f"--unencrypted given: {PASSPHRASE_ENV} is ignored and the key is stored unencrypted")
        return None
    passphrase = _from_env()
    if passphrase is not None:
        return _strong_enough(passphrase, weak_ok=weak_ok)
    if not _interactive():
        raise UsageError(
            "no passphrase for the new private key and no terminal to ask for one",
            hint=f"set {PASSPHRASE_ENV}, run from a terminal to be prompted, or pass --unencrypted",
        )
    first = _prompt("Passphrase for the new key: ")
    if not first:
        raise UsageError("an empty passphrase is not a passphrase", hint="type one, or pass --unencrypted")
    _strong_enough(first.encode("utf-8"), weak_ok=weak_ok)
    if _prompt("Repeat the passphrase: ") != first:
        raise UsageError("the two passphrases differ", hint="run the command again")
    _output.info("using the passphrase typed at the prompt")
    return first.encode("utf-8")


def existing_key_passphrase(path: Path) -> bytes | None:
    """Return the passphrase to open the encrypted key at ``path`` (env var, else prompt); None if none is possible."""
    passphrase = _from_env()
    if passphrase is not None:
        return passphrase
    if not _interactive():
        return None
    typed = _prompt(f"Passphrase for {path}: ")
    _output.info("using the passphrase typed at the prompt")
    return typed.encode("utf-8") if typed else None


def private_key_from(path: Path) -> SigningKey:
    """Open the private key at ``path``: unencrypted as is, encrypted with a passphrase from the env var or a prompt.

    An encrypted key with no passphrase available (no env var, no terminal) is a ``UsageError`` (exit 2).
    """
    info = inspect_key_file(path)
    if info.kind == "private" and not info.encrypted:
        return load_private_key(path, None)
    if info.kind != "private":
        return load_private_key(path, None)  # raises the precise "this is a public key" error
    passphrase = existing_key_passphrase(path)
    if passphrase is None:
        raise UsageError(
            "the private key is encrypted and no passphrase is available",
            where=str(path),
            hint=f"set {PASSPHRASE_ENV} or run from a terminal to be prompted",
        )
    return load_private_key(path, passphrase)
