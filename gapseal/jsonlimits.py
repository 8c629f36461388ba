"""Bounded, strict JSON parsing of untrusted documents: a size cap, a nesting-depth cap, one clear error.

Every JSON document that comes from a bundle, a tar, a registry or a state file passes through ``load_json`` (or
``load_model`` for a pydantic model) before anything looks at it:

- more than ``max_bytes`` is refused before parsing (no parser runs over hundreds of megabytes of junk);
- nesting deeper than ``max_depth`` is refused with a message, never a ``RecursionError`` from the parser;
- duplicate object keys are refused (parsers disagree about which one wins: a reviewer and a verifier could read
  two different documents), and so are ``NaN``/``Infinity`` and text that is not UTF-8.

The error is the caller's domain error (``VerificationError`` for a bundle, ``SignatureError`` for a Sigstore bundle,
…), so the CLI reports it like any other failure of that command.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gapseal.errors import GapsealError

MAX_DEPTH = 64
"""Deepest nesting any gapseal document needs is about ten (descriptor → images → manifests → layers → blob)."""
MAX_DOCUMENT = 64 * 1024 * 1024
"""Manifests, descriptors and statements grow with the file count: about 250 bytes a file, so 64 MiB holds well
over 100,000 files. Anything larger is not a gapseal document."""
MAX_SMALL_DOCUMENT = 1024 * 1024
"""Documents that do not grow with the bundle (a delta marker's header, a state file, an OCI config)."""

_M = TypeVar("_M", bound=BaseModel)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):  # rare: only then find which key, for the message
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return document


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _depth(document: Any, limit: int) -> int:
    """The nesting depth of a parsed document (a scalar is 0), level by level, stopping once it exceeds ``limit``."""
    depth = 0
    level = [document] if isinstance(document, dict | list) else []
    while level:
        depth += 1
        if depth > limit:
            break
        below: list[Any] = []
        for node in level:
            below += [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, dict | list)]
        level = below
    return depth


def json_problem(data: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> tuple[Any, str | None]:
    """Parse ``data``; return (document, None), or (None, why it is refused)."""
    if len(data) > max_bytes:
        return None, f"is {len(data)} bytes, over the {max_bytes}-byte limit"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 (byte {e.start})"
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except RecursionError:
        return None, f"is nested too deeply (more than {max_depth} levels)"
    except ValueError as e:  # json.JSONDecodeError is a ValueError, and so are the hooks' refusals
        return None, f"is not valid JSON: {e}"
    if _depth(document, max_depth) > max_depth:
        return None, f"is nested too deeply (more than {max_depth} levels)"
    return document, None


def load_json(
    data: bytes,
    what: str,
    *,
    error: type[GapsealError],
    max_bytes: int = MAX_DOCUMENT,
    max_depth: int = MAX_DEPTH,
    where: str | None = None,
) -> Any:
    """Parse untrusted ``data`` within the limits; raise ``error("<what> <why>")`` otherwise."""
    document, problem = json_problem(data, max_bytes=max_bytes, max_depth=max_depth)
    if problem is not None:
        raise error(f"{what} {problem}", where=where)
    return document


def validation_message(e: ValidationError) -> str:
    """The first problem of a pydantic error, with the field path: ``layers.3.digest: String should match …``."""
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])


def load_model(
    model: type[_M],
    data: bytes,
    what: str,
    *,
    error: type[GapsealError],
    max_bytes: int = MAX_DOCUMENT,
    max_depth: int = MAX_DEPTH,
    where: str | None = None,
) -> _M:
    """Parse untrusted ``data`` within the limits into ``model``; raise ``error("<what> is malformed: …")``."""
    document = load_json(data, what, error=error, max_bytes=max_bytes, max_depth=max_depth, where=where)
    try:
        return model.model_validate(document)
    except ValidationError as e:
        raise error(f"{what} is malformed: {validation_message(e)}", where=where) from e
