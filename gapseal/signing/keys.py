"""ECDSA P-256 signing keys: generate, store, load, sign and verify.

gapseal signs with one kind of key only, ECDSA over NIST P-256 with SHA-256 (what cosign and ``@sigstore/verify``
accept for public-key bundles). A key's id is the lower-case hex SHA-256 of its DER SubjectPublicKeyInfo; it is a
label for humans and hints, never a reason to trust a signature.

Private keys are PKCS#8 PEM, encrypted with a passphrase unless the caller asks for no encryption. Key files are
created 0600 from the first byte (``O_CREAT | O_EXCL``), written to a temporary file in the same directory, synced
and moved into place, and a private key readable by group or others is refused on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from gapseal.errors import KeyLoadError, UsageError, output_exists, output_not_writable

PRIVATE_KEY_SUFFIX = ".key"
PUBLIC_KEY_SUFFIX = ".pub"
KEY_TYPE = "ecdsa-p256-sha256"

_PEM_BEGIN = b"-----BEGIN "
_ENCRYPTED_PKCS8 = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_LEGACY_ENCRYPTED = b"Proc-Type: 4,ENCRYPTED"
_PUBLIC_PEM = b"-----BEGIN PUBLIC KEY-----"
_MAX_KEY_FILE = 64 * 1024


def _key_id(public: ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"an RSA-{key.key_size} key"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448 key"
    return f"a {type(key).__name__.lstrip('_')}"


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    )


class VerifyingKey:
    """An ECDSA P-256 public key that checks signatures."""

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        if not _is_p256(key):
            raise KeyLoadError(f"not an ECDSA P-256 key: got {_describe(key)}")
        self._key = key
        self._key_id = _key_id(key)

    @property
    def key_id(self) -> str:
        """Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo."""
        return self._key_id

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Return True if ``signature`` (DER ECDSA-SHA256) is this key's signature over ``data``."""
        try:
            self._key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def pem(self) -> bytes:
        """Return the SubjectPublicKeyInfo PEM."""
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifyingKey):
            return NotImplemented
        return self._key_id == other._key_id

    def __hash__(self) -> int:
        return hash(self._key_id)

    def __repr__(self) -> str:
        return f"VerifyingKey(key_id={self._key_id[:16]}…)"


class SigningKey:
    """An ECDSA P-256 private key. Its ``repr`` never shows key material."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not _is_p256(key):
            raise KeyLoadError(f"not an ECDSA P-256 key: got {_describe(key)}")
        self._key = key
        self._public = VerifyingKey(key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        """Return a fresh key held only in memory (tests and ephemeral use)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def key_id(self) -> str:
        """The key id of the public half."""
        return self._public.key_id

    @property
    def public(self) -> VerifyingKey:
        """The public half."""
        return self._public

    def sign(self, data: bytes) -> bytes:
        """Return a DER-encoded ECDSA-SHA256 signature over ``data``."""
        # RFC 6979 deterministic nonces: the same statement signed twice gives the same bytes, so whole bundles
        # are reproducible, and no weak random source can ever leak the key through a biased nonce.
        return self._key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))

    def cryptography_key(self) -> ec.EllipticCurvePrivateKey:
        """Return the underlying ``cryptography`` key, for libraries that sign with it themselves (model-signing)."""
        return self._key

    def private_pem(self, passphrase: bytes | None) -> bytes:
        """Return the PKCS#8 PEM, encrypted with ``passphrase`` unless it is None."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id[:16]}…)"


@dataclass(frozen=True)
class KeyFileInfo:
    """What a key file is, read without decrypting it."""

    path: Path
    kind: Literal["private", "public"]
    encrypted: bool


def key_paths(stem: Path) -> tuple[Path, Path]:
    """Return (STEM.key, STEM.pub); the suffix is appended, never substituted.

    A stem that already ends in ``.key`` or ``.pub`` names the pair too: ``foo.key`` gives ``foo.key``/``foo.pub``,
    never ``foo.key.key``.
    """
    name = stem.name
    for suffix in (PRIVATE_KEY_SUFFIX, PUBLIC_KEY_SUFFIX):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return stem.with_name(name + PRIVATE_KEY_SUFFIX), stem.with_name(name + PUBLIC_KEY_SUFFIX)


def _write_new_file(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically; the file has ``mode`` from its creation on."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)  # the umask may have narrowed it; never widen beyond ``mode``
                os.fsync(f.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # atomic and refuses an existing target
                except FileExistsError:
                    raise output_exists(path) from None
                os.unlink(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:  # read-only directory, full disk, quota: the machine's state, named with the path
        raise output_not_writable(path, e.strerror or str(e)) from e


def check_key_pair_writable(stem: Path, *, overwrite: bool) -> tuple[Path, Path]:
    """Return (STEM.key, STEM.pub) after checking they may be written; ``UsageError`` if not."""
    private_path, public_path = key_paths(stem)
    if not overwrite:
        for p in (private_path, public_path):
            if p.exists() or p.is_symlink():
                raise output_exists(p)
    for p in (private_path, public_path):
        if p.is_dir():
            raise UsageError(f"output {p} is a directory", where=str(p), hint="name a file stem, e.g. keys/team")
    if not stem.parent.is_dir():
        raise output_not_writable(private_path, f"directory {stem.parent} does not exist")
    if not os.access(stem.parent, os.W_OK | os.X_OK):
        raise output_not_writable(private_path, f"directory {stem.parent} is not writable")
    return private_path, public_path


def write_key_pair(
    key: SigningKey, stem: Path, passphrase: bytes | None, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``key`` as STEM.key (0600, PKCS#8) and STEM.pub (SPKI); see :func:`generate_key_pair`."""
    private_path, public_path = check_key_pair_writable(stem, overwrite=overwrite)
    _write_new_file(private_path, key.private_pem(passphrase), 0o600, overwrite=overwrite)
    _write_new_file(public_path, key.public.pem(), 0o644, overwrite=overwrite)
    return private_path, public_path


def generate_key_pair(stem: Path, passphrase: bytes | None, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Generate an ECDSA P-256 key pair and write STEM.key and STEM.pub; return their paths.

    STEM.key is PKCS#8 PEM, encrypted with the best available encryption when ``passphrase`` is given, created 0600.
    STEM.pub is the SubjectPublicKeyInfo PEM. Existing files are refused unless ``overwrite``.
    """
    if passphrase is not None and not passphrase:
        raise UsageError("an empty passphrase is not a passphrase", hint="give a passphrase or ask for --unencrypted")
    return write_key_pair(SigningKey.generate(), stem, passphrase, overwrite=overwrite)


@dataclass(frozen=True)
class _KeyFile:
    data: bytes
    mode: int


def _read_key_file(path: Path) -> _KeyFile:
    """Read a key file through one descriptor, so the mode checked is the mode of the bytes read."""
    where = str(path)
    try:
        # O_NONBLOCK: a FIFO planted where a key is expected must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyLoadError(f"key file {path} does not exist", where=where, hint="check the path") from None
    except OSError as e:
        raise KeyLoadError(f"cannot read key file: {e.strerror}", where=where) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyLoadError("key file is not a regular file", where=where)
        if st.st_size > _MAX_KEY_FILE:
            raise KeyLoadError(f"key file is too large ({st.st_size} bytes) to be a PEM key", where=where)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyLoadError(f"cannot read key file: {e.strerror}", where=where) from e
    finally:
        os.close(fd)
    if _PEM_BEGIN not in data:
        raise KeyLoadError(
            "not a PEM key file (no '-----BEGIN' line)",
            where=where,
            hint="give a key written by `gapseal keys generate`",
        )
    return _KeyFile(data=data, mode=stat.S_IMODE(st.st_mode))


def _pem_kind(data: bytes) -> Literal["private", "public", "other"]:
    if b"PRIVATE KEY-----" in data:
        return "private"
    if _PUBLIC_PEM in data:
        return "public"
    return "other"


def inspect_key_file(path: Path) -> KeyFileInfo:
    """Tell whether ``path`` holds a private or a public key and whether it is encrypted, without decrypting it."""
    data = _read_key_file(path).data
    kind = _pem_kind(data)
    if kind == "other":
        raise KeyLoadError("PEM file holds neither a private nor a public key", where=str(path))
    encrypted = kind == "private" and (_ENCRYPTED_PKCS8 in data or _LEGACY_ENCRYPTED in data)
    return KeyFileInfo(path=path, kind=kind, encrypted=encrypted)


def load_private_key(path: Path, passphrase: bytes | None) -> SigningKey:
    """Load an ECDSA P-256 private key from a PEM file, decrypting it with ``passphrase`` if it is encrypted.

    Refuses a file readable or writable by group or others, a public key, a key of another type, an encrypted key
    without a passphrase and a wrong passphrase, each with a ``KeyLoadError`` that says what to do.
    """
    where = str(path)
    key_file = _read_key_file(path)
    data, mode = key_file.data, key_file.mode
    kind = _pem_kind(data)
    if kind == "public":
        raise KeyLoadError(
            "this is a public key; a private key is needed here", where=where, hint="give the .key file, not the .pub"
        )
    if kind != "private":
        raise KeyLoadError("PEM file holds no private key", where=where)
    if mode & 0o077:
        raise KeyLoadError(
            f"private key file is accessible by group or others (mode {mode:04o})",
            where=where,
            hint=f"chmod 600 {path}",
        )
    encrypted = _ENCRYPTED_PKCS8 in data or _LEGACY_ENCRYPTED in data
    if encrypted and not passphrase:
        raise KeyLoadError(
            "private key is encrypted and no passphrase was given",
            where=where,
            hint="set GAPSEAL_KEY_PASSPHRASE or run from a terminal to be prompted",
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except ValueError as e:
        if encrypted:
            raise KeyLoadError(
                "cannot decrypt the private key: wrong passphrase", where=where, hint="check GAPSEAL_KEY_PASSPHRASE"
            ) from e
        raise KeyLoadError(f"cannot parse the private key: {e}", where=where) from e
    except (TypeError, UnsupportedAlgorithm) as e:
        raise KeyLoadError(f"cannot load the private key: {e}", where=where) from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _is_p256(key):
        raise KeyLoadError(
            f"not an ECDSA P-256 key: the file holds {_describe(key)}",
            where=where,
            hint="generate one with `gapseal keys generate`",
        )
    return SigningKey(key)


def load_public_key_pem(data: bytes, *, where: str | None = None) -> VerifyingKey:
    """Load an ECDSA P-256 public key from SubjectPublicKeyInfo PEM bytes."""
    if _PEM_BEGIN not in data:
        raise KeyLoadError("not a PEM public key (no '-----BEGIN' line)", where=where)
    kind = _pem_kind(data)
    if kind == "private":
        raise KeyLoadError(
            "this is a private key; a public key is needed here",
            where=where,
            hint="give the .pub file; never hand a private key to a verifier",
        )
    if kind != "public":
        raise KeyLoadError("PEM data holds no 'PUBLIC KEY' block", where=where)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyLoadError(f"cannot parse the public key: {e}", where=where) from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or not _is_p256(key):
        raise KeyLoadError(f"not an ECDSA P-256 key: got {_describe(key)}", where=where)
    return VerifyingKey(key)


def load_public_key(path: Path) -> VerifyingKey:
    """Load an ECDSA P-256 public key from a SubjectPublicKeyInfo PEM file."""
    return load_public_key_pem(_read_key_file(path).data, where=str(path))
