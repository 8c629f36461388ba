"""The roles' Jinja filters (playbooks/filter_plugins/gapseal.py), called as Ansible calls them."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped]

from gapseal.resources import playbooks_dir


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gapseal_filters", playbooks_dir() / "filter_plugins" / "gapseal.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


F: dict[str, Any] = _load().FilterModule().filters()
FILE = {"path": "bin/serve", "digest": "sha256:" + "0" * 64, "size": 10, "src": "/b"}
BUILDS = [
    {
        "name": "srv",
        "variants": [
            {"backend": "cuda", "arch": "amd64", "files": [FILE, {**FILE, "path": "lib/big", "size": 1000}]},
            {"backend": "cpu", "arch": "amd64", "files": [FILE]},
        ],
    }
]


def test_path_joins_under_a_root() -> None:
    assert F["gapseal_path"]("/", "var/lib/gapseal") == "/var/lib/gapseal"
    assert F["gapseal_path"]("/srv/x/", "/opt/gapseal", "b") == "/srv/x/opt/gapseal/b"
    with pytest.raises(AnsibleFilterError, match="must be an absolute path"):
        F["gapseal_path"]("relative", "x")


def test_selected_variant_follows_the_hardware_fact() -> None:
    fact = {"srv": {"selected": 1, "chosen": {"index": 1, "backend": "cpu", "arch": "amd64"}}}
    [chosen] = F["gapseal_selected_variants"](BUILDS, fact, "/opt/gapseal/builds")
    assert chosen["backend"] == "cpu"
    assert chosen["dir"] == "/opt/gapseal/builds/srv/cpu"
    with pytest.raises(AnsibleFilterError, match="no variant chosen for build 'srv'"):
        F["gapseal_selected_variants"](BUILDS, {"srv": {"chosen": None}}, "/o")


def test_preflight_counts_models_and_the_largest_variant() -> None:
    models = [{"name": "m", "files": [{**FILE, "path": "w.bin", "size": 5}]}]
    files = F["gapseal_preflight_files"](models, BUILDS, "/r")
    assert files == [
        {"path": "var/lib/gapseal/models/m/w.bin", "size": 5},
        {"path": "opt/gapseal/builds/srv/cuda/bin/serve", "size": 10},
        {"path": "opt/gapseal/builds/srv/cuda/lib/big", "size": 1000},
    ]
    assert F["gapseal_arches"](BUILDS) == ["amd64"]


def test_cidrs_split_by_family_and_refuse_garbage() -> None:
    allow = ["10.0.0.1", "2001:db8::/32", "192.168.1.7/24"]
    assert F["gapseal_cidrs"](allow, 4) == ["10.0.0.1/32", "192.168.1.0/24"]
    assert F["gapseal_cidrs"](allow, 6) == ["2001:db8::/32"]
    with pytest.raises(AnsibleFilterError, match="'example.com' is not an IP network"):
        F["gapseal_cidrs"](["example.com"], 4)
    with pytest.raises(AnsibleFilterError, match="must be a list of CIDRs"):
        F["gapseal_cidrs"]("10.0.0.0/8", 4)


def test_service_units_force_the_offline_environment() -> None:
    selected = [{"name": "srv", "backend": "cpu", "arch": "amd64", "dir": "/o/srv/cpu", "files": []}]
    services = [
        {
            "name": "api",
            "build": "srv",
            "model": "m",
            "args": ["--model", "{model_dir}", "--host", "{bind}", "--port", "{port}"],
            "bind": "10.0.0.5",
            "port": 8080,
            "env": {"HF_HUB_OFFLINE": "0", "EXTRA": "x y"},
        }
    ]
    [unit] = F["gapseal_service_units"](services, selected, "/m", {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}, "/u")
    assert unit["exec_start"] == "/o/srv/cpu/bin/serve --model /m/m --host 10.0.0.5 --port 8080"
    assert unit["environment"]["HF_HUB_OFFLINE"] == "1"  # a service cannot turn the offline switch off
    assert unit["environment"]["EXTRA"] == "x y"
    assert unit["unit"] == "/u/gapseal-api.service"
    with pytest.raises(AnsibleFilterError, match="names build 'nope', which is not in the bundle"):
        F["gapseal_service_units"]([{**services[0], "build": "nope"}], selected, "/m", {}, "/u")
    # unit-file syntax: '%' specifiers and '$' variables stay literal; a newline or quote never reaches the file
    odd = {**services[0], "args": ["--ratio", "100%", "--home", "$HOME"], "env": {"FMT": "50%"}}
    [escaped] = F["gapseal_service_units"]([odd], selected, "/m", {}, "/u")
    assert escaped["exec_start"] == "/o/srv/cpu/bin/serve --ratio 100%% --home '$$HOME'"
    assert escaped["environment"]["FMT"] == "50%%"
    for bad in ({"args": ["x\nExecStartPre=/bin/sh"]}, {"env": {"A": 'x" "B=1'}}, {"env": {"A": "1\n[Service]"}}):
        with pytest.raises(AnsibleFilterError, match="cannot be written into a unit file safely"):
            F["gapseal_service_units"]([{**services[0], **bad}], selected, "/m", {}, "/u")
    states = F["gapseal_service_states"]([unit], False, "systemd is not running on this host")
    assert states == [
        {"name": "api", "unit": "/u/gapseal-api.service", "state": "not started: systemd is not running on this host"}
    ]
