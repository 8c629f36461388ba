"""``--limit`` and ``--tags`` checked before Ansible starts: a typo is a usage error naming the valid values."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapseal.errors import UsageError
from gapseal.installer.inventory import Inventory, InventoryError, parse_inventory
from gapseal.installer.selection import check_limit, check_tags, playbook_tags
from gapseal.resources import playbooks_dir

INVENTORY = """
all:
  hosts:
    web1: {}
    web2: {}
  children:
    gpu:
      hosts:
        gpu1: {}
        gpu2: {}
"""


@pytest.fixture
def inventory() -> Inventory:
    return parse_inventory(INVENTORY, Path("inventory.yml"))


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("web1", ["web1"]),
        ("web*", ["web1", "web2"]),
        ("gpu", ["gpu1", "gpu2"]),
        ("all", ["web1", "web2", "gpu1", "gpu2"]),
        ("web1,gpu2", ["web1", "gpu2"]),
        ("all:!gpu", ["web1", "web2"]),
        ("gpu:&*2", ["gpu2"]),
        ("~^gpu[12]$", ["gpu1", "gpu2"]),
    ],
)
def test_limit_patterns_select_like_ansible(inventory: Inventory, pattern: str, hosts: list[str]) -> None:
    assert check_limit(inventory, pattern) == hosts


def test_limit_matching_no_host_is_a_usage_error_naming_hosts_and_groups(inventory: Inventory) -> None:
    with pytest.raises(UsageError, match="matches no host") as e:
        check_limit(inventory, "db*")
    assert e.value.exit_code == 2
    assert "web1, web2, gpu1, gpu2" in (e.value.hint or "")
    assert "gpu" in (e.value.hint or "")


def test_limit_with_a_bad_regex_is_refused(inventory: Inventory) -> None:
    with pytest.raises(InventoryError, match="regular expression"):
        check_limit(inventory, "~[")


def test_site_playbook_tags_are_its_roles() -> None:
    assert playbook_tags(playbooks_dir() / "site.yml") == sorted(
        ["preflight", "hardware", "models", "runtime", "images", "self", "service", "record", "egress"]
    )


def test_unknown_tag_is_a_usage_error_naming_the_valid_ones() -> None:
    with pytest.raises(UsageError, match="unknown tag") as e:
        check_tags(["modls"], ["models", "egress"], "--tags")
    assert e.value.hint == "valid tags: models, egress"
    check_tags(["models", "always"], ["models"], "--tags")
