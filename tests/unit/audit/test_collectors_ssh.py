"""sshd forwarding: the parser applies Match blocks as sshd does, checked against the real ``sshd -T -C``.

Each configuration below is parsed by the collector (no sshd involved) and also given to this machine's real sshd
(``sshd -T -f CONFIG -C SPEC``, OpenSSH 9.2 on Debian 12); the forwarding verdicts must agree in every context.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gapseal.audit.collectors._common import RawStore, Trace
from gapseal.audit.collectors.ssh import (
    collect_ssh,
    connection_spec,
    forwarding,
    parse_sshd_config_blocks,
    parse_sshd_t,
)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

CONFIGS = {
    "debian_default": "",
    "hardened": "DisableForwarding yes\nPermitTunnel no\n",
    "each_switch_off": "AllowTcpForwarding no\nAllowStreamLocalForwarding no\nPermitTunnel no\nGatewayPorts no\n",
    "permitopen_and_listen_none": "PermitOpen none\nPermitListen none\nAllowStreamLocalForwarding no\n",
    "permitopen_none_only": "PermitOpen none\nAllowStreamLocalForwarding no\n",
    "tunnel_yes": "DisableForwarding yes\nPermitTunnel yes\n",
    "tunnel_point_to_point": "DisableForwarding yes\nPermitTunnel point-to-point\n",
    "gatewayports_clientspecified": "AllowStreamLocalForwarding no\nGatewayPorts clientspecified\n",
    "local_only": "AllowTcpForwarding local\nAllowStreamLocalForwarding no\n",
    "match_user_reopens": "DisableForwarding yes\nMatch User alice\n  DisableForwarding no\n",
    "match_user_tcp_yes": (
        "AllowTcpForwarding no\nAllowStreamLocalForwarding no\nMatch User bob\n  AllowTcpForwarding yes\n"
    ),
    "match_address_tunnel": "DisableForwarding yes\nMatch Address 10.9.9.9\n  PermitTunnel yes\n",
    "match_all_closes": "Match all\n  DisableForwarding yes\n",
    "first_match_wins": (
        "DisableForwarding yes\nMatch User carol\n  AllowTcpForwarding no\nMatch User carol\n"
        "  AllowTcpForwarding yes\n  DisableForwarding no\n"
    ),
    "match_then_all": (
        "AllowStreamLocalForwarding no\nMatch User dave\n  AllowTcpForwarding yes\nMatch all\n  AllowTcpForwarding no\n"
    ),
    "keyword_equals_form": (
        "AllowTcpForwarding=no\nallowstreamlocalforwarding=no\nMatch User erin\n  PermitTunnel=yes\n"
    ),
    "first_global_value_wins": "AllowTcpForwarding no\nAllowTcpForwarding yes\nAllowStreamLocalForwarding no\n",
    "match_localport": "DisableForwarding yes\nMatch LocalPort 2222\n  DisableForwarding no\n",
}

# A connection none of the Match blocks above names (sshd -T refuses Match LocalPort/Address without -C).
NO_BLOCK = "user=nobody,host=none.invalid,addr=192.0.2.1,laddr=192.0.2.2,lport=1"
VERDICTS = ("tcp_forwarding", "streamlocal_forwarding", "tunnel", "gateway_ports")


@pytest.fixture(scope="module")
def host_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostkey")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "hk")], check=True)
    return d / "hk"


def _write_config(tmp_path: Path, body: str, key: Path) -> Path:
    path = tmp_path / "sshd_config"
    path.write_text(f"HostKey {key}\n{body}")
    return path


def _sshd_t(config: Path, spec: str | None) -> dict[str, str]:
    argv = [SSHD, "-T", "-f", str(config)] + (["-C", spec] if spec else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return parse_sshd_t(out.stdout)[0]


@pytest.mark.skipif(not Path(SSHD).exists(), reason="openssh-server is not installed")
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parsed_forwarding_agrees_with_real_sshd(tmp_path: Path, host_key: Path, name: str) -> None:
    config = _write_config(tmp_path, CONFIGS[name], host_key)
    parsed = parse_sshd_config_blocks(Path("/"), config, Trace(RawStore()))
    contexts = [("global", NO_BLOCK, parsed.default_settings())]
    for i, block in enumerate(parsed.blocks):
        spec = "user=nobody" if block.matches_all else connection_spec(block.criteria)
        assert spec is not None, block.criteria
        contexts.append((block.criteria, spec, parsed.context_settings(i)))
    for label, spec, settings in contexts:
        mine = forwarding(label, "sshd_config", settings)
        real = forwarding(label, "sshd -T", _sshd_t(config, spec))
        assert {v: getattr(mine, v) for v in VERDICTS} == {v: getattr(real, v) for v in VERDICTS}, (name, label)


def test_default_sshd_lets_an_operator_tunnel(tmp_path: Path) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/sshd_config").write_text("PasswordAuthentication no\n")
    f = collect_ssh(RawStore(), tmp_path)
    (ctx,) = f.forwarding
    assert (ctx.context, ctx.method) == ("global", "sshd_config")
    assert ctx.tcp_forwarding is True
    assert ctx.streamlocal_forwarding is True
    assert ctx.tunnel is False
    assert ctx.settings["allowtcpforwarding"] == "yes"


def test_match_block_in_an_included_file_ends_with_that_file(tmp_path: Path) -> None:
    (tmp_path / "etc/ssh/sshd_config.d").mkdir(parents=True)
    (tmp_path / "etc/ssh/sshd_config").write_text(
        "Include sshd_config.d/*.conf\nDisableForwarding yes\nPermitTunnel no\n"
    )
    (tmp_path / "etc/ssh/sshd_config.d/50-ops.conf").write_text("Match User ops\n  PermitTunnel yes\n")
    f = collect_ssh(RawStore(), tmp_path)
    assert [c.context for c in f.forwarding] == ["global", "Match User ops"]
    glob, ops = f.forwarding
    assert glob.settings["disableforwarding"] == "yes"  # after the Include: global again
    assert glob.tunnel is False
    assert ops.tunnel is True
    assert str(tmp_path / "etc/ssh/sshd_config.d/50-ops.conf") in [s.path for s in f.sources]


def test_match_group_cannot_use_sshd_t_c_and_is_parsed() -> None:
    assert connection_spec("Group wheel") is None
    assert connection_spec("User a*") is None
    assert connection_spec("User !root") is None
    assert connection_spec("User alice Address 10.0.0.1") == "user=alice,addr=10.0.0.1"


@pytest.mark.skipif(not Path(SSHD).exists(), reason="openssh-server is not installed")
def test_live_root_uses_sshd_t_with_c_per_match_block(tmp_path: Path, host_key: Path) -> None:
    """The real root path: ``sshd -T -f CONFIG`` globally, ``-C`` for a User block, parsing for a Group block."""
    config = _write_config(
        tmp_path,
        "DisableForwarding yes\nMatch User alice\n  DisableForwarding no\nMatch Group wheel\n  PermitTunnel yes\n",
        host_key,
    )
    f = collect_ssh(RawStore(), Path("/"), config=config)
    assert f.method == "sshd -T"
    assert [(c.context, c.method) for c in f.forwarding] == [
        ("global", "sshd -T"),
        ("Match User alice", "sshd -T -C"),
        ("Match Group wheel", "sshd_config"),
    ]
    assert [c.tcp_forwarding for c in f.forwarding] == [False, True, False]
    assert [c.tunnel for c in f.forwarding] == [False, False, True]
    argvs = [s.argv for s in f.sources if s.kind == "command"]
    assert [SSHD.rsplit("/", 1)[-1], "-T", "-f", str(config), "-C", "user=alice"] in argvs
