"""Package/container sources, time servers and networkd/per-link DNS, collected from crafted roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors.dns import collect_dns
from gapseal.audit.collectors.package_sources import collect_package_sources, endpoint, parse_apt_conf
from gapseal.audit.collectors.timesync import collect_time


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def entries(root: Path) -> list[tuple[str, str, str, bool]]:
    f = collect_package_sources(RawStore(), root)
    assert f.status == "ok", f.reason
    return [(e.manager, e.kind, e.value, e.local) for e in f.entries]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://deb.debian.org/debian", ("deb.debian.org", None, "deb.debian.org", False)),
        ("file:/srv/repo", (None, None, None, True)),
        ("cdrom:[Debian 12]/", (None, None, None, True)),
        ("http://[::1]:8080/x", ("::1", 8080, "[::1]:8080", True)),
        ("registry.enclave:5000", ("registry.enclave", 5000, "registry.enclave:5000", False)),
        ("https://u:p@10.2.3.4:443/simple", ("10.2.3.4", 443, "10.2.3.4:443", False)),
        ("localhost:5000", ("localhost", 5000, "localhost:5000", True)),
        ("/opt/wheels", (None, None, None, True)),
        ("http://h:notaport/", (None, None, None, False)),
    ],
)
def test_endpoint(value: str, expected: tuple[object, ...]) -> None:
    assert endpoint(value) == expected


def test_apt_conf_flat_nested_comments_and_direct() -> None:
    text = (
        '// a comment\nAcquire::http::Proxy "http://10.0.0.1:3142";\n/* block\n comment */\n'
        'Acquire { https { Proxy "http://x:1"; }; };\n#clear APT::Foo;\n'
        'Acquire::http::Proxy::deb.debian.org "DIRECT";\n'
    )
    assert parse_apt_conf(text) == [
        ("Acquire::http::Proxy", "http://10.0.0.1:3142"),
        ("Acquire::https::Proxy", "http://x:1"),
        ("Acquire::http::Proxy::deb.debian.org", "DIRECT"),
    ]


def test_apt_sources_list_deb822_mirror_file_and_proxies(tmp_path: Path) -> None:
    write(tmp_path, "etc/apt/sources.list",
          "deb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main\n"
          "# deb http://commented.example/ x\ndeb-src file:/srv/debian bookworm main\n")  # fmt: skip
    write(tmp_path, "etc/apt/sources.list.d/debian.sources",
          "Types: deb\nURIs: http://10.231.5.5/debian\n  http://security.debian.org/debian-security\nSuites: x\n\n"
          "Enabled: no\nTypes: deb\nURIs: http://disabled.example/\n")  # fmt: skip
    write(tmp_path, "etc/apt/sources.list.d/mirrors.list", "deb mirror+file:/etc/apt/mirrors.txt bookworm main\n")
    write(tmp_path, "etc/apt/mirrors.txt", "http://mirror-a.example/debian\n# comment\nhttp://10.231.5.6/debian\n")
    write(tmp_path, "etc/apt/apt.conf.d/01proxy", 'Acquire::http::Proxy "http://u:pw@proxy.example:3128";\n')
    write(tmp_path, "etc/apt/apt.conf.d/02direct", 'Acquire::https::Proxy "DIRECT";\n')
    write(tmp_path, "etc/apt/apt.conf.d/03detect", 'Acquire::http::Proxy-Auto-Detect "/usr/bin/detect";\n')
    assert entries(tmp_path) == [
        ("apt", "source", "http://deb.debian.org/debian", False),
        ("apt", "source", "file:/srv/debian", True),
        ("apt", "mirror", "http://mirror-a.example/debian", False),
        ("apt", "mirror", "http://10.231.5.6/debian", False),
        ("apt", "source", "http://10.231.5.5/debian", False),
        ("apt", "source", "http://security.debian.org/debian-security", False),
        ("apt", "proxy", "http://***@proxy.example:3128", False),
        ("apt", "proxy", "auto-detect:/usr/bin/detect", False),
    ]


def test_pip_npm_conda(tmp_path: Path) -> None:
    write(tmp_path, "etc/pip.conf", "[global]\nindex-url = https://pypi.org/simple\nextra-index-url =\n"
          "    http://10.231.5.7/simple\n    https://extra.example/simple\nproxy = http://p.example:8080\n"
          "[install]\nfind-links = /opt/wheels\n")  # fmt: skip
    write(tmp_path, "root/.npmrc", "registry=https://registry.npmjs.org/\n@corp:registry=http://10.231.5.8/\n"
          "https-proxy=http://p.example:8080\nproxy=null\n")  # fmt: skip
    write(tmp_path, "home/op/.condarc", "channels:\n  - conda-forge\n  - defaults\n  - http://10.231.5.9/ch\n"
          "proxy_servers:\n  https: http://p.example:8080\n")  # fmt: skip
    assert entries(tmp_path) == [
        ("pip", "source", "https://pypi.org/simple", False),
        ("pip", "source", "http://10.231.5.7/simple", False),
        ("pip", "source", "https://extra.example/simple", False),
        ("pip", "proxy", "http://p.example:8080", False),
        ("npm", "source", "https://registry.npmjs.org/", False),
        ("npm", "source", "http://10.231.5.8/", False),
        ("npm", "proxy", "http://p.example:8080", False),
        ("conda", "source", "https://conda.anaconda.org/conda-forge", False),
        ("conda", "source", "https://repo.anaconda.com/pkgs/main", False),
        ("conda", "source", "https://repo.anaconda.com/pkgs/r", False),
        ("conda", "source", "http://10.231.5.9/ch", False),
        ("conda", "proxy", "http://p.example:8080", False),
    ]


def test_conda_channel_alias_inside_the_enclave(tmp_path: Path) -> None:
    write(tmp_path, "etc/conda/.condarc", "channel_alias: http://10.231.5.9/conda\ndefault_channels: [http://10.231.5.9/main]\n"
          "channels: [conda-forge, defaults]\n")  # fmt: skip
    assert entries(tmp_path) == [
        ("conda", "source", "http://10.231.5.9/conda/conda-forge", False),
        ("conda", "source", "http://10.231.5.9/main", False),
    ]


def test_podman_registries_conf_and_docker_daemon_json(tmp_path: Path) -> None:
    write(tmp_path, "etc/containers/registries.conf", 'unqualified-search-registries = ["docker.io", "quay.io"]\n'
          '[[registry]]\nlocation = "registry.enclave:5000"\n[[registry.mirror]]\nlocation = "mirror.example"\n'
          '[[registry]]\nprefix = "ghcr.io"\nlocation = "ghcr.io"\nblocked = true\n')  # fmt: skip
    write(
        tmp_path,
        "etc/containers/registries.conf.d/shortnames.conf",
        '[aliases]\n"alpine" = "docker.io/library/alpine"\n',
    )
    write(tmp_path, "etc/docker/daemon.json", '{"registry-mirrors": ["https://mirror.gcr.io"], "insecure-registries": '
          '["10.231.5.10:5000"], "proxies": {"https-proxy": "http://p.example:8080"}}')  # fmt: skip
    assert entries(tmp_path) == [
        ("podman", "registry", "docker.io", False),
        ("podman", "registry", "quay.io", False),
        ("podman", "registry", "registry.enclave:5000", False),
        ("podman", "mirror", "mirror.example", False),
        ("podman", "registry", "ghcr.io", True),
        ("docker", "mirror", "https://mirror.gcr.io", False),
        ("docker", "registry", "10.231.5.10:5000", False),
        ("docker", "proxy", "http://p.example:8080", False),
    ]


@pytest.mark.parametrize(
    ("rel", "text", "problem"),
    [
        ("etc/docker/daemon.json", "{not json", "etc/docker/daemon.json: not valid JSON"),
        ("etc/containers/registries.conf", "unqualified-search-registries = [", "registries.conf: not valid TOML"),
        ("etc/conda/.condarc", "channels: [a\n", "etc/conda/.condarc: not valid YAML"),
        ("etc/apt/apt.conf.d/99bad", 'Acquire { http { Proxy "x"; };\n', "99bad: unbalanced '{'"),
    ],
)
def test_unparseable_configuration_is_unknown(tmp_path: Path, rel: str, text: str, problem: str) -> None:
    write(tmp_path, rel, text)
    f = collect_package_sources(RawStore(), tmp_path)
    assert f.status == "unknown"
    assert f.reason is not None
    assert problem in f.reason


def test_empty_root_has_no_sources(tmp_path: Path) -> None:
    f = collect_package_sources(RawStore(), tmp_path)
    assert (f.status, f.entries) == ("ok", [])


def test_credentials_files_are_hashed_not_stored(tmp_path: Path) -> None:
    write(tmp_path, "root/.npmrc", "//registry.enclave/:_authToken=s3cret\nregistry=http://10.231.5.8/\n")
    store = RawStore()
    f = collect_package_sources(store, tmp_path)
    src = next(s for s in f.sources if s.path == str(tmp_path / "root/.npmrc"))
    assert (src.stored, src.sha256 is not None) == (False, True)
    assert "s3cret" not in str(store.items())


# ------------------------------------------------------------------------------------------------ time


def servers(root: Path) -> list[tuple[str, str, str, bool]]:
    f = collect_time(RawStore(), root)
    assert f.status == "ok", f.reason
    return [(s.daemon, s.directive, s.address, s.local) for s in f.servers]


def test_chrony_with_confdir_sourcedir_and_refclock(tmp_path: Path) -> None:
    write(tmp_path, "etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\nconfdir /etc/chrony/conf.d\n"
          "sourcedir /etc/chrony/sources.d\nrefclock PHC /dev/ptp0\n! server commented.example\n")  # fmt: skip
    write(tmp_path, "etc/chrony/conf.d/local.conf", "server 10.231.5.1 iburst\n")
    write(tmp_path, "etc/chrony/sources.d/extra.sources", "server 198.51.100.123\n")
    assert servers(tmp_path) == [
        ("chrony", "pool", "2.debian.pool.ntp.org", False),
        ("chrony", "server", "10.231.5.1", False),
        ("chrony", "server", "198.51.100.123", False),
    ]


def test_ntpsec_with_local_clock(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/ntpsec/ntp.conf",
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\npool 0.debian.pool.ntp.org\n",
    )
    assert servers(tmp_path) == [
        ("ntpsec", "server", "127.127.1.0", True),
        ("ntpsec", "pool", "0.debian.pool.ntp.org", False),
    ]


def test_timesyncd_enabled_without_servers_asks_the_compiled_in_pool(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd/system/sysinit.target.wants").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service").symlink_to(
        "/lib/systemd/system/systemd-timesyncd.service"
    )
    write(tmp_path, "etc/systemd/timesyncd.conf", "[Time]\n#NTP=\n")
    got = servers(tmp_path)
    assert [g[:2] for g in got] == [("timesyncd", "compiled-in FallbackNTP")] * 4
    assert got[0][2] == "0.debian.pool.ntp.org"


def test_timesyncd_ntp_dropin_and_empty_fallback_replace_the_pool(tmp_path: Path) -> None:
    write(tmp_path, "lib/systemd/systemd-timesyncd", "")
    write(tmp_path, "etc/systemd/timesyncd.conf.d/site.conf", "[Time]\nNTP=10.231.5.1\nFallbackNTP=\n")
    assert servers(tmp_path) == [("timesyncd", "NTP", "10.231.5.1", False)]


def test_timesyncd_masked_is_not_a_daemon(tmp_path: Path) -> None:
    write(tmp_path, "lib/systemd/systemd-timesyncd", "")
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/systemd-timesyncd.service").symlink_to("/dev/null")
    f = collect_time(RawStore(), tmp_path)
    assert (f.daemons, f.servers) == ([], [])


def test_networkd_ntp_and_dns_with_dropin_reset(tmp_path: Path) -> None:
    write(
        tmp_path,
        "usr/lib/systemd/network/80-eth.network",
        "[Match]\nName=eth*\n[Network]\nDNS=1.1.1.1\nNTP=time.example\n",
    )
    write(tmp_path, "etc/systemd/network/80-eth.network.d/site.conf", "[Network]\nDNS=\nDNS=10.231.5.53\n")
    write(tmp_path, "run/systemd/resolve/netif/2", "# resolved\nSERVERS=203.0.113.53\n")
    write(tmp_path, "run/systemd/netif/links/2", "ADMIN_STATE=configured\nNTP=198.51.100.1\n")
    assert servers(tmp_path) == [
        ("networkd", "NTP", "time.example", False),
        ("networkd", "NTP", "198.51.100.1", False),
    ]
    dns = collect_dns(RawStore(), tmp_path)
    got = [(n.address, n.origin.split(":", 1)[0]) for n in dns.nameservers]
    assert got == [("10.231.5.53", "networkd"), ("203.0.113.53", "resolved-link")]


def test_resolved_upstream_list_is_read(tmp_path: Path) -> None:
    write(tmp_path, "run/systemd/resolve/resolv.conf", "nameserver 192.0.2.53\n")
    dns = collect_dns(RawStore(), tmp_path)
    assert [(n.address, n.origin) for n in dns.nameservers] == [
        ("192.0.2.53", f"resolved-upstream:{tmp_path}/run/systemd/resolve/resolv.conf")
    ]


@pytest.mark.parametrize(
    ("collect", "files", "directory"),
    [
        (collect_package_sources, {}, "etc/apt/sources.list"),
        (collect_time, {"etc/chrony/chrony.conf": "include /etc/chrony/extra.conf\n"}, "etc/chrony/extra.conf"),
        (collect_dns, {}, "etc/resolv.conf"),
    ],
)
def test_a_file_that_exists_but_cannot_be_read_is_unknown(
    tmp_path: Path, collect: object, files: dict[str, str], directory: str
) -> None:
    """A directory where a configuration file should be (EISDIR): its content is unknown, so is the domain."""
    for rel, text in files.items():
        write(tmp_path, rel, text)
    (tmp_path / directory).mkdir(parents=True)
    f = collect(RawStore(), tmp_path)  # type: ignore[operator]
    assert f.status == "unknown"
    assert f"{tmp_path / directory}: Is a directory" in f.reason
