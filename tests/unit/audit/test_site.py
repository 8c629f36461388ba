"""The site data file: its schema, the errors for bad files, the override it yields and its digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gapseal.audit.engines import load_policy_set
from gapseal.audit.site import DEFAULTS_NOTE, load_data_file, load_site, site_record
from gapseal.errors import AuditError

GOOD = """\
apiVersion: gapseal/v1
kind: Site
scope:
  organisation: Example Clinic
  system: radiology-llm
  assessor: J. Doe
allowlist:
  enclave: [10.20.0.0/16]
  default_route_gateways: [10.20.0.1]
  resolvers: [10.20.0.53]
  ntp_servers: [10.20.0.123, ntp.enclave]
  proxies: ["http://***@proxy.enclave:3128"]
  registries: ["registry.enclave:5000"]
  log_hosts: [10.20.0.10]
"""


def _write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_site_file_loads_with_scope_allowlist_and_digest(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    loaded = load_site(path)
    assert loaded.site.scope.organisation == "Example Clinic"
    assert loaded.digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    override = loaded.site.data_override()
    assert override["allowlist"]["enclave"] == ["10.20.0.0/16"]
    assert override["allowlist"]["ntp_servers"] == ["10.20.0.123", "ntp.enclave"]
    record = site_record(loaded)
    assert record.source == "file"
    assert record.sha256 == loaded.digest
    assert record.scope == loaded.site.scope


def test_omitted_allowlist_keys_keep_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.split("allowlist:")[0] + "allowlist:\n  resolvers: [10.20.0.53]\n")
    override = load_site(path).site.data_override()
    assert override == {"allowlist": {"resolvers": ["10.20.0.53"]}}
    data = load_policy_set(data_override=override).data["allowlist"]
    assert data["resolvers"] == ["10.20.0.53"]
    assert "10.0.0.0/8" in data["enclave"]  # the default enclave still applies
    assert data["ntp_servers"] == []


def test_no_site_file_records_the_defaults() -> None:
    record = site_record(None)
    assert record.source == "defaults"
    assert record.sha256 is None
    assert record.note == DEFAULTS_NOTE


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("wrong_kind", GOOD.replace("kind: Site", "kind: Inventory"), "not a site file"),
        ("wrong_api_version", GOOD.replace("gapseal/v1", "gapseal/v2"), "not a site file"),
        ("not_a_mapping", "- 1\n- 2\n", "must hold a mapping"),
        ("not_yaml", "apiVersion: [\n", "not valid YAML"),
        ("missing_scope", GOOD.split("scope:")[0] + "allowlist: {}\n", "scope: Field required"),
        ("empty_assessor", GOOD.replace("J. Doe", "''"), "scope.assessor"),
        ("unknown_key", GOOD + "extra: 1\n", "extra: Extra inputs are not permitted"),
        ("unknown_allowlist_key", GOOD + "  mirrors: [a]\n", "allowlist.mirrors"),
        ("enclave_not_cidr", GOOD.replace("10.20.0.0/16", "10.20.0.0/33"), "allowlist.enclave"),
        ("enclave_host_bits", GOOD.replace("10.20.0.0/16", "10.20.0.1/16"), "allowlist.enclave"),
        ("gateway_not_address", GOOD.replace("[10.20.0.1]", "[router]"), "allowlist.default_route_gateways"),
        ("registry_with_space", GOOD.replace("registry.enclave:5000", "reg istry"), "allowlist.registries"),
    ],
)
def test_bad_site_file_is_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(AuditError, match="site file") as e:
        load_site(_write(tmp_path, text, f"{name}.yaml"))
    assert message in e.value.message


def test_missing_site_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="cannot read the site file"):
        load_site(tmp_path / "absent.yaml")


def test_data_file_accepts_site_and_plain_mapping(tmp_path: Path) -> None:
    site_override, _ = load_data_file(_write(tmp_path, GOOD))
    assert site_override["allowlist"]["resolvers"] == ["10.20.0.53"]
    plain = _write(tmp_path, "allowlist:\n  enclave: [10.9.0.0/16]\n", "plain.yaml")
    override, digest = load_data_file(plain)
    assert override == {"allowlist": {"enclave": ["10.9.0.0/16"]}}
    assert digest == hashlib.sha256(plain.read_bytes()).hexdigest()


def test_audit_run_help_documents_the_site_file_and_the_defaults() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "gapseal", "audit", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    ).stdout
    text = " ".join(out.replace("│", " ").split())
    assert "--site" in text
    assert "kind: Site" in text
    assert "Without it the defaults apply" in text
    assert "no gateway, resolver, NTP server, proxy, registry or log host allowed" in text
