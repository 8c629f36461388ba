"""Which public keys a verifier trusts: ``--key`` files and a ``trust.yaml``.

A trust file lists keys by name, each as a path (relative to the trust file) or as inline PEM::

    apiVersion: gapseal/v1
    kind: Trust
    keys:
      - {name: release-2026, path: keys/release-2026.pub}
      - name: audit
        pem: |
          -----BEGIN PUBLIC KEY-----
          ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gapseal.errors import KeyLoadError, UsageError
from gapseal.signing.keys import VerifyingKey, load_public_key, load_public_key_pem

_MAX_TRUST_FILE = 1024 * 1024


class _TrustModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class TrustedKeyEntry(_TrustModel):
    """One trusted public key."""

    name: str = Field(min_length=1, description="A name for this key, unique in the file (shown in messages).")
    path: str | None = Field(
        default=None, description="A SubjectPublicKeyInfo PEM file, relative to the trust file's directory."
    )
    pem: str | None = Field(default=None, description="The SubjectPublicKeyInfo PEM itself, inline.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> TrustedKeyEntry:
        if (self.path is None) == (self.pem is None):
            raise ValueError("give exactly one of 'path' or 'pem'")
        return self


class TrustFile(_TrustModel):
    """A ``trust.yaml``: the public keys whose signatures a verifier accepts."""

    api_version: Literal["gapseal/v1"] = Field(alias="apiVersion", description="Format version: gapseal/v1.")
    kind: Literal["Trust"] = Field(description="Document kind: Trust.")
    keys: list[TrustedKeyEntry] = Field(min_length=1, description="The trusted keys; at least one.")


def _first_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_trust(path: Path) -> list[VerifyingKey]:
    """Load the trusted public keys a ``trust.yaml`` names; errors name the field and the file."""
    return [key for _, key in load_named_trust(path)]


def load_named_trust(path: Path) -> list[tuple[str, VerifyingKey]]:
    """Load a ``trust.yaml`` as (name, key) pairs, in file order (evidence names its signer by these names)."""
    where = str(path)
    try:
        if path.stat().st_size > _MAX_TRUST_FILE:
            raise KeyLoadError("trust file is too large", where=where)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyLoadError(f"trust file {where} does not exist", where=where, hint="check the --trust path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyLoadError(f"cannot read trust file: {e}", where=where) from e
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KeyLoadError(f"trust file is not valid YAML: {e}", where=where) from e
    if not isinstance(document, dict):
        raise KeyLoadError("trust file is not a YAML mapping", where=where, hint="start with 'apiVersion: gapseal/v1'")
    try:
        trust = TrustFile.model_validate(document)
    except ValidationError as e:
        raise KeyLoadError(f"invalid trust file: {_first_error(e)}", where=where) from e
    keys: list[tuple[str, VerifyingKey]] = []
    names: dict[str, str] = {}
    for i, entry in enumerate(trust.keys):
        if entry.name in names.values():
            raise KeyLoadError(f"invalid trust file: keys.{i}.name: duplicate name {entry.name!r}", where=where)
        if entry.pem is not None:
            key = load_public_key_pem(entry.pem.encode("utf-8"), where=f"{where}: keys.{i}.pem ({entry.name})")
        else:
            key = load_public_key(path.parent / str(entry.path))
        if key.key_id in names:
            raise KeyLoadError(
                f"invalid trust file: keys.{i} ({entry.name!r}) is the same key as {names[key.key_id]!r}", where=where
            )
        names[key.key_id] = entry.name
        keys.append((entry.name, key))
    return keys


def trusted_keys(key_paths: Sequence[Path], trust_file: Path | None) -> list[VerifyingKey]:
    """Return the keys of every ``--key`` file and of the ``--trust`` file, without duplicates.

    Raises ``UsageError`` when neither is given: verification without a trusted key is refused, never skipped.
    """
    if not key_paths and trust_file is None:
        raise UsageError(
            "no trusted key given: verification needs at least one",
            hint="pass --key NAME.pub (repeatable) or --trust trust.yaml",
        )
    keys: list[VerifyingKey] = [load_public_key(p) for p in key_paths]
    if trust_file is not None:
        keys.extend(load_trust(trust_file))
    unique: dict[str, VerifyingKey] = {}
    for k in keys:
        unique.setdefault(k.key_id, k)
    return list(unique.values())


def trust_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a ``trust.yaml``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gapseal.invalid/schemas/trust.v1.schema.json",
        **TrustFile.model_json_schema(by_alias=True),
    }
