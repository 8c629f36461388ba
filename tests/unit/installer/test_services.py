from __future__ import annotations

from pathlib import Path

import pytest

from gapseal.errors import InstallError
from gapseal.installer.install import load_services

GOOD = """
- name: embed
  build: server
  model: minilm
  args: ["--model", "{model_dir}"]
  bind: 10.0.0.5
  port: 8080
  env: {OMP_NUM_THREADS: "2"}
"""


def test_good_services_file(tmp_path: Path) -> None:
    f = tmp_path / "services.yml"
    f.write_text(GOOD)
    [svc] = load_services(f)
    assert svc["name"] == "embed"
    assert svc["port"] == 8080


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "must be a YAML list of services"),
        ("- {name: x}\n", "services[0]: build is required"),
        ("- {name: x, build: b, port: 70000}\n", "port must be 1-65535, got 70000"),
        ("- {name: x, build: b, bind: example.com}\n", "bind must be an IP address"),
        ("- {name: x, build: b, exec: ../../bin/sh}\n", "exec must be a path inside the build"),
        ("- {name: x, build: b, exec: /bin/sh}\n", "exec must be a path inside the build"),
        ("- {name: x, build: b, user: root}\n", "unknown field(s) user"),
        ("- {name: x, build: b, args: --x}\n", "args must be a list"),
    ],
)
def test_bad_services_are_refused(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "services.yml"
    f.write_text(text)
    with pytest.raises(InstallError) as e:
        load_services(f)
    assert message in e.value.message


SPEC = """apiVersion: gapseal/v1
kind: Bundle
metadata: {name: site, version: 1.0.0}
models:
  - {name: minilm, path: models/minilm}
builds:
  - name: server
    variants:
      - {backend: cpu, arch: amd64, path: builds/cpu}
services:
"""


def test_spec_services_are_checked_against_builds_and_models() -> None:
    from gapseal.bundler.spec import parse_spec

    spec, _ = parse_spec(SPEC + "  - {name: embed, build: server, model: minilm, port: 8080}\n", Path("spec.yaml"))
    assert spec.services[0].exec == "bin/serve"
    assert spec.services[0].bind == "127.0.0.1"


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("{name: embed, build: nope}", "services[0].build: 'nope' is not a build of this spec"),
        ("{name: embed, build: server, model: nope}", "services[0].model: 'nope' is not a model of this spec"),
        ("{name: embed, build: server, exec: ../x}", "must be a path inside the build"),
        ("{name: embed, build: server, bind: localhost}", "'localhost' is not an IP address"),
        ("{name: embed, build: server, port: 0}", "greater than or equal to 1"),
    ],
)
def test_bad_spec_services_are_refused(service: str, message: str) -> None:
    from gapseal.bundler.spec import parse_spec
    from gapseal.errors import SpecError

    with pytest.raises(SpecError) as e:
        parse_spec(SPEC + f"  - {service}\n", Path("spec.yaml"))
    assert message in e.value.message
