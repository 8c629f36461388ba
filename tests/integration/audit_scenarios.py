# ruff: noqa: E501 - configuration files are quoted whole, one line each, so a scenario reads like the file it stages
"""Named scenarios for the paths operators leave open (issue 9 section 2), each a staged host root and its verdict.

A scenario writes real configuration files under a host root (exactly where the host would have them) and names the
rule ids the audit must report: an empty set means the host is compliant for that path. The files are the ones the
tools themselves read (sshd_config, environment files, units, apt/pip/npm/conda/podman/docker configuration,
resolv.conf, resolved/networkd/timesyncd/chrony/ntpsec configuration, Quadlet files, Python scripts, mountinfo).

The site data every scenario is judged against is ``SITE`` (the enclave of the default allowlist, plus internal
registries, a resolver, an NTP server and a proxy), read through the real ``gapseal.audit.site`` loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SITE = """\
apiVersion: gapseal/v1
kind: Site
scope:
  organisation: Example Clinic
  system: scenario hosts
  assessor: gapseal tests
allowlist:
  resolvers: [10.205.0.53]
  ntp_servers: [ntp.enclave]
  proxies: ["http://proxy.enclave:3128"]
  registries: ["registry.enclave:5000", npm.enclave]
"""

HARDENED_SSH = (
    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
    "PermitEmptyPasswords no\nPubkeyAuthentication yes\n"
)
CLOSED_SSH = HARDENED_SSH + "DisableForwarding yes\nPermitTunnel no\n"

Stage = Callable[[Path], None]


@dataclass(frozen=True)
class Scenario:
    """A staged host and the rule ids its audit must report (empty: compliant)."""

    name: str
    domain: str
    """The facts domain the scenario exercises: ``ssh``, ``proxy``, ``package_sources``, ``dns``, ``time``,
    ``telemetry``, ``storage``."""
    stage: Stage
    expected: frozenset[str]

    @property
    def leaky(self) -> bool:
        """True when the host leaves a path open (the audit must not call it compliant)."""
        return bool(self.expected)


def write(root: Path, rel: str, text: str, mode: int = 0o644) -> Path:
    """Write ``text`` at ``root/rel``."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


def staged(mapping: dict[str, str]) -> Stage:
    """A stage that writes each ``relative path -> text`` of ``mapping``."""

    def stage(root: Path) -> None:
        for rel, text in mapping.items():
            write(root, rel, text)

    return stage


def _symlink(rel: str, target: str, then: dict[str, str] | None = None) -> Stage:
    def stage(root: Path) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(target)
        for k, v in (then or {}).items():
            write(root, k, v)

    return stage


def _sshd(config: str, **dropins: str) -> Stage:
    mapping = {"etc/ssh/sshd_config": config, "usr/sbin/sshd": ""}
    mapping.update({f"etc/ssh/sshd_config.d/{name}.conf": text for name, text in dropins.items()})
    return staged(mapping)


def _unit(name: str, service: str, extra: dict[str, str] | None = None) -> Stage:
    return staged({f"etc/systemd/system/{name}": f"[Unit]\nDescription={name}\n[Service]\n{service}", **(extra or {})})


S = Scenario
A4, E6, E7, E10, E11, T1 = "ACCESS-004", "EGRESS-006", "EGRESS-007", "EGRESS-010", "EGRESS-011", "TELEMETRY-001"
E12 = "EGRESS-012"
NONE: frozenset[str] = frozenset()


def _r(*ids: str) -> frozenset[str]:
    return frozenset(ids)


SSH = [
    S("ssh_default_config_lets_operators_tunnel", "ssh", _sshd(HARDENED_SSH), _r(A4)),
    S("ssh_disable_forwarding_is_closed", "ssh", _sshd(CLOSED_SSH), NONE),
    S(
        "ssh_every_switch_off_is_closed",
        "ssh",
        _sshd(HARDENED_SSH + "AllowTcpForwarding no\nAllowStreamLocalForwarding no\nPermitTunnel no\n"),
        NONE,
    ),
    S(
        "ssh_local_tcp_forwarding_only",
        "ssh",
        _sshd(HARDENED_SSH + "AllowTcpForwarding local\nAllowStreamLocalForwarding no\n"),
        _r(A4),
    ),
    S("ssh_permit_tunnel_yes", "ssh", _sshd(HARDENED_SSH + "DisableForwarding yes\nPermitTunnel yes\n"), _r(A4)),
    S(
        "ssh_permit_tunnel_point_to_point",
        "ssh",
        _sshd(HARDENED_SSH + "DisableForwarding yes\nPermitTunnel point-to-point\n"),
        _r(A4),
    ),
    S(
        "ssh_gateway_ports_with_remote_forwarding",
        "ssh",
        _sshd(HARDENED_SSH + "AllowTcpForwarding remote\nAllowStreamLocalForwarding no\nGatewayPorts yes\n"),
        _r(A4),
    ),
    S(
        "ssh_permit_open_and_listen_none_is_closed",
        "ssh",
        _sshd(HARDENED_SSH + "PermitOpen none\nPermitListen none\nAllowStreamLocalForwarding no\n"),
        NONE,
    ),
    S(
        "ssh_permit_open_none_leaves_remote_forwards",
        "ssh",
        _sshd(HARDENED_SSH + "PermitOpen none\nAllowStreamLocalForwarding no\n"),
        _r(A4),
    ),
    S(
        "ssh_match_user_reopens_forwarding",
        "ssh",
        _sshd(CLOSED_SSH + "Match User ops\n  DisableForwarding no\n"),
        _r(A4),
    ),
    S(
        "ssh_match_address_allows_tunnel",
        "ssh",
        _sshd(CLOSED_SSH + "Match Address 10.205.9.9\n  PermitTunnel yes\n"),
        _r(A4),
    ),
    S(
        "ssh_match_group_allows_tcp",
        "ssh",
        _sshd(CLOSED_SSH + "Match Group admins\n  DisableForwarding no\n  AllowStreamLocalForwarding no\n"),
        _r(A4),
    ),
    S(
        "ssh_match_all_closes_everything",
        "ssh",
        _sshd(HARDENED_SSH + "PermitTunnel no\nMatch all\n  DisableForwarding yes\n"),
        NONE,
    ),
    S(
        "ssh_dropin_first_value_wins_closed",
        "ssh",
        _sshd(
            "Include /etc/ssh/sshd_config.d/*.conf\n" + HARDENED_SSH + "AllowTcpForwarding yes\n",
            hardening="AllowTcpForwarding no\nAllowStreamLocalForwarding no\n",
        ),
        NONE,
    ),
    S(
        "ssh_dropin_first_value_opens_tunnel",
        "ssh",
        _sshd("Include /etc/ssh/sshd_config.d/*.conf\n" + CLOSED_SSH, tunnel="PermitTunnel yes\n"),
        _r(A4),
    ),
    S(
        "ssh_match_block_in_dropin",
        "ssh",
        _sshd("Include sshd_config.d/*.conf\n" + CLOSED_SSH, ops="Match User ops\n  DisableForwarding no\n"),
        _r(A4),
    ),
    S(
        "ssh_match_cannot_undo_global_disable_forwarding",
        "ssh",
        _sshd("Include sshd_config.d/*.conf\n" + CLOSED_SSH, ops="Match User ops\n  AllowTcpForwarding yes\n"),
        NONE,
    ),
    S("ssh_not_installed", "ssh", staged({"etc/hostname": "h\n"}), NONE),
    S(
        "ssh_installed_config_missing_is_unknown",
        "ssh",
        staged({"usr/sbin/sshd": ""}),
        _r("ACCESS-001", "ACCESS-002", A4),
    ),
]

_PROXY = "http://10.205.0.8:3128"
PROXY = [
    S("proxy_etc_environment", "proxy", staged({"etc/environment": f"LANG=C\nhttps_proxy={_PROXY}\n"}), _r(E6)),
    S("proxy_environment_d", "proxy", staged({"etc/environment.d/60-proxy.conf": f"HTTP_PROXY={_PROXY}\n"}), _r(E6)),
    S("proxy_etc_profile", "proxy", staged({"etc/profile": f"umask 022\nexport http_proxy={_PROXY}\n"}), _r(E6)),
    S(
        "proxy_profile_d",
        "proxy",
        staged({"etc/profile.d/proxy.sh": "export ALL_PROXY=socks5://10.205.0.8:1080\n"}),
        _r(E6),
    ),
    S("proxy_bash_bashrc", "proxy", staged({"etc/bash.bashrc": f"export https_proxy='{_PROXY}'\n"}), _r(E6)),
    S("proxy_root_bashrc", "proxy", staged({"root/.bashrc": f"export HTTPS_PROXY={_PROXY}\n"}), _r(E6)),
    S("proxy_operator_profile", "proxy", staged({"home/op/.profile": f"export ftp_proxy={_PROXY}\n"}), _r(E6)),
    S(
        "proxy_systemd_default_environment",
        "proxy",
        staged({"etc/systemd/system.conf": f"[Manager]\nDefaultEnvironment=https_proxy={_PROXY}\n"}),
        _r(E6),
    ),
    S(
        "proxy_systemd_system_conf_d",
        "proxy",
        staged({"run/systemd/system.conf.d/proxy.conf": f"[Manager]\nDefaultEnvironment=HTTP_PROXY={_PROXY}\n"}),
        _r(E6),
    ),
    S(
        "proxy_unit_environment",
        "proxy",
        _unit("app.service", f"Environment=https_proxy={_PROXY}\nExecStart=/bin/true\n"),
        _r(E6),
    ),
    S(
        "proxy_unit_environment_file",
        "proxy",
        _unit(
            "app.service",
            "EnvironmentFile=-/etc/default/app\nExecStart=/bin/true\n",
            {"etc/default/app": f"http_proxy={_PROXY}\n"},
        ),
        _r(E6),
    ),
    S(
        "proxy_unit_dropin",
        "proxy",
        _unit(
            "app.service",
            "ExecStart=/bin/true\n",
            {"etc/systemd/system/app.service.d/proxy.conf": f"[Service]\nEnvironment=HTTPS_PROXY={_PROXY}\n"},
        ),
        _r(E6),
    ),
    S(
        "proxy_top_level_service_d_dropin",
        "proxy",
        _unit(
            "app.service",
            "ExecStart=/bin/true\n",
            {"etc/systemd/system/service.d/proxy.conf": f"[Service]\nEnvironment=https_proxy={_PROXY}\n"},
        ),
        _r(E6),
    ),
    S(
        "proxy_template_unit_dropin",
        "proxy",
        _unit(
            "worker@.service",
            "ExecStart=/bin/true\n",
            {"etc/systemd/system/worker@.service.d/proxy.conf": f"[Service]\nEnvironment=HTTPS_PROXY={_PROXY}\n"},
        ),
        _r(E6),
    ),
    S(
        "proxy_prefix_unit_dropin",
        "proxy",
        _unit(
            "infer-llm.service",
            "ExecStart=/bin/true\n",
            {"etc/systemd/system/infer-.service.d/proxy.conf": f"[Service]\nEnvironment=http_proxy={_PROXY}\n"},
        ),
        _r(E6),
    ),
    S(
        "proxy_unit_no_proxy_only",
        "proxy",
        _unit("app.service", "Environment=NO_PROXY=localhost\nExecStart=/bin/true\n"),
        NONE,
    ),
    S(
        "proxy_system_conf_without_proxy",
        "proxy",
        staged({"etc/systemd/system.conf": "[Manager]\nDefaultEnvironment=LANG=C.UTF-8 TZ=UTC\n"}),
        NONE,
    ),
    S("proxy_profile_clears_the_variable", "proxy", staged({"etc/profile.d/noproxy.sh": "export http_proxy=\n"}), NONE),
    S(
        "proxy_internal_allowlisted",
        "proxy",
        staged({"etc/environment": "https_proxy=http://proxy.enclave:3128\n"}),
        NONE,
    ),
    S("proxy_no_proxy_only", "proxy", staged({"etc/environment": "no_proxy=localhost,.enclave\n"}), NONE),
    S("proxy_commented_out", "proxy", staged({"etc/profile.d/proxy.sh": f"# export http_proxy={_PROXY}\n"}), NONE),
]

SOURCES = [
    S(
        "apt_debian_mirror",
        "package_sources",
        staged({"etc/apt/sources.list": "deb http://deb.debian.org/debian bookworm main\n"}),
        _r(E10),
    ),
    S(
        "apt_deb822_security",
        "package_sources",
        staged(
            {
                "etc/apt/sources.list.d/debian.sources": "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n"
            }
        ),
        _r(E10),
    ),
    S(
        "apt_deb822_disabled",
        "package_sources",
        staged(
            {
                "etc/apt/sources.list.d/debian.sources": "Enabled: no\nTypes: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n"
            }
        ),
        NONE,
    ),
    S(
        "apt_local_and_enclave_mirror",
        "package_sources",
        staged(
            {"etc/apt/sources.list": "deb file:/srv/debian bookworm main\ndeb http://10.205.0.5/debian bookworm main\n"}
        ),
        NONE,
    ),
    S(
        "apt_proxy_outside",
        "package_sources",
        staged({"etc/apt/apt.conf.d/01proxy": 'Acquire::http::Proxy "http://proxy.example:3128";\n'}),
        _r(E10),
    ),
    S(
        "apt_proxy_unlisted_inside_enclave",
        "package_sources",
        staged({"etc/apt/apt.conf.d/01proxy": 'Acquire::http::Proxy "http://10.205.0.8:3142";\n'}),
        _r(E10),
    ),
    S(
        "apt_proxy_listed_internal",
        "package_sources",
        staged({"etc/apt/apt.conf.d/01proxy": 'Acquire::http::Proxy "http://proxy.enclave:3128";\n'}),
        NONE,
    ),
    S(
        "apt_proxy_direct",
        "package_sources",
        staged(
            {"etc/apt/apt.conf.d/01proxy": 'Acquire::http::Proxy "DIRECT";\nAcquire { https { Proxy "false"; }; };\n'}
        ),
        NONE,
    ),
    S(
        "apt_mirror_list_file",
        "package_sources",
        staged(
            {
                "etc/apt/sources.list": "deb mirror+file:/etc/apt/mirrors.txt bookworm main\n",
                "etc/apt/mirrors.txt": "http://mirror.example/debian\n",
            }
        ),
        _r(E10),
    ),
    S(
        "pip_index_url_pypi",
        "package_sources",
        staged({"etc/pip.conf": "[global]\nindex-url = https://pypi.org/simple\n"}),
        _r(E10),
    ),
    S(
        "pip_enclave_index",
        "package_sources",
        staged(
            {"etc/pip.conf": "[global]\nindex-url = http://registry.enclave:5000/simple\nfind-links = /opt/wheels\n"}
        ),
        NONE,
    ),
    S(
        "pip_proxy_outside",
        "package_sources",
        staged({"root/.config/pip/pip.conf": "[global]\nproxy = http://proxy.example:8080\n"}),
        _r(E10),
    ),
    S(
        "npm_public_registry",
        "package_sources",
        staged({"root/.npmrc": "registry=https://registry.npmjs.org/\n"}),
        _r(E10),
    ),
    S("npm_enclave_registry", "package_sources", staged({"etc/npmrc": "registry=http://npm.enclave/\n"}), NONE),
    S("conda_defaults", "package_sources", staged({"root/.condarc": "channels:\n  - defaults\n"}), _r(E10)),
    S(
        "conda_channel_alias_in_enclave",
        "package_sources",
        staged(
            {
                "etc/conda/.condarc": "channel_alias: http://10.205.0.9/conda\ndefault_channels: [http://10.205.0.9/main]\nchannels: [conda-forge, defaults]\n"
            }
        ),
        NONE,
    ),
    S(
        "podman_unqualified_search_docker_io",
        "package_sources",
        staged({"etc/containers/registries.conf": 'unqualified-search-registries = ["docker.io"]\n'}),
        _r(E10),
    ),
    S(
        "podman_mirror_outside",
        "package_sources",
        staged(
            {
                "etc/containers/registries.conf.d/mirror.conf": '[[registry]]\nlocation = "registry.enclave:5000"\n[[registry.mirror]]\nlocation = "mirror.example"\n'
            }
        ),
        _r(E10),
    ),
    S(
        "podman_enclave_registry_and_blocked_public",
        "package_sources",
        staged(
            {
                "etc/containers/registries.conf": 'unqualified-search-registries = ["registry.enclave:5000"]\n[[registry]]\nlocation = "docker.io"\nblocked = true\n'
            }
        ),
        NONE,
    ),
    S(
        "docker_registry_mirror",
        "package_sources",
        staged({"etc/docker/daemon.json": '{"registry-mirrors": ["https://mirror.gcr.io"]}'}),
        _r(E10),
    ),
    S(
        "docker_proxies",
        "package_sources",
        staged({"etc/docker/daemon.json": '{"proxies": {"https-proxy": "http://proxy.example:3128"}}'}),
        _r(E10),
    ),
    S(
        "docker_daemon_json_unparseable",
        "package_sources",
        staged({"etc/docker/daemon.json": "{registry-mirrors: ["}),
        _r(E10),
    ),
]

NAMES = [
    S("dns_resolv_conf_outside", "dns", staged({"etc/resolv.conf": "nameserver 203.0.113.53\n"}), _r(E7)),
    S(
        "dns_resolved_dns_outside",
        "dns",
        staged({"etc/systemd/resolved.conf": "[Resolve]\nDNS=198.51.100.53\n"}),
        _r(E7),
    ),
    S(
        "dns_resolved_dropin_fallback",
        "dns",
        staged({"etc/systemd/resolved.conf.d/fallback.conf": "[Resolve]\nFallbackDNS=2001:db8::53\n"}),
        _r(E7),
    ),
    S(
        "dns_networkd_dns",
        "dns",
        staged({"etc/systemd/network/10-eth.network": "[Match]\nName=eth0\n[Network]\nDNS=203.0.113.53\n"}),
        _r(E7),
    ),
    S(
        "dns_networkd_dropin_resets_to_internal",
        "dns",
        staged(
            {
                "usr/lib/systemd/network/80-eth.network": "[Match]\nName=eth*\n[Network]\nDNS=203.0.113.53\n",
                "etc/systemd/network/80-eth.network.d/site.conf": "[Network]\nDNS=\nDNS=10.205.0.53\n",
            }
        ),
        NONE,
    ),
    S("dns_per_link_resolved_state", "dns", staged({"run/systemd/resolve/netif/2": "SERVERS=198.51.100.53\n"}), _r(E7)),
    S(
        "dns_resolved_upstream_list",
        "dns",
        staged({"run/systemd/resolve/resolv.conf": "nameserver 203.0.113.54\n"}),
        _r(E7),
    ),
    S(
        "dns_resolved_internal_server",
        "dns",
        staged({"etc/systemd/resolved.conf": "[Resolve]\nDNS=10.205.0.53\nFallbackDNS=\n"}),
        NONE,
    ),
    S("dns_stub_only", "dns", staged({"etc/resolv.conf": "nameserver 127.0.0.53\noptions edns0\n"}), NONE),
    S("dns_internal_resolver", "dns", staged({"etc/resolv.conf": "nameserver 10.205.0.53\n"}), NONE),
    S(
        "time_chrony_debian_pool",
        "time",
        staged({"etc/chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\n"}),
        _r(E11),
    ),
    S(
        "time_chrony_sources_d",
        "time",
        staged(
            {
                "etc/chrony/chrony.conf": "server 10.205.0.123 iburst\nsourcedir /etc/chrony/sources.d\n",
                "etc/chrony/sources.d/extra.sources": "server 198.51.100.123 iburst\n",
            }
        ),
        _r(E11),
    ),
    S(
        "time_chrony_enclave_server",
        "time",
        staged({"etc/chrony/chrony.conf": "server 10.205.0.123 iburst\nrefclock PHC /dev/ptp0\n"}),
        NONE,
    ),
    S(
        "time_timesyncd_compiled_in_pool",
        "time",
        _symlink(
            "etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service",
            "/lib/systemd/system/systemd-timesyncd.service",
            {"etc/systemd/timesyncd.conf": "[Time]\n#NTP=\n"},
        ),
        _r(E11),
    ),
    S(
        "time_timesyncd_internal_and_no_fallback",
        "time",
        staged(
            {
                "lib/systemd/systemd-timesyncd": "",
                "etc/systemd/timesyncd.conf.d/site.conf": "[Time]\nNTP=ntp.enclave\nFallbackNTP=\n",
            }
        ),
        NONE,
    ),
    S(
        "time_networkd_ntp_outside",
        "time",
        staged({"etc/systemd/network/10-eth.network": "[Match]\nName=eth0\n[Network]\nNTP=time.example\n"}),
        _r(E11),
    ),
    S("time_ntpsec_pool", "time", staged({"etc/ntpsec/ntp.conf": "pool 0.debian.pool.ntp.org iburst\n"}), _r(E11)),
    S(
        "time_ntpsec_local_clock",
        "time",
        staged({"etc/ntpsec/ntp.conf": "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\n"}),
        NONE,
    ),
    S("time_allowlisted_name", "time", staged({"etc/chrony/chrony.conf": "server ntp.enclave iburst\n"}), NONE),
]

_VLLM = "docker.io/vllm/vllm-openai:v0.6.3"
TELEMETRY = [
    S(
        "telemetry_vllm_podman_unit_without_switches",
        "telemetry",
        _unit("vllm.service", f"ExecStart=/usr/bin/podman run --rm --name vllm {_VLLM} --model /m\n"),
        _r(T1),
    ),
    S(
        "telemetry_vllm_podman_unit_container_env",
        "telemetry",
        _unit(
            "vllm.service",
            f"ExecStart=/usr/bin/podman run --rm --name vllm -e VLLM_NO_USAGE_STATS=1 -e HF_HUB_OFFLINE=1 {_VLLM}\n",
        ),
        NONE,
    ),
    S(
        "telemetry_unit_env_is_not_the_containers",
        "telemetry",
        _unit(
            "vllm.service",
            f"Environment=VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1\nExecStart=/usr/bin/podman run --rm {_VLLM}\n",
        ),
        _r(T1),
    ),
    S(
        "telemetry_quadlet_tgi_usage_stats_on",
        "telemetry",
        staged(
            {
                "etc/containers/systemd/tgi.container": "[Container]\nImage=ghcr.io/huggingface/text-generation-inference:2.4.0\nEnvironment=HF_HUB_OFFLINE=1\n"
            }
        ),
        _r(T1),
    ),
    S(
        "telemetry_quadlet_ollama_no_cloud",
        "telemetry",
        staged(
            {
                "etc/containers/systemd/ollama.container": "[Container]\nImage=docker.io/ollama/ollama\nEnvironment=OLLAMA_NO_CLOUD=1\n"
            }
        ),
        NONE,
    ),
    S(
        "telemetry_quadlet_open_webui_partial",
        "telemetry",
        staged(
            {
                "etc/containers/systemd/webui.container": "[Container]\nImage=ghcr.io/open-webui/open-webui:main\nEnvironment=SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true\n"
            }
        ),
        _r(T1),
    ),
    S(
        "telemetry_quadlet_llama_cpp_offline_flag",
        "telemetry",
        staged(
            {
                "etc/containers/systemd/llama.container": "[Container]\nImage=ghcr.io/ggml-org/llama.cpp:server\nExec=--offline -m /models/m.gguf\n"
            }
        ),
        NONE,
    ),
    S(
        "telemetry_unit_recognised_by_ollama_env",
        "telemetry",
        _unit("chat.service", "Environment=OLLAMA_HOST=127.0.0.1:11434\nExecStart=/opt/chat/server\n"),
        _r(T1),
    ),
    S(
        "telemetry_python_service_imports_transformers",
        "telemetry",
        _unit(
            "rag.service",
            "ExecStart=/usr/bin/python3 /opt/rag/serve.py\n",
            {"opt/rag/serve.py": "from transformers import pipeline\n"},
        ),
        _r(T1),
    ),
    S(
        "telemetry_python_service_hub_offline",
        "telemetry",
        _unit(
            "rag.service",
            "Environment=HF_HUB_OFFLINE=1\nExecStart=/usr/bin/python3 /opt/rag/serve.py\n",
            {"opt/rag/serve.py": "import huggingface_hub\n"},
        ),
        NONE,
    ),
    S(
        "telemetry_podman_global_options_before_run",
        "telemetry",
        _unit("vllm.service", f"ExecStart=/usr/bin/podman --log-level info --root /var/lib/c run --rm {_VLLM}\n"),
        _r(T1),
    ),
    S(
        "telemetry_docker_run_unit_with_switch",
        "telemetry",
        _unit("ollama.service", "ExecStart=/usr/bin/docker run --rm -e OLLAMA_NO_CLOUD=1 ollama/ollama\n"),
        NONE,
    ),
    S(
        "telemetry_other_container_is_not_inference",
        "telemetry",
        staged({"etc/containers/systemd/db.container": "[Container]\nImage=docker.io/library/postgres:16\n"}),
        NONE,
    ),
]


def _mountinfo(root: Path, *lines: str) -> str:
    """mountinfo with the root file system on the LUKS laptop's encrypted root LV and ``lines`` (``{root}`` filled)."""
    head = "25 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/kilgore--trout--vg-root rw\n"
    return head + "".join(line.format(root=root) + "\n" for line in lines)


def _storage(*lines: str) -> Stage:
    def stage(root: Path) -> None:
        (root / "srv/models/big").mkdir(parents=True, exist_ok=True)
        write(root, "proc/self/mountinfo", _mountinfo(root, *lines))

    return stage


STORAGE = [
    S(
        "storage_shards_below_on_unencrypted_partition",
        "storage",
        _storage("31 25 259:2 / {root}/srv/models/big rw,relatime - ext4 /dev/nvme0n1p2 rw"),
        _r("ENCRYPTION-001"),
    ),
    S(
        "storage_tmpfs_below_model_dir",
        "storage",
        _storage("32 25 0:40 / {root}/srv/models/big rw - tmpfs tmpfs rw"),
        NONE,
    ),
    S(
        "storage_nfs_below_model_dir",
        "storage",
        _storage("33 25 0:52 / {root}/srv/models/big rw - nfs4 files.example:/export rw,vers=4.2,addr=203.0.113.9"),
        _r("RESIDENCY-001", "ENCRYPTION-001"),
    ),
    S(
        "storage_sshfs_below_model_dir",
        "storage",
        _storage("34 25 0:53 / {root}/srv/models/big rw - fuse.sshfs op@files.example:/m rw"),
        _r("RESIDENCY-001", "ENCRYPTION-001"),
    ),
    S("storage_everything_on_encrypted_root", "storage", _storage(), NONE),
    S(
        "storage_encrypted_lv_below_model_dir",
        "storage",
        _storage("35 25 253:1 /models {root}/srv/models/big rw - ext4 /dev/mapper/kilgore--trout--vg-root rw"),
        NONE,
    ),
]

SCENARIOS: list[Scenario] = SSH + PROXY + SOURCES + NAMES + TELEMETRY + STORAGE


# ------------------------------------------------------------------------------------------------ namespace hosts

LEAKY_HOST_RULES = frozenset({A4, E6, E7, E10, E11, E12, T1})
"""What the leaky namespace host must report (EGRESS-012: IPv4 forwarding on with no forward chain behind its output
lockdown; ENCRYPTION-001 for the disk below the model directory is waived: the
model directory itself sits on this machine's unencrypted disk, as on every host of this test machine)."""


def leak_every_class(root: Path, host_netns: str, pids: list[int]) -> None:
    """One leak of every class of section 2 on a staged namespace host (files under ``root``, a process in its netns,
    IPv4 forwarding on in its netns: containers behind it would reach the outside, its output lockdown not seeing them).
    """
    import subprocess

    subprocess.run(["ip", "netns", "exec", host_netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True)
    with (root / "etc/ssh/sshd_config").open("a") as f:
        f.write("Match User ops\n  DisableForwarding no\n")
    write(root, "etc/profile", f"export http_proxy={_PROXY}\n")
    write(root, "etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n")
    write(root, "etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\n")
    write(root, "run/systemd/resolve/netif/2", "SERVERS=203.0.113.53\n")
    write(root, "etc/containers/systemd/vllm.container", f"[Container]\nImage={_VLLM}\n")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host_netns, "sleep", "600"],
        env={"PATH": "/usr/bin:/bin", "https_proxy": _PROXY},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids.append(proc.pid)
