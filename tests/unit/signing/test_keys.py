"""Key generation, storage and loading: file modes, overwrite refusal, passphrases, and every wrong kind of key."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gapseal.errors import KeyLoadError, OutputError, UsageError
from gapseal.signing.keys import (
    SigningKey,
    generate_key_pair,
    inspect_key_file,
    load_private_key,
    load_public_key,
    load_public_key_pem,
)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _write_private(path: Path, key: object, passphrase: bytes | None = None) -> Path:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)  # type: ignore[attr-defined]
    )
    path.chmod(0o600)
    return path


def _write_public(path: Path, key: object) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


# --- generation -----------------------------------------------------------------------------------------------------


def test_generate_writes_private_0600_and_public(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        private, public = generate_key_pair(tmp_path / "signer", b"correct horse")
    finally:
        os.umask(old)
    assert (private.name, public.name) == ("signer.key", "signer.pub")
    assert _mode(private) == 0o600
    assert _mode(public) == 0o644
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in private.read_bytes()
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signer.key", "signer.pub"], "no temporary file left behind"


def test_private_key_file_is_created_0600_exclusively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The private key is never on disk with a wider mode, not even for an instant: O_CREAT|O_EXCL with 0o600."""
    calls: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777, *args: object, **kw: object) -> int:
        calls.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    generate_key_pair(tmp_path / "k", None)
    key_opens = [c for c in calls if c[0].endswith(".key") or ".k.key." in c[0]]
    assert key_opens, calls
    for _, flags, mode in key_opens:
        assert flags & os.O_CREAT
        assert flags & os.O_EXCL
        assert mode == 0o600


def test_generate_keeps_dotted_stem(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "release.2026", None)
    assert (private.name, public.name) == ("release.2026.key", "release.2026.pub")


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k", None)
    before = (private.read_bytes(), public.read_bytes())
    with pytest.raises(UsageError, match="already exists") as e:
        generate_key_pair(tmp_path / "k", None)
    assert e.value.hint is not None
    assert "--overwrite" in e.value.hint
    assert (private.read_bytes(), public.read_bytes()) == before


def test_generate_refuses_when_only_the_public_half_exists(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text("something else")
    with pytest.raises(UsageError, match=r"k\.pub already exists"):
        generate_key_pair(tmp_path / "k", None)
    assert not (tmp_path / "k.key").exists()


def test_generate_refuses_a_dangling_symlink_target(tmp_path: Path) -> None:
    (tmp_path / "k.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="already exists"):
        generate_key_pair(tmp_path / "k", None)
    assert not (tmp_path / "elsewhere").exists()


def test_generate_with_overwrite_replaces_the_pair(tmp_path: Path) -> None:
    _, public = generate_key_pair(tmp_path / "k", None)
    old_id = load_public_key(public).key_id
    private, public = generate_key_pair(tmp_path / "k", None, overwrite=True)
    assert load_public_key(public).key_id != old_id
    assert load_private_key(private, None).key_id == load_public_key(public).key_id
    assert _mode(private) == 0o600


def test_generate_refuses_an_empty_passphrase(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="empty passphrase"):
        generate_key_pair(tmp_path / "k", b"")


def test_generate_into_a_missing_directory_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        generate_key_pair(tmp_path / "nope" / "k", None)


@pytest.mark.parametrize("given", ["team.key", "team.pub", "team"])
def test_generate_names_the_pair_from_a_stem_with_or_without_suffix(tmp_path: Path, given: str) -> None:
    private, public = generate_key_pair(tmp_path / given, None)
    assert (private.name, public.name) == ("team.key", "team.pub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["team.key", "team.pub"]


# --- round trips ----------------------------------------------------------------------------------------------------


def test_encrypted_round_trip(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k", b"s3cret")
    key = load_private_key(private, b"s3cret")
    assert key.key_id == load_public_key(public).key_id
    assert inspect_key_file(private).encrypted


def test_unencrypted_round_trip(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k", None)
    assert b"-----BEGIN PRIVATE KEY-----" in private.read_bytes()
    assert load_private_key(private, None).key_id == load_public_key(public).key_id
    assert not inspect_key_file(private).encrypted


def test_passphrase_for_an_unencrypted_key_is_not_needed(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path / "k", None)
    assert load_private_key(private, b"whatever").key_id == load_public_key(public).key_id


def test_key_id_is_sha256_of_der_spki(tmp_path: Path) -> None:
    _, public = generate_key_pair(tmp_path / "k", None)
    pub = serialization.load_pem_public_key(public.read_bytes())
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_id = load_public_key(public).key_id
    assert key_id == hashlib.sha256(der).hexdigest()
    assert key_id == key_id.lower()
    assert len(key_id) == 64


def test_sign_and_verify(key_a: SigningKey, key_b: SigningKey) -> None:
    sig = key_a.sign(b"data")
    assert key_a.public.verify(sig, b"data")
    assert not key_a.public.verify(sig, b"datA")
    assert not key_b.public.verify(sig, b"data")
    assert not key_a.public.verify(b"\x30\x02garbage", b"data")
    assert not key_a.public.verify(b"", b"data")


def test_signature_is_der_ecdsa_sha256(key_a: SigningKey) -> None:
    """Checked with cryptography directly, not through VerifyingKey."""
    from cryptography.hazmat.primitives import hashes

    sig = key_a.sign(b"payload")
    pub = serialization.load_pem_public_key(key_a.public.pem())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(sig, b"payload", ec.ECDSA(hashes.SHA256()))  # raises if not


def test_repr_shows_no_key_material(key_a: SigningKey) -> None:
    text = repr(key_a)
    assert "PRIVATE" not in text
    assert key_a.key_id[:16] in text


def test_public_key_pem_round_trip(key_a: SigningKey) -> None:
    assert load_public_key_pem(key_a.public.pem()) == key_a.public


# --- rejections -----------------------------------------------------------------------------------------------------


def test_wrong_passphrase(tmp_path: Path) -> None:
    private, _ = generate_key_pair(tmp_path / "k", b"right")
    with pytest.raises(KeyLoadError, match="wrong passphrase") as e:
        load_private_key(private, b"wrong")
    assert e.value.where == str(private)


def test_encrypted_key_without_passphrase(tmp_path: Path) -> None:
    private, _ = generate_key_pair(tmp_path / "k", b"right")
    with pytest.raises(KeyLoadError, match="encrypted and no passphrase was given") as e:
        load_private_key(private, None)
    assert e.value.hint is not None
    assert "GAPSEAL_KEY_PASSPHRASE" in e.value.hint


def test_missing_private_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="does not exist") as e:
        load_private_key(tmp_path / "absent.key", None)
    assert e.value.where == str(tmp_path / "absent.key")


def test_missing_public_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="does not exist"):
        load_public_key(tmp_path / "absent.pub")


@pytest.mark.parametrize("content", [b"", b"not a key at all\n", b"\x00\x01\x02binary"])
def test_not_pem(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "k.key"
    p.write_bytes(content)
    p.chmod(0o600)
    with pytest.raises(KeyLoadError, match="not a PEM key file"):
        load_private_key(p, None)
    with pytest.raises(KeyLoadError, match="not a PEM key file"):
        load_public_key(p)


def test_pem_with_no_key(tmp_path: Path) -> None:
    p = tmp_path / "cert.pem"
    p.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    p.chmod(0o600)
    with pytest.raises(KeyLoadError, match="holds no private key"):
        load_private_key(p, None)
    with pytest.raises(KeyLoadError, match="no 'PUBLIC KEY' block"):
        load_public_key(p)


def test_corrupt_private_key_body(tmp_path: Path) -> None:
    p = tmp_path / "k.key"
    p.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    p.chmod(0o600)
    with pytest.raises(KeyLoadError, match="cannot parse the private key"):
        load_private_key(p, None)


def test_directory_instead_of_key(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="not a regular file"):
        load_private_key(tmp_path, None)


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("rsa", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "an RSA-2048 key"),
        ("p384", lambda: ec.generate_private_key(ec.SECP384R1()), "an EC secp384r1 key"),
        ("ed25519", ed25519.Ed25519PrivateKey.generate, "an Ed25519 key"),
    ],
)
def test_private_key_of_another_type(tmp_path: Path, name: str, make: object, expected: str) -> None:
    key = make()  # type: ignore[operator]
    private = _write_private(tmp_path / f"{name}.key", key)
    with pytest.raises(KeyLoadError, match=f"not an ECDSA P-256 key: the file holds {expected}"):
        load_private_key(private, None)
    public = _write_public(tmp_path / f"{name}.pub", key)
    with pytest.raises(KeyLoadError, match=f"not an ECDSA P-256 key: got {expected}"):
        load_public_key(public)


def test_encrypted_key_of_another_type_is_refused_after_decryption(tmp_path: Path) -> None:
    private = _write_private(tmp_path / "p384.key", ec.generate_private_key(ec.SECP384R1()), b"pw")
    with pytest.raises(KeyLoadError, match="secp384r1"):
        load_private_key(private, b"pw")


def test_public_key_given_where_a_private_key_is_needed(tmp_path: Path) -> None:
    _, public = generate_key_pair(tmp_path / "k", None)
    with pytest.raises(KeyLoadError, match="this is a public key") as e:
        load_private_key(public, None)
    assert e.value.hint is not None
    assert ".key" in e.value.hint


def test_private_key_given_where_a_public_key_is_needed(tmp_path: Path) -> None:
    private, _ = generate_key_pair(tmp_path / "k", None)
    with pytest.raises(KeyLoadError, match="this is a private key") as e:
        load_public_key(private)
    assert e.value.where == str(private)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700 | 0o040])
def test_private_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    private, _ = generate_key_pair(tmp_path / "k", None)
    private.chmod(mode)
    with pytest.raises(KeyLoadError, match="accessible by group or others") as e:
        load_private_key(private, None)
    assert e.value.hint == f"chmod 600 {private}"


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    private, _ = generate_key_pair(tmp_path / "k", None)
    private.chmod(0o400)
    load_private_key(private, None)


def test_inspect_key_file(tmp_path: Path) -> None:
    enc, pub = generate_key_pair(tmp_path / "e", b"pw")
    plain, _ = generate_key_pair(tmp_path / "p", None)
    assert (inspect_key_file(enc).kind, inspect_key_file(enc).encrypted) == ("private", True)
    assert (inspect_key_file(plain).kind, inspect_key_file(plain).encrypted) == ("private", False)
    assert (inspect_key_file(pub).kind, inspect_key_file(pub).encrypted) == ("public", False)


def test_fifo_instead_of_key_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "k.key"
    os.mkfifo(fifo)
    with pytest.raises(KeyLoadError, match="not a regular file"):
        load_private_key(fifo, None)


def test_oversized_key_file(tmp_path: Path) -> None:
    big = tmp_path / "k.pub"
    big.write_bytes(b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 70_000)
    with pytest.raises(KeyLoadError, match="too large"):
        load_public_key(big)


def test_cryptography_key_is_the_same_key(key_a: SigningKey) -> None:
    raw = key_a.cryptography_key()
    assert isinstance(raw, ec.EllipticCurvePrivateKey)
    assert SigningKey(raw).key_id == key_a.key_id


def test_signatures_are_deterministic_rfc6979(key_a: SigningKey) -> None:
    assert key_a.sign(b"m") == key_a.sign(b"m")
    assert key_a.sign(b"m") != key_a.sign(b"n")
