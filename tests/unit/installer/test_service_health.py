"""Service health checks, fallback candidates and the kept previous version, without hosts.

The filters (playbooks/filter_plugins/gapseal.py) and the ``gapseal_build_history`` module's functions are called
directly; ``gapseal_service_check``'s crash rules are checked on recorded ``systemctl show`` values. The real
thing on a systemd host: tests/integration/test_systemd_service.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gapseal.bundler.spec import HealthCheck, ServiceSpec
from gapseal.resources import playbooks_dir


def _load(rel: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, playbooks_dir() / rel)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FILTERS: dict[str, Any] = _load("filter_plugins/gapseal.py", "gapseal_filters_h").FilterModule().filters()
HISTORY = _load("library/gapseal_build_history.py", "gapseal_build_history")
CHECK = _load("library/gapseal_service_check.py", "gapseal_service_check")

FILE = {"path": "bin/serve", "digest": "sha256:" + "0" * 64, "size": 1, "src": "/b"}
BUILDS = [
    {
        "name": "llm",
        "variants": [
            {"backend": "cuda", "arch": "amd64", "files": [FILE]},
            {"backend": "vulkan", "arch": "amd64", "files": [FILE]},
            {"backend": "cpu", "arch": "amd64", "files": [FILE]},
        ],
    }
]


def _fact(satisfied: list[bool], chosen: int) -> dict[str, Any]:
    variants = [{"index": i, "satisfied": ok} for i, ok in enumerate(satisfied)]
    backend = BUILDS[0]["variants"][chosen]["backend"]  # type: ignore[index]
    return {"llm": {"variants": variants, "chosen": {"index": chosen, "backend": backend, "arch": "amd64"}}}


def test_health_durations_and_one_probe() -> None:
    assert HealthCheck.model_validate({"http": "/health", "timeout": "3m"}).timeout == 180
    assert HealthCheck.model_validate({"command": ["true"], "timeout": 20}).timeout == 20
    with pytest.raises(ValueError, match="exactly one of http"):
        HealthCheck.model_validate({"http": "/h", "command": ["true"]})
    with pytest.raises(ValueError, match="not a duration"):
        HealthCheck.model_validate({"http": "/h", "timeout": "soon"})
    with pytest.raises(ValueError, match="needs an http health check"):
        HealthCheck.model_validate({"command": ["true"], "request": {"path": "/v1/completions"}})
    with pytest.raises(ValueError, match="needs a port"):
        ServiceSpec.model_validate({"name": "s", "build": "b", "health": {"http": "/health"}})


def test_units_bind_to_the_inventory_address_with_health_urls_and_enclave() -> None:
    selected = FILTERS["gapseal_selected_variants"](BUILDS, _fact([False, False, True], 2), "/opt/b")
    svc = {
        "name": "chat",
        "build": "llm",
        "port": 8080,
        "bind": "127.0.0.1",
        "health": {"http": "/health", "timeout": 30, "request": {"path": "/v1/completions", "body": {"n": 1}}},
        "fallback": True,
    }
    [unit] = FILTERS["gapseal_service_units"](
        [svc], selected, "/m", {"LLAMA_OFFLINE": "1"}, "/etc/systemd/system", "10.9.0.2", ["10.9.0.0/24"]
    )
    assert unit["bind"] == "10.9.0.2"
    assert unit["health"]["url"] == "http://10.9.0.2:8080/health"
    assert unit["health"]["request_url"] == "http://10.9.0.2:8080/v1/completions"
    assert unit["health"]["request_body"] == {"n": 1}
    assert unit["ip_allow"] == ["10.9.0.0/24"]
    assert unit["fallback"] is True
    assert unit["environment"]["LLAMA_OFFLINE"] == "1"


def test_a_wildcard_bind_is_probed_on_loopback() -> None:
    selected = FILTERS["gapseal_selected_variants"](BUILDS, _fact([False, False, True], 2), "/opt/b")
    svc = {"name": "s", "build": "llm", "port": 9, "bind": "0.0.0.0", "health": {"http": "/h", "timeout": 1}}  # noqa: S104
    [unit] = FILTERS["gapseal_service_units"]([svc], selected, "/m", {}, "/u")
    assert unit["health"]["url"] == "http://127.0.0.1:9/h"


def test_fallback_candidates_are_the_fitting_variants_after_the_chosen_one_in_order() -> None:
    out = FILTERS["gapseal_fallback_variants"](_fact([True, False, True], 0), "llm", BUILDS, "/opt/b")
    assert [(v["backend"], v["dir"]) for v in out] == [("cpu", "/opt/b/llm/cpu")]
    assert FILTERS["gapseal_fallback_variants"](_fact([False, False, True], 2), "llm", BUILDS, "/opt/b") == []
    assert FILTERS["gapseal_fallback_variants"]({}, "llm", BUILDS, "/opt/b") == []


@pytest.mark.parametrize(
    ("show", "before", "crashed"),
    [
        ({"ActiveState": "active", "NRestarts": "0", "ExecMainCode": "0", "MainPID": "12"}, 0, False),
        ({"ActiveState": "active", "NRestarts": "1", "ExecMainCode": "0", "MainPID": "12"}, 1, False),
        ({"ActiveState": "activating", "NRestarts": "2", "ExecMainCode": "2", "MainPID": "0"}, 1, True),
        ({"ActiveState": "activating", "NRestarts": "0", "ExecMainCode": "2", "MainPID": "0"}, 0, True),
        ({"ActiveState": "failed", "NRestarts": "0", "ExecMainCode": "1", "MainPID": "0"}, 0, True),
    ],
)
def test_crash_rules(show: dict[str, str], before: int, crashed: bool) -> None:
    """A restart since the check began, a failed unit, or a killed main process with none running is a crash."""
    assert CHECK._crashed(show, before) is crashed


def test_exit_names_the_signal() -> None:
    ex = CHECK._exit({"ActiveState": "failed", "Result": "signal", "ExecMainCode": "2", "ExecMainStatus": "4"})
    assert ex == {"active": "failed", "result": "signal", "code": "killed", "status": "SIGILL", "restarts": 0}


def test_keep_once_per_version_then_restore(tmp_path: Path) -> None:
    """The running version is copied aside once when another bundle arrives, and put back (build, venv, unit)."""
    root = tmp_path / "builds/llm"
    unit = tmp_path / "gapseal-chat.service"
    (root / "cpu/bin").mkdir(parents=True)
    (root / "cpu/bin/serve").write_text("v1")
    (root / "cpu.venv").mkdir()
    (root / "cpu.venv/pyvenv.cfg").write_text("home = /usr/bin\n")
    unit.write_text("ExecStart=v1\n")
    v1 = {"name": "b", "version": "1", "manifest_digest": "sha256:1"}
    v2 = {**v1, "version": "2", "manifest_digest": "sha256:2"}
    (root / "current.json").write_text(json.dumps({"bundle": v1, "backend": "cpu", "units": [str(unit)]}))

    assert HISTORY.keep(root, v1) is False  # the same bundle again: nothing to keep
    assert HISTORY.keep(root, v2) is True
    assert HISTORY.keep(root, v2) is False  # a rerun or a fallback attempt keeps the first copy
    (root / "cpu/bin/serve").write_text("v2")
    unit.write_text("ExecStart=v2\n")
    (root / "cpu.venv/pyvenv.cfg").unlink()

    meta = HISTORY.restore(root)
    assert meta is not None
    assert meta["bundle"] == v1
    assert (root / "cpu/bin/serve").read_text() == "v1"
    assert (root / "cpu.venv/pyvenv.cfg").read_text() == "home = /usr/bin\n"
    assert unit.read_text() == "ExecStart=v1\n"
    assert json.loads((root / "current.json").read_text())["bundle"] == v1


def test_restore_without_a_previous_version_says_so(tmp_path: Path) -> None:
    assert HISTORY.restore(tmp_path) is None
