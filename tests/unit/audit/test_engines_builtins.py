"""Builtin parity: every builtin on PORTABLE_BUILTINS answers alike in regopy (rego-cpp) and OPA (Go evaluator),
and the divergences that keep other builtins off the list are real (so the list is not arbitrary)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import regopy
from opa_bindings import OpaEngine, OpaError

from gapseal.audit.engines.builtins import PORTABLE_BUILTINS

# One or more calls per portable builtin, in the ways the policies use them.
CALLS: dict[str, list[str]] = {
    "count": ["count([1, 2])", 'count({"a": 1})', 'count("héllo")', "count(set())"],
    "sum": ["sum([1, 2.5])"],
    "max": ["max([3, 1])"],
    "min": ['min(["b", "a"])'],
    "sort": ['sort(["b", "a", "c"])', "sort({3, 1, 2})"],
    "abs": ["abs(-3)"],
    "floor": ["floor(2.7)"],
    "ceil": ["ceil(2.1)"],
    "round": ["round(2.5)"],
    "concat": ['concat(", ", ["a", "b"])', 'concat("", [])', 'concat("/", sort({"x", "y"}))'],
    "contains": ['contains("abc", "b")'],
    "startswith": ['startswith("0a000001", "0a")'],
    "endswith": ['endswith("a.rego", ".rego")'],
    "lower": ['lower("ABC")'],
    "upper": ['upper("abc")'],
    "split": ['split("a.b.c", ".")', 'split("", ".")'],
    "substring": ['substring("abcdef", 1, 3)'],
    "indexof": ['indexof("abc", "c")', 'indexof("abc", "z")'],
    "replace": ['replace("firewall.nftables", ".", "/")'],
    "trim": ['trim("--a--", "-")'],
    "trim_space": ['trim_space("  a ")'],
    "trim_prefix": ['trim_prefix("sha256:ab", "sha256:")'],
    "trim_suffix": ['trim_suffix("a.rego", ".rego")'],
    "sprintf": [
        'sprintf("%v", [{"a": 1}])',
        'sprintf("%v", [null])',
        'sprintf("%d items", [3])',
        'sprintf("%s", ["x"])',
    ],
    "regex.match": ['regex.match("^[0-9]+$", "123")', 'regex.match("^a", "ba")'],
    "glob.match": ['glob.match("web-*", [], "web-1")', 'glob.match("web-*", ["."], "db-1")'],
    "object.get": [
        'object.get({"a": {"b": 1}}, ["a", "b"], 0)',
        'object.get({"a": null}, "a", 0)',
        'object.get({}, "x", 7)',
    ],
    "object.keys": ['object.keys({"a": 1, "b": 2})'],
    "object.union": ['object.union({"a": 1}, {"b": 2})', 'object.union({"a": 1}, {"a": 2})'],
    "object.remove": ['object.remove({"a": 1, "b": 2}, ["a"])', 'object.remove({"a": 1}, {"a"})'],
    "array.concat": ["array.concat([1], [2, 3])"],
    "array.slice": ["array.slice([1, 2, 3], 1, 2)"],
    "union": ["union({{1}, {2}})"],
    "intersection": ["intersection({{1, 2}, {2, 3}})"],
    "is_string": ['is_string("a")', "is_string(1)"],
    "is_number": ["is_number(1)", 'is_number("1")'],
    "is_boolean": ["is_boolean(false)"],
    "is_array": ["is_array([])"],
    "is_object": ["is_object({})"],
    "is_set": ["is_set(set())"],
    "is_null": ["is_null(null)"],
    "type_name": ['type_name("a")', "type_name({})", "type_name(null)"],
    "numbers.range": ["numbers.range(0, 3)"],
    "json.marshal": ['json.marshal({"b": 1, "a": [1, 2]})'],
    "graph.reachable": ['graph.reachable({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}, {"a"})'],
}

# Builtins kept off the list, each with a call whose answers differ (regopy first, OPA second).
DIVERGENT: dict[str, str] = {
    "format_int": "format_int(5, 2)",  # regopy "01", OPA "101"
    "to_number": 'to_number("0x10")',  # regopy 16, OPA error
    "time.parse_rfc3339_ns": 'time.parse_rfc3339_ns("2026-01-01T00:00:00Z")',  # regopy undefined
}


def regopy_value(interpreter: Any, expression: str) -> Any:
    text = str(interpreter.query(f"x := {expression}"))
    if text in ("undefined", "<error>") or "(error" in text:
        return ("undefined-or-error", text[:40])
    return json.loads(text)["bindings"]["x"]


def opa_value(engine: OpaEngine, expression: str) -> Any:
    try:
        rows = engine.eval_query(f"x := {expression}")
    except OpaError as e:
        return ("undefined-or-error", e.code)
    return rows[0]["x"] if rows else ("undefined-or-error", "undefined")


@pytest.fixture(scope="module")
def engines() -> tuple[Any, OpaEngine]:
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    return interpreter, OpaEngine()


def normalise(value: Any) -> Any:
    """Sets come back as arrays in both; their order is the engine's own, so compare sorted."""
    if isinstance(value, list):
        return sorted((normalise(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_every_portable_builtin_is_exercised() -> None:
    assert set(CALLS) == set(PORTABLE_BUILTINS)


@pytest.mark.parametrize(("builtin", "call"), [(b, c) for b, cs in sorted(CALLS.items()) for c in cs])
def test_portable_builtin_answers_alike(engines: tuple[Any, OpaEngine], builtin: str, call: str) -> None:
    interpreter, opa = engines
    ours, theirs = regopy_value(interpreter, call), opa_value(opa, call)
    assert not isinstance(ours, tuple), (ours, theirs)
    assert not isinstance(theirs, tuple), (ours, theirs)
    if builtin in ("sort", "split", "array.concat", "array.slice", "numbers.range", "concat", "json.marshal"):
        assert ours == theirs  # order matters for arrays and strings
    else:
        assert normalise(ours) == normalise(theirs)


@pytest.mark.parametrize("builtin", sorted(DIVERGENT))
def test_excluded_builtin_really_diverges(engines: tuple[Any, OpaEngine], builtin: str) -> None:
    interpreter, opa = engines
    assert builtin not in PORTABLE_BUILTINS
    assert regopy_value(interpreter, DIVERGENT[builtin]) != opa_value(opa, DIVERGENT[builtin])


def test_nested_object_union_diverges_which_is_why_policies_use_it_flat(engines: tuple[Any, OpaEngine]) -> None:
    interpreter, opa = engines
    call = 'object.union({"a": {"b": 1}}, {"a": {"c": 2}})'
    assert regopy_value(interpreter, call) == {"a": {"c": 2}}
    assert opa_value(opa, call) == {"a": {"b": 1, "c": 2}}


def test_set_iteration_order_differs_which_is_why_policies_sort(engines: tuple[Any, OpaEngine]) -> None:
    interpreter, opa = engines
    call = "[y | some y in {3, 1, 2}]"
    assert regopy_value(interpreter, call) != opa_value(opa, call)
    assert normalise(regopy_value(interpreter, call)) == normalise(opa_value(opa, call))
