"""``gapseal keys generate|show`` and the passphrase helper every signing command uses."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.cli import main
from gapseal.commands import _secrets
from gapseal.errors import KeyLoadError, UsageError
from gapseal.signing.keys import generate_key_pair, load_private_key, load_public_key

PASS = "tr0ub4dor&3-not-in-any-output"


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no passphrase in the environment and no terminal; tests opt in to either."""
    monkeypatch.delenv("GAPSEAL_KEY_PASSPHRASE", raising=False)
    monkeypatch.setattr(_secrets, "_interactive", lambda: False)


def _typed(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    prompts: list[str] = []
    it: Iterator[str] = iter(answers)
    monkeypatch.setattr(_secrets, "_interactive", lambda: True)

    def prompt(text: str) -> str:
        prompts.append(text)
        return next(it)

    monkeypatch.setattr(_secrets, "_prompt", prompt)
    return prompts


def test_generate_with_env_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", PASS)
    assert main(["keys", "generate", str(tmp_path / "k"), "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["encrypted"] is True
    assert result["ok"] is True
    assert result["key_id"] == load_public_key(tmp_path / "k.pub").key_id
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert load_private_key(tmp_path / "k.key", PASS.encode()).key_id == result["key_id"]
    assert PASS not in out + err, "the passphrase is never printed"


def test_generate_logs_that_a_passphrase_was_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", PASS)
    assert main(["keys", "generate", str(tmp_path / "k")]) == 0
    out, err = capsys.readouterr()
    assert "using the passphrase from GAPSEAL_KEY_PASSPHRASE" in err
    assert "encrypted" in out
    assert PASS not in out + err


def test_generate_unencrypted_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", str(tmp_path / "k"), "--unencrypted", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encrypted"] is False
    assert b"-----BEGIN PRIVATE KEY-----" in (tmp_path / "k.key").read_bytes()


def test_generate_unencrypted_ignores_the_env_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", PASS)
    assert main(["keys", "generate", str(tmp_path / "k"), "--unencrypted"]) == 0
    assert "GAPSEAL_KEY_PASSPHRASE is ignored" in capsys.readouterr().err
    load_private_key(tmp_path / "k.key", None)


def test_generate_without_terminal_env_or_flag_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert "no passphrase" in err
    for option in ("GAPSEAL_KEY_PASSPHRASE", "terminal", "--unencrypted"):
        assert option in err
    assert list(tmp_path.iterdir()) == []


def test_generate_with_an_empty_env_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", "")
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    assert "set but empty" in capsys.readouterr().err


def test_generate_with_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = _typed(monkeypatch, PASS, PASS)
    assert main(["keys", "generate", str(tmp_path / "k")]) == 0
    assert len(prompts) == 2
    assert "Repeat" in prompts[1]
    load_private_key(tmp_path / "k.key", PASS.encode())


def test_generate_with_mismatched_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _typed(monkeypatch, PASS, PASS + "x")
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    assert "differ" in capsys.readouterr().err
    assert not (tmp_path / "k.key").exists()


def test_generate_with_empty_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _typed(monkeypatch, "")
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2


def test_generate_refuses_overwrite_before_asking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_key_pair(tmp_path / "k", None)
    prompts = _typed(monkeypatch, PASS, PASS)
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert prompts == [], "no passphrase is asked for a command that cannot write its output"
    assert main(["keys", "generate", str(tmp_path / "k"), "--overwrite"]) == 0


def test_show_public(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, pub = generate_key_pair(tmp_path / "k", None)
    assert main(["keys", "show", str(pub), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r == {
        "kind": "gapseal.KeysShowResult",
        "version": 1,
        "ok": True,
        "path": str(pub),
        "key_kind": "public",
        "type": "ecdsa-p256-sha256",
        "encrypted": False,
        "key_id": load_public_key(pub).key_id,
    }


def test_show_unencrypted_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, pub = generate_key_pair(tmp_path / "k", None)
    assert main(["keys", "show", str(key)]) == 0
    out = capsys.readouterr().out
    assert "private key" in out
    assert "encrypted: NO" in out
    assert load_public_key(pub).key_id in out


def test_show_encrypted_private_with_and_without_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key, pub = generate_key_pair(tmp_path / "k", PASS.encode())
    assert main(["keys", "show", str(key), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["encrypted"] is True
    assert r["key_id"] is None
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", PASS)
    assert main(["keys", "show", str(key), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key_id"] == load_public_key(pub).key_id


def test_show_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "show", str(tmp_path / "absent.pub")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_show_group_readable_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, _ = generate_key_pair(tmp_path / "k", None)
    key.chmod(0o644)
    assert main(["keys", "show", str(key)]) == 1
    assert "chmod 600" in capsys.readouterr().err


# --- private_key_from: the helper signing commands call -------------------------------------------------------------


def test_private_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, pub = generate_key_pair(tmp_path / "k", PASS.encode())
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", PASS)
    assert _secrets.private_key_from(key).key_id == load_public_key(pub).key_id


def test_private_key_from_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, pub = generate_key_pair(tmp_path / "k", PASS.encode())
    prompts = _typed(monkeypatch, PASS)
    assert _secrets.private_key_from(key).key_id == load_public_key(pub).key_id
    assert len(prompts) == 1
    assert str(key) in prompts[0]


def test_private_key_from_unencrypted_never_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = generate_key_pair(tmp_path / "k", None)
    prompts = _typed(monkeypatch)
    _secrets.private_key_from(key)
    assert prompts == []


def test_private_key_from_with_no_way_to_get_a_passphrase(tmp_path: Path) -> None:
    key, _ = generate_key_pair(tmp_path / "k", PASS.encode())
    with pytest.raises(UsageError, match="encrypted and no passphrase is available") as e:
        _secrets.private_key_from(key)
    assert e.value.where == str(key)


def test_private_key_from_with_the_wrong_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = generate_key_pair(tmp_path / "k", PASS.encode())
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", "wrong")
    with pytest.raises(KeyLoadError, match="wrong passphrase"):
        _secrets.private_key_from(key)


def test_private_key_from_a_public_key(tmp_path: Path) -> None:
    _, pub = generate_key_pair(tmp_path / "k", None)
    with pytest.raises(KeyLoadError, match="this is a public key"):
        _secrets.private_key_from(pub)


def test_generate_refuses_a_short_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", "short")
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert "shorter than 12 characters" in err
    assert "--weak-passphrase" in err
    assert not list(tmp_path.iterdir()), "nothing written"


def test_generate_refuses_a_short_typed_passphrase_before_asking_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _typed(monkeypatch, "short", "short")
    assert main(["keys", "generate", str(tmp_path / "k")]) == 2
    assert len(prompts) == 1


def test_generate_accepts_a_short_passphrase_asked_for_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", "short")
    assert main(["keys", "generate", str(tmp_path / "k"), "--weak-passphrase"]) == 0
    load_private_key(tmp_path / "k.key", b"short")


def test_generate_with_a_key_suffix_writes_the_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAPSEAL_KEY_PASSPHRASE", PASS)
    assert main(["keys", "generate", str(tmp_path / "foo.key")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foo.key", "foo.pub"]
