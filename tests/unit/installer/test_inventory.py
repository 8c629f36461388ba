from __future__ import annotations

from pathlib import Path

import pytest

from gapseal.installer.inventory import InventoryError, load_inventory, parse_inventory

GOOD = """
all:
  vars:
    gapseal_root: /srv/gapseal
    egress_allow: [10.0.0.0/8]
  children:
    gpu:
      vars:
        egress_allow: [10.1.0.0/16, "2001:db8::/32"]
      hosts:
        a: {ansible_host: 10.231.1.2}
        b:
    cpu:
      hosts:
        c: {gapseal_root: /opt/x, egress_lockdown: false}
"""


def test_hosts_and_merged_vars() -> None:
    inv = parse_inventory(GOOD, Path("inv.yml"))
    assert inv.names() == ["a", "b", "c"]
    assert inv.hosts["a"].address == "10.231.1.2"
    assert inv.hosts["b"].address == "b"
    assert inv.hosts["a"].vars["egress_allow"] == ["10.1.0.0/16", "2001:db8::/32"]  # child group wins
    assert inv.hosts["c"].gapseal_root == "/opt/x"
    assert inv.hosts["c"].egress_lockdown is False
    assert inv.hosts["a"].gapseal_root == "/srv/gapseal"
    assert inv.hosts["a"].egress_lockdown is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("all:\n  host:\n    a:\n", "group 'all' has unknown key(s) host"),
        ("all:\n  hosts:\n    a: {gapseal_root: relative/path}\n", "gapseal_root must be an absolute path"),
        ("all:\n  hosts:\n    a: {egress_lockdown: 'no'}\n", "egress_lockdown must be true or false"),
        ("all:\n  hosts:\n    a: {egress_allow: 10.0.0.0/8}\n", "egress_allow must be a list of CIDRs"),
        (
            "all:\n  hosts:\n    a: {egress_allow: [10.0.0.300/8]}\n",
            "egress_allow: '10.0.0.300/8' is not an IP network",
        ),
        ("all:\n  hosts: {}\n", "the inventory lists no hosts"),
        ("- a\n- b\n", "an inventory is a YAML mapping of groups"),
        ("all: [\n", "not valid YAML"),
        ("all:\n  hosts: [a, b]\n", "hosts must be a mapping of name to vars"),
        ("all:\n  vars: [1]\n  hosts: {a: }\n", "vars must be a mapping"),
    ],
)
def test_bad_inventories_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as e:
        parse_inventory(text, Path("bad.yml"))
    assert message in e.value.message
    assert "bad.yml" in e.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="does not exist"):
        load_inventory(tmp_path / "nope.yml")
