"""The facts schema: round trip, load-time checks (kind, version, unknown fields), the published JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # via ansible-lint (test extra)
import pytest

from gapseal.audit.collect import collect_facts
from gapseal.audit.facts import FACTS_KIND, FACTS_SCHEMA_VERSION, HostFacts, load_facts
from gapseal.audit.schemas import facts_schema
from gapseal.errors import AuditError
from gapseal.schemas import path as published_schema

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> HostFacts:
    """Facts of this machine over an empty root (no install record: integrity unknown)."""
    root = tmp_path_factory.mktemp("root")
    return collect_facts(root=root, now=NOW)


def _doc(facts: HostFacts) -> dict[str, Any]:
    return json.loads(facts.to_json())  # type: ignore[no-any-return]


def test_round_trip_is_identical(facts: HostFacts) -> None:
    text = facts.to_json()
    again = load_facts(text)
    assert again == facts
    assert again.to_json() == text


def test_document_carries_kind_and_version(facts: HostFacts) -> None:
    doc = _doc(facts)
    assert doc["kind"] == FACTS_KIND == "gapseal.audit.facts"
    assert doc["schema_version"] == FACTS_SCHEMA_VERSION == 1
    assert doc["collected_at"] == "2026-11-23T12:00:00Z"


def test_every_domain_has_status_reason_and_sources(facts: HostFacts) -> None:
    doc = _doc(facts)
    for name in ("routes", "firewall", "dns", "processes", "proxy", "sockets", "probes", "telemetry", "storage"):
        assert doc[name]["status"] in {"ok", "unknown"}, name
        assert "reason" in doc[name], name
        assert "sources" in doc[name], name
    for name in ("integrity", "ssh", "logging"):
        assert doc[name]["status"] in {"ok", "unknown"}, name


def test_every_stored_source_has_its_raw_output(facts: HostFacts) -> None:
    doc = _doc(facts)
    stored = [
        s for name in HostFacts.model_fields if isinstance(doc.get(name), dict) for s in doc[name].get("sources", [])
    ]
    assert stored, "no sources recorded"
    for s in stored:
        if s["stored"]:
            assert f"sha256:{s['sha256']}" in doc["raw_outputs"], s
        if s["kind"] == "command":
            assert s["argv"], s
        else:
            assert s["path"], s


def test_missing_install_record_is_unknown_not_ok(facts: HostFacts) -> None:
    assert facts.integrity.status == "unknown"
    assert facts.integrity.reason is not None
    assert "no readable install record" in facts.integrity.reason
    assert "integrity" in facts.unknown_domains()


def test_collected_document_validates_against_published_schema(facts: HostFacts) -> None:
    schema = json.loads(published_schema("facts.v1.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(_doc(facts))


def test_schema_describes_every_field() -> None:
    """Every property of every model in the published schema carries a description (a docstring per field)."""
    schema = facts_schema()
    missing = [
        f"{name}.{prop}"
        for name, definition in [*schema["$defs"].items(), ("HostFacts", schema)]
        for prop, spec in definition.get("properties", {}).items()
        if "description" not in spec
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.update(kind="gapseal.audit.results"),
            "not a gapseal facts document: kind is 'gapseal.audit.results'",
        ),
        (lambda d: d.update(schema_version=2), "unsupported facts schema_version 2"),
        (lambda d: d.pop("schema_version"), "unsupported facts schema_version None"),
        (lambda d: d["routes"].update(extra_field=1), "routes.extra_field"),
        (lambda d: d["routes"].update(status="passing"), "routes.status"),
        (lambda d: d.pop("firewall"), "firewall"),
        (lambda d: d["sockets"].update(listening=[{"protocol": "sctp"}]), "sockets.listening.0"),
    ],
    ids=["wrong-kind", "future-version", "no-version", "unknown-field", "bad-status", "missing-domain", "bad-socket"],
)
def test_load_rejects_tampered_documents(facts: HostFacts, mutate: Any, message: str) -> None:
    doc = _doc(facts)
    mutate(doc)
    with pytest.raises(AuditError) as e:
        load_facts(json.dumps(doc), where="facts.json")
    assert message in e.value.message
    assert e.value.where == "facts.json"


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"{not json", "facts are not valid JSON"), (b"[1, 2]", "facts must be a JSON object"), (b"\xff\xfe", "JSON")],
    ids=["truncated", "array", "binary"],
)
def test_load_rejects_non_documents(data: bytes, message: str) -> None:
    with pytest.raises(AuditError) as e:
        load_facts(data)
    assert message in e.value.message


def test_models_are_frozen(facts: HostFacts) -> None:
    with pytest.raises(Exception, match="frozen"):
        facts.routes.status = "ok"  # type: ignore[misc]


def test_schema_file_is_shipped_inside_the_package() -> None:
    import gapseal

    assert published_schema("facts.v1.schema.json").is_relative_to(Path(gapseal.__file__).parent)


def test_a_failing_collector_yields_unknown_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocked failure (a collector bug cannot be staged for real): the domain is unknown and names the error."""
    import gapseal.audit.collect as collect_module

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("nft segfaulted")

    monkeypatch.setattr(collect_module, "collect_firewall", boom)
    facts = collect_facts(root=tmp_path, now=NOW)
    assert facts.firewall.status == "unknown"
    assert facts.firewall.reason == "collector failed: RuntimeError: nft segfaulted"
    assert facts.firewall.nftables.status == "unknown"
    assert facts.firewall.iptables.status == "unknown"
    assert "firewall" in facts.unknown_domains()
    assert facts.routes.status == "ok"  # the other domains are still collected


def test_cli_active_probe_to_a_loopback_listener(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from gapseal.cli import main

    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        assert main(["audit", "collect", "--root", str(tmp_path), "--json", "--probe", f"127.0.0.1:{port}"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (active,) = [p for p in doc["probes"]["probes"] if p["active"]]
    assert (active["kind"], active["target"], active["outcome"]) == ("tcp_connect", f"127.0.0.1:{port}", "connected")
    assert doc["probes"]["active_targets"] == [f"127.0.0.1:{port}"]


def test_unreadable_units_make_proxy_and_telemetry_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocked failure of the unit loader: the facts that rest on unit files cannot be all-clear."""
    import gapseal.audit.collect as collect_module

    def boom(_root: Path) -> None:
        raise PermissionError("/etc/systemd/system: Permission denied")

    monkeypatch.setattr(collect_module, "load_units", boom)
    facts = collect_facts(root=tmp_path, now=NOW)
    reason = "systemd units could not be read: PermissionError: /etc/systemd/system: Permission denied"
    assert (facts.proxy.status, facts.proxy.reason) == ("unknown", reason)
    assert (facts.telemetry.status, facts.telemetry.reason) == ("unknown", reason)
