"""site.yml checks every role's arguments once per host, in its first task, instead of one hidden task per role."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleActionFail  # type: ignore[import-untyped]

from gapseal.resources import playbooks_dir

SITE = playbooks_dir() / "site.yml"


def _action_plugin() -> ModuleType:
    path = playbooks_dir() / "action_plugins" / "gapseal_role_arguments.py"
    spec = importlib.util.spec_from_file_location("_gapseal_role_arguments", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tasks() -> list[dict[str, Any]]:
    (play,) = yaml.safe_load(SITE.read_text())
    assert "roles" not in play, "roles: would bring back one argument check per role and host"
    tasks: list[dict[str, Any]] = play["tasks"]
    return tasks


def test_the_first_task_checks_every_role_the_play_imports_and_always_runs() -> None:
    first, *imports = _tasks()
    assert first["tags"] == ["always"]
    checked = first["gapseal_role_arguments"]["roles"]
    imported = [t["ansible.builtin.import_role"]["name"] for t in imports]
    assert len(imports) == len(_tasks()) - 1
    assert checked == imported
    assert sorted(checked) == sorted(p.name for p in (playbooks_dir() / "roles").iterdir() if p.is_dir())


def test_every_role_is_imported_without_ansibles_own_per_role_check() -> None:
    for task in _tasks()[1:]:
        assert task["ansible.builtin.import_role"]["rolespec_validate"] is False, task["name"]


def test_every_role_has_a_spec_the_action_plugin_reads() -> None:
    plugin = _action_plugin()
    roles_dir = str(playbooks_dir() / "roles")
    for name in _tasks()[0]["gapseal_role_arguments"]["roles"]:
        options = plugin.role_options(roles_dir, name)
        assert options, name
        assert all(key.startswith(name + "_") for key in options), name


def test_a_role_that_does_not_exist_is_named(tmp_path: Path) -> None:
    plugin = _action_plugin()
    with pytest.raises(AnsibleActionFail, match="role 'modles' not found"):
        plugin.role_options(str(tmp_path), "modles")
    (tmp_path / "bare").mkdir()
    assert plugin.role_options(str(tmp_path), "bare") == {}
    (tmp_path / "broken" / "meta").mkdir(parents=True)
    (tmp_path / "broken" / "meta" / "argument_specs.yml").write_text("argument_specs:\n  main: {}\n")
    with pytest.raises(AnsibleActionFail, match=r"no argument_specs\.main\.options mapping"):
        plugin.role_options(str(tmp_path), "broken")
