"""jsonlimits: every refusal of untrusted JSON is one clear error of the caller's domain, never a parser crash."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from gapseal.errors import VerificationError
from gapseal.jsonlimits import MAX_DEPTH, json_problem, load_json, load_model


class _Doc(BaseModel):
    name: str
    size: int


@pytest.mark.parametrize(
    ("data", "why"),
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-array-past-the-parser-limit"),
        pytest.param(b'{"a":' * 500 + b"1" + b"}" * 500, "nested too deeply", id="deep-object-under-the-parser-limit"),
        pytest.param(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested too deeply", id="one-over-the-cap"),
        pytest.param(b'{"a":1,"a":2}', "duplicate key 'a'", id="duplicate-key"),
        pytest.param(b'{"a":NaN}', "non-standard JSON constant NaN", id="nan"),
        pytest.param(b'{"a":Infinity}', "non-standard JSON constant Infinity", id="infinity"),
        pytest.param(b'{"a":"\xff"}', "is not UTF-8", id="not-utf8"),
        pytest.param(b'{"a":', "is not valid JSON", id="truncated"),
        pytest.param(b"", "is not valid JSON", id="empty"),
    ],
)
def test_hostile_json_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(VerificationError) as info:
        load_json(data, "index.json", error=VerificationError, where="bundle")
    assert info.value.message.startswith("index.json ")
    assert why in info.value.message
    assert info.value.where == "bundle"


def test_size_cap_is_checked_before_parsing() -> None:
    _, problem = json_problem(b"[" + b"1," * 1000 + b"1]", max_bytes=100)
    assert problem == "is 2003 bytes, over the 100-byte limit"


def test_nesting_at_the_cap_is_accepted() -> None:
    doc, problem = json_problem(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, max_bytes=10_000)
    assert problem is None
    assert isinstance(doc, list)


def test_load_model_names_the_field() -> None:
    with pytest.raises(VerificationError, match=r"the manifest is malformed: size: Input should be a valid integer"):
        load_model(_Doc, b'{"name":"x","size":"big"}', "the manifest", error=VerificationError)
    assert load_model(_Doc, b'{"name":"x","size":3}', "the manifest", error=VerificationError).size == 3
