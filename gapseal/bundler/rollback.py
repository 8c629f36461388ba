"""Rollback protection: the highest version of each bundle name this host has accepted.

A signed but older bundle is a classic attack on update systems (TUF calls it a rollback attack): the signature
is genuine, the content is stale and may carry a fixed vulnerability. ``verify`` refuses a version lower than the
recorded high-water mark unless the operator says ``--allow-downgrade``. The state file is local and written
atomically under an exclusive lock, so two verifications at once cannot lose an update.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from gapseal.canonical import canonical_json
from gapseal.errors import VerificationError, output_not_writable
from gapseal.jsonlimits import json_problem

STATE_ENV = "GAPSEAL_STATE_DIR"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_VERSION_CHARS = re.compile(r"[A-Za-z0-9.!+_-]+")


def default_state_file() -> Path:
    """``$GAPSEAL_STATE_DIR/rollback.json``, else ``$XDG_STATE_HOME/gapseal/…``, else ``~/.local/state/gapseal/…``."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]) / "rollback.json"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "gapseal" / "rollback.json"


@dataclass(frozen=True)
class RollbackDecision:
    """What the state file said about a bundle version."""

    name: str
    version: str
    highest_seen: str | None
    downgrade: bool


MAX_STATE_FILE = 16 * 1024 * 1024
"""One entry per bundle name, about 150 bytes each: far more than a site ever holds."""


def _state_problem(data: object) -> str | None:
    """Why a parsed state file does not have the shape ``{name: {"version": V, "manifest_digest": D}}``, or None."""
    if not isinstance(data, dict):
        return f"it is a JSON {type(data).__name__}, not an object"
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"version", "manifest_digest"}:
            return f"entry {name!r} is not an object with exactly 'version' and 'manifest_digest'"
        if not isinstance(entry["manifest_digest"], str) or not _DIGEST.fullmatch(entry["manifest_digest"]):
            return f"entry {name!r}: manifest_digest is not a sha256 digest"
        problem = version_problem(entry["version"])
        if problem is not None:
            return f"entry {name!r}: {problem}"
    return None


def version_problem(version: str) -> str | None:
    """Why ``version`` cannot be compared for rollback (PEP 440), or None: the one rule for spec, create, verify."""
    if not isinstance(version, str):
        return f"{version!r} is not a string"
    if len(version) > 128:
        return f"the version is {len(version)} characters long, over 128"
    if not _VERSION_CHARS.fullmatch(version):
        # Version() forgives surrounding whitespace; a version also names files and shows in reports, so it may not.
        return f"{version!r} is not a version: only letters, digits and . ! + _ - (PEP 440, e.g. 1.4.0)"
    try:
        Version(version)
    except InvalidVersion:
        return f"{version!r} is not a version (PEP 440, e.g. 1.4.0); it is compared to refuse rollbacks"
    return None


def _parse(version: str, where: str) -> Version:
    problem = version_problem(version)
    if problem is not None:
        raise VerificationError(f"version cannot be compared for rollback: {problem}", where=where)
    return Version(version)


class RollbackState:
    """The high-water marks in one state file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, str]]]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(lock_path, "a")  # noqa: PTH123, SIM115 - closed by the with below
        except OSError as e:
            raise VerificationError(
                f"cannot use the rollback state file: {e.strerror or e}",
                where=str(self.path),
                hint="pass --state-file with a writable path, or set GAPSEAL_STATE_DIR",
            ) from e
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        hint = "restore it from backup; deleting it disables rollback protection until bundles are used again"
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise VerificationError(
                f"rollback state file is unreadable: {e.strerror or e}", where=str(self.path), hint=hint
            ) from e
        # Fail closed: a damaged high-water mark must not silently reset to "nothing seen".
        data, problem = json_problem(raw, max_bytes=MAX_STATE_FILE)
        if problem is None:
            problem = _state_problem(data)
        if problem is not None:
            raise VerificationError(f"rollback state file is unreadable: {problem}", where=str(self.path), hint=hint)
        return data  # type: ignore[no-any-return]

    def check(self, name: str, version: str, *, allow_downgrade: bool) -> RollbackDecision:
        """Refuse ``version`` if a higher one of ``name`` was accepted before (unless ``allow_downgrade``)."""
        with self._locked() as state:
            seen = state.get(name, {}).get("version")
        if seen is None:
            return RollbackDecision(name, version, None, downgrade=False)
        downgrade = _parse(version, name) < _parse(seen, str(self.path))
        if downgrade and not allow_downgrade:
            raise VerificationError(
                f"rollback refused: {name} {version} is older than {seen}, which this host has already accepted",
                where=str(self.path),
                hint="use the newer bundle; pass --allow-downgrade only if going back is intended",
            )
        return RollbackDecision(name, version, seen, downgrade=downgrade)

    def record(self, name: str, version: str, manifest_digest: str) -> None:
        """Raise the high-water mark of ``name`` to ``version`` if it is higher than what is recorded."""
        with self._locked() as state:
            seen = state.get(name, {}).get("version")
            if seen is not None and _parse(version, name) <= _parse(seen, str(self.path)):
                return
            state[name] = {"version": version, "manifest_digest": manifest_digest}
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as f:  # noqa: PTH123
                    f.write(canonical_json(state))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise output_not_writable(self.path, e.strerror or str(e)) from e
