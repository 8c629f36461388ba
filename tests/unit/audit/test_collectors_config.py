"""File-based collectors against crafted temp roots: DNS, proxies, systemd units, telemetry in units, sshd, logging.

Each collector also runs on an empty root, where it must report absence or ``unknown`` — never an all-clear that
rests on files it could not read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors._units import load_units
from gapseal.audit.collectors.dns import collect_dns
from gapseal.audit.collectors.logs import collect_logging, parse_timespan
from gapseal.audit.collectors.proxy import collect_proxy, mask_credentials
from gapseal.audit.collectors.ssh import collect_ssh
from gapseal.audit.collectors.telemetry import collect_telemetry, recognise
from gapseal.audit.facts import ProcessesFacts, ProcessInfo


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


NO_PROCESSES = ProcessesFacts(status="ok", netns="net:[1]")


# ------------------------------------------------------------------------------------------------ DNS


def test_dns_reads_resolv_conf_nsswitch_and_resolved(tmp_path: Path) -> None:
    write(tmp_path, "etc/resolv.conf", "# generated\nnameserver 10.231.0.53\nnameserver 8.8.8.8 ; google\n"
          "search enclave.internal\noptions edns0 trust-ad\nnameserver not-an-ip\n")  # fmt: skip
    write(tmp_path, "etc/nsswitch.conf", "passwd: files\nhosts:  files mdns4_minimal [NOTFOUND=return] dns\n")
    write(tmp_path, "etc/systemd/resolved.conf", "[Resolve]\nDNS=10.231.0.54#dns.enclave\nFallbackDNS=1.1.1.1\n")
    write(tmp_path, "etc/systemd/resolved.conf.d/override.conf", "[Resolve]\nFallbackDNS=\nDNSOverTLS=yes\n")
    store = RawStore()
    f = collect_dns(store, tmp_path)
    assert f.status == "ok"
    assert [(n.address, n.address_class, n.origin) for n in f.nameservers] == [
        ("10.231.0.53", "private", "resolv.conf"),
        ("8.8.8.8", "global", "resolv.conf"),
        ("10.231.0.54", "private", "resolved.conf:DNS"),
    ]
    assert f.search == ["enclave.internal"]
    assert f.options == ["edns0", "trust-ad"]
    assert f.nsswitch_hosts == ["files", "mdns4_minimal", "[NOTFOUND=return]", "dns"]
    assert f.resolved.present is True
    assert f.resolved.settings == {"DNS": "10.231.0.54#dns.enclave", "DNSOverTLS": "yes", "FallbackDNS": ""}
    src = next(s for s in f.sources if s.path == str(tmp_path / "etc/resolv.conf"))
    assert src.sha256 == hashlib.sha256((tmp_path / "etc/resolv.conf").read_bytes()).hexdigest()
    assert src.stored
    assert f"sha256:{src.sha256}" in store.items()


def test_dns_records_symlinked_resolv_conf(tmp_path: Path) -> None:
    write(tmp_path, "run/systemd/resolve/stub-resolv.conf", "nameserver 127.0.0.53\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").symlink_to(tmp_path / "run/systemd/resolve/stub-resolv.conf")
    f = collect_dns(RawStore(), tmp_path)
    assert f.resolv_conf_target == str(tmp_path / "run/systemd/resolve/stub-resolv.conf")
    assert [(n.address, n.address_class) for n in f.nameservers] == [("127.0.0.53", "loopback")]


def test_dns_on_empty_root_says_what_is_missing(tmp_path: Path) -> None:
    f = collect_dns(RawStore(), tmp_path)
    assert f.resolv_conf_present is False
    assert f.nameservers == []
    assert f.reason is not None
    assert "resolv.conf not found" in f.reason
    assert any(s.error == "not found" for s in f.sources)


# ------------------------------------------------------------------------------------------------ proxies + units


def test_proxy_settings_from_every_place(tmp_path: Path) -> None:
    write(tmp_path, "etc/environment", 'PATH="/usr/bin"\nhttps_proxy="http://alice:s3cret@10.231.0.8:3128"\n'
          "no_proxy=localhost,.enclave\n")  # fmt: skip
    write(tmp_path, "etc/profile.d/proxy.sh", "# corporate\nexport HTTP_PROXY=http://10.231.0.8:3128/\n"
          "   #export FTP_PROXY=ignored\nALL_PROXY='socks5://10.231.0.9:1080' ; \n")  # fmt: skip
    write(tmp_path, "etc/profile.d/readme.txt", "http_proxy=not-a-script\n")
    write(tmp_path, "etc/systemd/system.conf", "[Manager]\nDefaultEnvironment=HTTPS_PROXY=http://10.231.0.7:8080 A=1\n")
    write(tmp_path, "etc/default/infer", "https_proxy=http://10.231.0.6:3128\n")
    write(tmp_path, "etc/systemd/system/infer.service",
          "[Unit]\nDescription=x\n[Service]\nEnvironment=\"HTTP_PROXY=http://bob:pw@10.231.0.5:3128\" B=2\n"
          "EnvironmentFile=-/etc/default/infer\nExecStart=/usr/bin/llama-server --port 8080\n")  # fmt: skip
    proc = ProcessInfo(
        pid=4242, comm="vllm", cmdline=["vllm", "serve"], services=["vllm"],
        environment={"https_proxy": "http://carol:pw@10.231.0.4:3128"}, environ_readable=True,
    )  # fmt: skip
    procs = ProcessesFacts(status="ok", netns="net:[1]", inference=[proc])
    f = collect_proxy(RawStore(), tmp_path, load_units(tmp_path), procs)
    got = {(s.origin, s.variable, s.value) for s in f.settings}
    assert got == {
        ("etc_environment", "https_proxy", "http://***@10.231.0.8:3128"),
        ("etc_environment", "no_proxy", "localhost,.enclave"),
        ("profile_d", "HTTP_PROXY", "http://10.231.0.8:3128/"),
        ("profile_d", "ALL_PROXY", "socks5://10.231.0.9:1080"),
        ("systemd_system_conf", "HTTPS_PROXY", "http://10.231.0.7:8080"),
        ("systemd_unit", "HTTP_PROXY", "http://***@10.231.0.5:3128"),
        ("systemd_unit", "https_proxy", "http://10.231.0.6:3128"),
        ("process", "https_proxy", "http://***@10.231.0.4:3128"),
    }
    assert {s.name for s in f.proxies} == {"https_proxy", "http_proxy", "all_proxy"}
    assert all(not s.is_exclusion for s in f.proxies)
    unit_hit = next(s for s in f.settings if s.variable == "https_proxy" and s.origin == "systemd_unit")
    assert unit_hit.location == f"{tmp_path}/etc/default/infer:1"
    assert next(s for s in f.settings if s.origin == "process").location == "pid:4242"
    env_src = next(s for s in f.sources if s.path == str(tmp_path / "etc/environment"))
    assert env_src.stored is False  # may hold secrets: hashed, never stored
    assert env_src.sha256 is not None
    assert "s3cret" not in f.model_dump_json()


def test_proxy_unknown_when_processes_could_not_be_scanned(tmp_path: Path) -> None:
    procs = ProcessesFacts(status="unknown", reason="/proc lists no processes")
    f = collect_proxy(RawStore(), tmp_path, [], procs)
    assert f.status == "unknown"
    assert f.reason == "process environments not read: /proc lists no processes"


def test_empty_proxy_value_is_not_a_proxy(tmp_path: Path) -> None:
    write(tmp_path, "etc/environment", "http_proxy=\n")
    f = collect_proxy(RawStore(), tmp_path, [], NO_PROCESSES)
    assert [s.variable for s in f.settings] == ["http_proxy"]
    assert f.proxies == []


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("http://u:p@h:1", "http://***@h:1"),
        ("https://token@h", "https://***@h"),
        ("h:3128", "h:3128"),
        ("http://h/path@x", "http://h/path@x"),
    ],
)
def test_mask_credentials(value: str, masked: str) -> None:
    assert mask_credentials(value) == masked


def test_unit_dropins_override_and_reset_environment(tmp_path: Path) -> None:
    write(tmp_path, "usr/lib/systemd/system/svc.service", "[Service]\nEnvironment=A=1 B=2\nExecStart=/bin/true x\n")
    write(tmp_path, "etc/systemd/system/svc.service.d/10-a.conf", "[Service]\nEnvironment=\nEnvironment=C=3\n")
    write(tmp_path, "etc/systemd/system/svc.service.d/20-b.conf", "[Service]\nExecStart=\nExecStart=/bin/false y\n")
    (unit,) = load_units(tmp_path)
    assert unit.environment == {"C": "3"}
    assert unit.exec_start == ["/bin/false", "y"]
    assert [p.name for p in unit.files] == ["svc.service", "10-a.conf", "20-b.conf"]


# ------------------------------------------------------------------------------------------------ telemetry in units


def test_telemetry_of_unit_files(tmp_path: Path) -> None:
    write(tmp_path, "etc/systemd/system/vllm.service",
          "[Service]\nEnvironment=VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1\n"
          "ExecStart=/opt/venv/bin/python -m vllm.entrypoints.openai.api_server --model /m\n")  # fmt: skip
    write(tmp_path, "etc/systemd/system/webui.service",
          "[Service]\nEnvironment=SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true ANONYMIZED_TELEMETRY=true\n"
          "ExecStart=/usr/bin/open-webui serve\n")  # fmt: skip
    write(tmp_path, "etc/systemd/system/llama.service", "[Service]\nExecStart=/usr/bin/llama-server --offline -m x\n")
    write(tmp_path, "etc/systemd/system/tgi.service",
          "[Service]\nEnvironment=USAGE_STATS=no-stack HF_HUB_OFFLINE=true\n"
          "ExecStart=/usr/bin/text-generation-launcher\n")  # fmt: skip
    write(tmp_path, "etc/systemd/system/cron.service", "[Service]\nExecStart=/usr/sbin/cron -f\n")
    f = collect_telemetry(RawStore(), NO_PROCESSES, load_units(tmp_path), tmp_path)
    by = {s.service: s for s in f.services}
    assert set(by) == {"vllm", "open-webui", "llama.cpp", "tgi"}
    assert by["vllm"].telemetry_disabled is True
    assert by["llama.cpp"].telemetry_disabled is True  # --offline on the command line
    assert by["open-webui"].telemetry_disabled is False
    assert by["tgi"].telemetry_disabled is False  # no-stack still sends usage statistics
    assert sorted(f.violations) == sorted([
        f"open-webui@{tmp_path}/etc/systemd/system/webui.service: chroma telemetry",
        f"open-webui@{tmp_path}/etc/systemd/system/webui.service: offline",
        f"tgi@{tmp_path}/etc/systemd/system/tgi.service: usage statistics",
    ])  # fmt: skip
    chroma = next(r for r in by["open-webui"].requirements if r.purpose == "chroma telemetry")
    assert chroma.any_of[0].variable == "ANONYMIZED_TELEMETRY"
    assert chroma.any_of[0].value == "true"
    assert chroma.any_of[0].satisfied is False
    assert all(s.origin == "systemd_unit" for s in f.services)


@pytest.mark.parametrize(
    ("cmdline", "env", "services"),
    [
        (["/usr/bin/python3", "/usr/local/bin/vllm", "serve", "m"], {}, ["vllm"]),
        (["vllm", "serve", "m"], {}, ["vllm"]),
        (["python", "-m", "vllm.entrypoints.openai.api_server"], {}, ["vllm"]),
        (["/usr/local/bin/ollama", "serve"], {}, ["ollama"]),
        (["uvicorn", "open_webui.main:app", "--host", "0.0.0.0"], {}, ["open-webui"]),  # noqa: S104
        (["text-generation-launcher", "--model-id", "x"], {}, ["tgi"]),
        (["python3", "app.py"], {"GAPSEAL_SERVICE": "gradio"}, ["gradio"]),
        (["python3", "serve.py"], {"GAPSEAL_SERVICE": "embeddings"}, ["gapseal-service"]),
        (["python3", "-m", "http.server"], {}, []),
        (["/usr/bin/bash", "-c", "echo vllm"], {}, []),
    ],
)
def test_recognise_inference_services(cmdline: list[str], env: dict[str, str], services: list[str]) -> None:
    assert recognise(cmdline, env) == services


# ------------------------------------------------------------------------------------------------ sshd


def test_sshd_config_parsed_with_includes_and_match(tmp_path: Path) -> None:
    write(tmp_path, "etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\n"
          "PasswordAuthentication yes\nPort 22\nListenAddress 10.231.0.2\nMatch User backup\n"
          "  PasswordAuthentication yes\n  PermitRootLogin yes\n")  # fmt: skip
    write(tmp_path, "etc/ssh/sshd_config.d/10-hardening.conf",
          "passwordauthentication no\nPermitRootLogin=without-password\n"
          "ChallengeResponseAuthentication no\nPort 2222\n")  # fmt: skip
    write(tmp_path, "usr/sbin/sshd", "")
    f = collect_ssh(RawStore(), tmp_path)
    assert f.status == "ok"
    assert f.present is True
    assert f.method == "sshd_config"  # under a prefix sshd -T would read the machine's own Includes
    assert f.password_authentication == "no"  # the Include comes first: first value wins
    assert f.permit_root_login == "prohibit-password"
    assert f.kbd_interactive_authentication == "no"
    assert f.pubkey_authentication == "yes"  # sshd's default, applied
    assert f.permit_empty_passwords == "no"
    assert f.ports == [2222, 22]
    assert f.settings["port"] == "2222 22"
    assert f.listen_addresses == ["10.231.0.2"]
    assert f.match_blocks == 1
    assert [s.path for s in f.sources] == [
        str(tmp_path / "etc/ssh/sshd_config"),
        str(tmp_path / "etc/ssh/sshd_config.d/10-hardening.conf"),
    ]


def test_sshd_defaults_apply_when_unset(tmp_path: Path) -> None:
    write(tmp_path, "etc/ssh/sshd_config", "# nothing set\n")
    f = collect_ssh(RawStore(), tmp_path)
    assert (f.password_authentication, f.permit_root_login, f.ports) == ("yes", "prohibit-password", [22])
    assert f.settings == {}


def test_sshd_absent_is_a_fact_not_unknown(tmp_path: Path) -> None:
    f = collect_ssh(RawStore(), tmp_path)
    assert (f.status, f.present, f.method) == ("ok", False, "none")
    assert f.reason == "sshd is not installed"


def test_sshd_installed_without_config_is_unknown(tmp_path: Path) -> None:
    write(tmp_path, "usr/sbin/sshd", "")
    f = collect_ssh(RawStore(), tmp_path)
    assert f.status == "unknown"
    assert f.reason == f"sshd is installed but {tmp_path}/etc/ssh/sshd_config is missing"


def test_sshd_on_this_machine_uses_sshd_t() -> None:
    """The real root: ``sshd -T`` gives the effective configuration (this machine has openssh-server)."""
    f = collect_ssh(RawStore(), Path("/"))
    assert f.present is True
    assert f.method in {"sshd -T", "sshd_config"}
    if f.method == "sshd -T":
        (run,) = [s for s in f.sources if s.argv == ["sshd", "-T"]]
        assert run.exit_code == 0
        assert "passwordauthentication" in f.settings
    assert f.password_authentication in {"yes", "no"}


# ------------------------------------------------------------------------------------------------ logging


def test_journald_and_auditd(tmp_path: Path) -> None:
    write(tmp_path, "etc/systemd/journald.conf", "[Journal]\nStorage=auto\nMaxRetentionSec=1month\n")
    write(tmp_path, "usr/lib/systemd/journald.conf.d/10-vendor.conf", "[Journal]\nForwardToSyslog=yes\n")
    write(tmp_path, "etc/systemd/journald.conf.d/20-site.conf", "[Journal]\nStorage=persistent\nMaxRetentionSec=1y\n")
    write(tmp_path, "etc/audit/auditd.conf", "log_file = /var/log/audit/audit.log\nmax_log_file = 8\n"
          "num_logs = 5\nmax_log_file_action = ROTATE # rotate\nSpace_Left_Action = email\n")  # fmt: skip
    write(tmp_path, "etc/audit/rules.d/gapseal.rules", "-w /etc/ssh -p wa\n")
    f = collect_logging(RawStore(), tmp_path)
    assert f.journald.storage == "persistent"
    assert f.journald.persistent is True
    assert f.journald.max_retention_sec == 31557600
    assert f.journald.forward_to_syslog == "yes"
    assert f.auditd.present is True
    assert f.auditd.settings["max_log_file_action"] == "ROTATE"
    assert f.auditd.settings["space_left_action"] == "email"
    assert f.auditd.rules_files == [str(tmp_path / "etc/audit/rules.d/gapseal.rules")]


def test_journald_auto_is_persistent_only_with_var_log_journal(tmp_path: Path) -> None:
    write(tmp_path, "etc/systemd/journald.conf", "[Journal]\n#Storage=auto\n")
    assert collect_logging(RawStore(), tmp_path).journald.persistent is False
    (tmp_path / "var/log/journal").mkdir(parents=True)
    f = collect_logging(RawStore(), tmp_path)
    assert (f.journald.storage, f.journald.persistent, f.journald.max_retention_sec) == ("auto", True, None)


def test_logging_on_empty_root(tmp_path: Path) -> None:
    f = collect_logging(RawStore(), tmp_path)
    assert f.journald.present is False
    assert f.auditd.present is False
    assert f.journald.persistent is False


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("1h", 3600), ("2d 12h", 216000), ("1month", 2629800), ("1w", 604800), ("90min", 5400),
     ("1y", 31557600), ("0", None), ("", None), ("5 parsecs", None), ("1d garbage", None)],
)  # fmt: skip
def test_parse_timespan(text: str, seconds: int | None) -> None:
    assert parse_timespan(text) == seconds


def test_programs_of_an_installed_build_are_gapseal_services(tmp_path: Path) -> None:
    build = "/srv/host1/opt/gapseal/builds/server/cpu"
    assert recognise(["/usr/bin/python3", f"{build}/bin/embed-server", "--port", "8080"], {}, [build]) == [
        "gapseal-service"
    ]
    assert recognise([f"{build}/bin/llama-server", "-m", "x"], {}, [build]) == ["llama.cpp"]  # known kind wins
    assert recognise(["/usr/bin/python3", f"{build}x/bin/embed-server"], {}, [build]) == []  # sibling dir
    assert recognise(["/usr/bin/python3", "bin/embed-server"], {}, [build]) == []  # relative: unknowable
    write(tmp_path, "etc/systemd/system/gapseal-embed.service",
          f"[Service]\nEnvironment=HF_HUB_OFFLINE=1 DO_NOT_TRACK=1\nExecStart={build}/bin/embed-server\n")  # fmt: skip
    f = collect_telemetry(RawStore(), NO_PROCESSES, load_units(tmp_path), tmp_path, [build])
    (svc,) = f.services
    assert (svc.service, svc.telemetry_disabled) == ("gapseal-service", True)
    assert {r.purpose for r in svc.requirements} == {"hub telemetry", "hub offline", "do not track"}


def test_proxy_from_environment_d_profile_shell_rc_and_system_conf_d(tmp_path: Path) -> None:
    write(tmp_path, "etc/environment.d/50-proxy.conf", "https_proxy=http://10.231.0.10:3128\n")
    write(tmp_path, "usr/lib/environment.d/50-proxy.conf", "https_proxy=http://shadowed:1\n")  # same name: /etc wins
    write(tmp_path, "etc/profile", 'if [ -x /usr/bin/id ]; then :; fi\nexport http_proxy="http://10.231.0.11:3128"\n')
    write(tmp_path, "etc/bash.bashrc", "export ALL_PROXY=socks5h://10.231.0.12:1080\n")
    write(tmp_path, "root/.bashrc", "export https_proxy=http://10.231.0.13:3128\n")
    write(tmp_path, "home/op/.profile", "export ftp_proxy=http://10.231.0.14:21\n")
    write(
        tmp_path,
        "run/systemd/system.conf.d/proxy.conf",
        "[Manager]\nDefaultEnvironment=http_proxy=http://10.231.0.15:3128\n",
    )
    f = collect_proxy(RawStore(), tmp_path, [], NO_PROCESSES)
    got = {(s.origin, s.variable, s.value, s.location.split(str(tmp_path))[-1]) for s in f.settings}
    assert got == {
        ("environment_d", "https_proxy", "http://10.231.0.10:3128", "/etc/environment.d/50-proxy.conf:1"),
        ("profile", "http_proxy", "http://10.231.0.11:3128", "/etc/profile:2"),
        ("shell_rc", "ALL_PROXY", "socks5h://10.231.0.12:1080", "/etc/bash.bashrc:1"),
        ("shell_rc", "https_proxy", "http://10.231.0.13:3128", "/root/.bashrc:1"),
        ("shell_rc", "ftp_proxy", "http://10.231.0.14:21", "/home/op/.profile:1"),
        ("systemd_system_conf", "http_proxy", "http://10.231.0.15:3128", "/run/systemd/system.conf.d/proxy.conf"),
    }


def test_proxy_from_top_level_service_d_dropin_applies_to_every_unit(tmp_path: Path) -> None:
    write(tmp_path, "etc/systemd/system/a.service", "[Service]\nExecStart=/bin/true\n")
    write(tmp_path, "usr/lib/systemd/system/b-c.service", "[Service]\nExecStart=/bin/true\n")
    write(
        tmp_path,
        "etc/systemd/system/service.d/10-proxy.conf",
        "[Service]\nEnvironment=HTTPS_PROXY=http://10.231.0.20:3128\n",
    )
    write(
        tmp_path,
        "etc/systemd/system/b-.service.d/20-proxy.conf",
        "[Service]\nEnvironment=http_proxy=http://10.231.0.21:1\n",
    )
    units = load_units(tmp_path)
    f = collect_proxy(RawStore(), tmp_path, units, NO_PROCESSES)
    got = sorted((s.location.split("/")[-1], s.variable) for s in f.settings)
    assert got == [
        ("10-proxy.conf:2", "HTTPS_PROXY"),
        ("10-proxy.conf:2", "HTTPS_PROXY"),
        ("20-proxy.conf:2", "http_proxy"),
    ]
    assert {u.name for u in units} == {"a.service", "b-c.service"}


def test_proxy_in_the_environment_of_any_running_process(tmp_path: Path) -> None:
    """A real process (not an inference service) started with a proxy variable is found by scanning /proc."""
    import subprocess

    from gapseal.audit.collectors.processes import own_netns

    child = subprocess.Popen(
        ["sleep", "60"], env={"PATH": "/usr/bin:/bin", "https_proxy": "http://u:pw@10.231.0.30:3128"}
    )
    try:
        procs = ProcessesFacts(status="ok", netns=own_netns(Path("/proc")), inference=[])
        f = collect_proxy(RawStore(), tmp_path, [], procs, proc=Path("/proc"))
    finally:
        child.kill()
        child.wait()
    mine = [s for s in f.settings if s.location == f"pid:{child.pid} (sleep)"]
    assert [(s.origin, s.variable, s.value) for s in mine] == [
        ("process", "https_proxy", "http://***@10.231.0.30:3128")
    ]
    assert f.processes_scanned > 1
    src = next(s for s in f.sources if s.path == f"/proc/{child.pid}/environ")
    assert (src.kind, src.stored) == ("procfs", False)
