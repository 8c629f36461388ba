"""Real systemd hosts for the tests: Debian 12 booted under systemd-nspawn, systemd as PID 1, reachable over ssh.

Network-namespace hosts (``tests/hosts/netns.py``) have no init, so a unit is never started there. These hosts do:
``systemctl start/enable/restart``, ``journalctl -u``, ``nftables.service`` loading a persisted ruleset at boot, and
``reboot`` all work as on a real machine (recipe and gotchas: ../shared/TESTING.md, "Real systemd hosts").

- **Root filesystem**, built once with mmdebstrap and cached outside the repo in
  ``$GAPSEAL_ROOTFS_CACHE`` (default ``/var/cache/gapseal-test``) as ``rootfs-<hash of the recipe>``: a change to the
  package list or the customisation below builds a new one. The machine's own apt sources file is read at run time
  (no mirror name is written anywhere). ``build_rootfs`` is safe to call from several test runs at once (a lock file).
- **Per host N**: the network of a namespace host (``NamespaceHost.create_network``: ``10.2xx.N.1/30`` on the
  controller, ``.2`` inside, no default route), an overlay (the shared read-only rootfs below, an upper dir per host
  with its own ssh host key, ``/etc/hostname``, ``/etc/hosts`` and root's ``authorized_keys``), then systemd-nspawn in
  a private mount namespace with a cgroup2 mount (this machine is cgroup v1) and a cgroup of its own.
- **Stop**: SIGTERM to nspawn is a clean halt; then the cgroup, the veth, the netns and the host's directory go.
  ``SystemdFleet`` does that on exit, after a failure too; ``reboot()`` handles nspawn's exit status 133.

Subnet: ``GAPSEAL_TEST_SUBNET`` (as for the namespace hosts). These hosts are privileged containers sharing this
kernel: not a security boundary, which is why each one only ever gets a route to its own /30.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.hosts.netns import SUBNET_PREFIX, Fleet, HostSetupError, NamespaceHost, SshIdentity, _run

SUITE = "bookworm"
PACKAGES = (
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "python3",
    "python3-apt",
    "python3-venv",  # the runtime and self roles make virtual environments on the host
    "python3-packaging",  # Ansible's pip module (the self role) imports it on the host
    "libgomp1",  # llama.cpp's CPU build (xllamacpp) needs libgomp.so.1 from the host; the ELF check says so
    "nftables",
    "iproute2",
    "curl",
    "procps",
    "sudo",
)
# Units that would grab the dpkg lock or touch disks mid-test.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
)
SSHD_CONFIG = """\
# gapseal test host: key-only root login, no DNS lookups (there is no resolver), no tunnels out of the enclave;
# each host adds its ListenAddress (its own address only) in listen.conf.
DisableForwarding yes
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 64
MaxStartups 64:30:128
"""
RESOLV_CONF = "# an air-gapped test host: no nameserver\n"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
REBOOT_EXIT = 133
"""systemd-nspawn's exit status when the container ran ``reboot``."""


def cache_dir() -> Path:
    """Where root filesystems are cached, outside the repo."""
    return Path(os.environ.get("GAPSEAL_ROOTFS_CACHE", "/var/cache/gapseal-test"))


def requirements_missing() -> list[str]:
    """What this machine lacks to boot nspawn hosts (empty when everything is there)."""
    tools = ("systemd-nspawn", "mmdebstrap", "unshare", "ip", "ssh", "ssh-keygen")
    missing = [t for t in tools if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root")
    if not any(p.exists() for p in APT_SOURCES):
        missing.append("an apt sources file (" + " or ".join(map(str, APT_SOURCES)) + ")")
    return missing


def _sources_file() -> Path:
    for p in APT_SOURCES:
        if p.exists() and p.stat().st_size > 0:
            return p
    raise HostSetupError("no apt sources file on this machine: " + ", ".join(map(str, APT_SOURCES)))


def recipe_hash() -> str:
    """A short hash of everything that shapes the root filesystem (a new recipe gets a new cache entry)."""
    h = hashlib.sha256()
    for part in (SUITE, *PACKAGES, *MASKED_UNITS, SSHD_CONFIG, RESOLV_CONF, "v1"):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def _customise(root: Path) -> None:
    """Make the fresh tree a template for many hosts: no identity of its own, no resolver, quiet timers."""
    (root / "etc/machine-id").write_text("")  # empty: systemd makes a transient one per boot
    with contextlib.suppress(FileNotFoundError):
        (root / "etc/hostname").unlink()
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every host gets its own, in its overlay
    for sources in [root / "etc/apt/sources.list", *(root / "etc/apt/sources.list.d").glob("*")]:
        sources.unlink(missing_ok=True)  # an air-gapped host has no package source outside the enclave
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text(RESOLV_CONF)
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/sshd_config.d/gapseal-test.conf").write_text(SSHD_CONFIG)
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to("/dev/null")
    # nftables.service is enabled by gapseal's egress role when it persists a ruleset, not by the template.


def build_rootfs(*, log: Path | None = None) -> Path:
    """Return the cached root filesystem for this recipe, building it first if needed (~1 min, ~280 MB).

    The build reads this machine's apt sources file and writes into a temporary directory beside the cache entry,
    renamed into place only when complete, under a lock so concurrent test runs build it once.
    """
    missing = requirements_missing()
    if missing:
        raise HostSetupError(f"cannot build nspawn hosts here, missing: {', '.join(missing)}")
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    target = base / f"rootfs-{recipe_hash()}"
    if (target / "usr/lib/systemd/systemd").exists():
        return target
    with open(base / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "usr/lib/systemd/systemd").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=base))
        try:
            argv = [
                "mmdebstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                "--aptopt=Acquire::Check-Valid-Until false",  # the mirror may be a dated snapshot
                SUITE,
                str(tmp),
                str(_sources_file()),
            ]
            with open(log or os.devnull, "w") as out:
                proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
            if proc.returncode != 0:
                raise HostSetupError(
                    f"mmdebstrap exited {proc.returncode}" + (f" (log: {log})" if log else ""),
                )
            _customise(tmp)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _cgroup_cleanup(name: str) -> None:
    """Remove a host's cgroup from the cgroup2 hierarchy (mounted privately for the purpose)."""
    script = (
        'd=$(mktemp -d) && mount -t cgroup2 none "$d" && '
        f'{{ [ ! -d "$d/{name}" ] || rmdir "$d/{name}" 2>/dev/null || true; }}; umount "$d"; rmdir "$d"'
    )
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], check=False)


class SystemdHost(NamespaceHost):
    """One booted Debian 12 host with systemd as PID 1, on the network of a namespace host."""

    rootfs: Path
    nspawn: subprocess.Popen[bytes] | None

    def __init__(
        self,
        index: int,
        workdir: Path,
        identity: SshIdentity,
        token: str,
        rootfs: Path,
        tools: Mapping[str, Path] | None = None,
    ) -> None:
        super().__init__(index, workdir, identity, token)
        self.rootfs = rootfs
        self.tools = dict(tools or {})
        """Extra commands on the host's PATH: name -> an executable on the controller (bound read-only, e.g. the
        fake ``vulkaninfo`` of tests/fixtures/hardware/fakebin.py, whose recorded outputs sit beside it)."""
        self.nspawn = None
        self._peers: list[str] = []
        self._peer_procs: list[subprocess.Popen[bytes]] = []

    @property
    def machine(self) -> str:
        """The container's machine and host name (the inventory name)."""
        return self.name

    @property
    def cgroup(self) -> str:
        """The cgroup2 directory nspawn runs in (unique per test run)."""
        return f"gapseal-{self.netns}"

    @property
    def merged(self) -> Path:
        """The overlay's mount point (only mounted inside nspawn's private mount namespace)."""
        return self.dir / "root"

    @property
    def console_log(self) -> Path:
        """The host's console output (systemd's boot messages), for failures."""
        return self.dir / "console.log"

    def _prepare_overlay(self) -> None:
        upper = self.dir / "upper"
        for d in (upper / "etc/ssh", upper / "root/.ssh", self.dir / "work", self.merged):
            d.mkdir(parents=True, exist_ok=True)
        (upper / "root/.ssh").chmod(0o700)
        key = upper / "etc/ssh/ssh_host_ed25519_key"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(key)])
        (upper / "etc/hostname").write_text(f"{self.name}\n")
        (upper / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
        (upper / "etc/ssh/sshd_config.d/listen.conf").write_text(f"ListenAddress {self.address}\n")
        (upper / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n::1 localhost\n")
        (upper / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        for name, exe in self.tools.items():
            link = upper / "usr/local/bin" / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(exe)
        auth = upper / "root/.ssh/authorized_keys"
        auth.write_text(self.identity.public_key.read_text())
        auth.chmod(0o600)

    def boot(self, timeout: float = 60) -> None:
        """Start the container and wait until it has booted."""
        self.start()
        self.wait_running(timeout)

    def start(self) -> None:
        """Start systemd-nspawn (the overlay is mounted in its private mount namespace); do not wait."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            raise HostSetupError(f"{self.name} is already running")
        self._prepare_overlay()
        script = " && ".join(
            [
                "mount -t cgroup2 none /sys/fs/cgroup",
                f"mkdir -p /sys/fs/cgroup/{self.cgroup}",
                f"echo $$ > /sys/fs/cgroup/{self.cgroup}/cgroup.procs",
                "mkdir -p /run/systemd/nspawn",
                "mount -t tmpfs tmpfs /run/systemd/nspawn",
                f"mount -t overlay overlay -o lowerdir={self.rootfs},upperdir={self.dir / 'upper'},"
                f"workdir={self.dir / 'work'} {self.merged}",
                "exec systemd-nspawn -q -D {} --boot -M {} --register=no --keep-unit --network-namespace-path={} "
                "--capability=CAP_NET_ADMIN --console=read-only --link-journal=no --resolv-conf=off "
                "--timezone=off".format(self.merged, self.machine, f"/run/netns/{self.netns}")
                + "".join(f" --bind-ro={d}" for d in sorted({str(exe.parent) for exe in self.tools.values()})),
            ]
        )
        with open(self.console_log, "ab") as console:
            self.nspawn = subprocess.Popen(  # noqa: S603 - argument list; the script's parts are ours
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_running(self, timeout: float = 60) -> str:
        """Wait until sshd answers and systemd reports the boot finished; return the state (running/degraded)."""
        deadline = time.monotonic() + timeout
        state = "ssh never answered"
        while time.monotonic() < deadline:
            if self.nspawn is not None and self.nspawn.poll() is not None:
                raise HostSetupError(
                    f"{self.name}: systemd-nspawn exited {self.nspawn.returncode} while booting: {self._console_tail()}"
                )
            if self.port_open(22, timeout=0.3):
                proc = self.ssh(
                    ["systemctl", "is-system-running", "--wait"], timeout=max(5.0, deadline - time.monotonic())
                )
                state = proc.stdout.strip() or proc.stderr.strip()
                if state in ("running", "degraded"):
                    return state
            time.sleep(0.1)
        raise HostSetupError(f"{self.name} did not boot within {timeout:.0f}s ({state}): {self._console_tail()}")

    def _console_tail(self, lines: int = 15) -> str:
        text = self.console_log.read_text(errors="replace") if self.console_log.exists() else ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip()) or "(no output)"

    def reboot(self, timeout: float = 60) -> None:
        """Run ``systemctl reboot`` on the host, see nspawn exit with 133, and boot it again on the same overlay."""
        if self.nspawn is None:
            raise HostSetupError(f"{self.name} is not running")
        self.ssh(["systemctl", "reboot"], timeout=10)
        try:
            rc = self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise HostSetupError(f"{self.name} did not go down for reboot within {timeout:.0f}s") from e
        if rc != REBOOT_EXIT:
            raise HostSetupError(f"{self.name}: nspawn exited {rc}, not {REBOOT_EXIT} (reboot): {self._console_tail()}")
        self.nspawn = None
        # The network namespace outlives the container, so its kernel state would survive the "reboot"; a real
        # reboot starts with an empty ruleset, so flush it: whatever is loaded afterwards, the host's boot loaded.
        _run(["ip", "netns", "exec", self.netns, "nft", "flush", "ruleset"])
        self.boot(timeout)

    def halt(self, timeout: float = 20) -> None:
        """SIGTERM to nspawn (a clean halt of the container), SIGKILL if it does not go within ``timeout``."""
        proc, self.nspawn = self.nspawn, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def destroy(self) -> None:
        """Halt the container, then remove its cgroup, link, namespace and overlay directories; safe to call twice."""
        self.halt()
        for proc in self._peer_procs:
            proc.kill()
            proc.wait(timeout=10)
        for peer in self._peers:  # deleting a namespace deletes its end of the link, and so the pair
            _run(["ip", "netns", "del", peer], check=False)
        self._peer_procs.clear()
        self._peers.clear()
        super().destroy()  # kills anything left in the netns by PID, deletes veth and netns
        _cgroup_cleanup(self.cgroup)
        shutil.rmtree(self.dir, ignore_errors=True)

    def add_outside_peer(self, index: int, port: int) -> str:
        """A peer namespace on a second link of this host, standing for "outside", with a TCP listener on ``port``.

        The link is direct (``10.2xx.index.1`` on the host, ``.2`` in the peer), so without a firewall the host
        reaches it; an egress lockdown must make that fail. Returns the peer's address. Removed by ``destroy``.
        """
        peer_ns = f"gs{self.token}-{index}"
        here, there = f"gs{self.token}{index}o"[:15], f"gs{self.token}{index}p"[:15]
        host_addr, peer_addr = f"{SUBNET_PREFIX}.{index}.1", f"{SUBNET_PREFIX}.{index}.2"
        _run(["ip", "netns", "add", peer_ns])
        self._peers.append(peer_ns)
        _run(["ip", "link", "add", here, "netns", self.netns, "type", "veth", "peer", "name", there, "netns", peer_ns])
        _run(["ip", "-n", self.netns, "addr", "add", f"{host_addr}/30", "dev", here])
        _run(["ip", "-n", self.netns, "link", "set", here, "up"])
        _run(["ip", "-n", peer_ns, "addr", "add", f"{peer_addr}/30", "dev", there])
        _run(["ip", "-n", peer_ns, "link", "set", there, "up"])
        _run(["ip", "-n", peer_ns, "link", "set", "lo", "up"])
        listener = (
            "import socket\n"
            f"s = socket.create_server(({peer_addr!r}, {port}))\n"
            "while True:\n    c, _ = s.accept(); c.sendall(b'outside\\n'); c.close()\n"
        )
        self._peer_procs.append(
            subprocess.Popen(  # noqa: S603 - argument list
                ["ip", "netns", "exec", peer_ns, "python3", "-c", listener],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = _run(["ip", "netns", "exec", peer_ns, "ss", "-ltnH", f"sport = :{port}"], check=False)
            if probe.stdout.strip():
                return peer_addr
            time.sleep(0.05)
        raise HostSetupError(f"{self.name}: the outside peer's listener on {peer_addr}:{port} did not start")

    def journal(self, unit: str, lines: int = 30) -> str:
        """The last ``lines`` of ``unit``'s journal on the host (for failure messages)."""
        return self.ssh(["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"]).stdout


class SystemdFleet(Fleet[SystemdHost]):
    """A set of nspawn hosts sharing one controller identity; a context manager that always tears down."""

    def __init__(self, workdir: Path, rootfs: Path, *, token: str | None = None) -> None:
        super().__init__(workdir, token=token, what="nspawn hosts", missing=requirements_missing)
        self.rootfs = rootfs

    def add(self, index: int, *, timeout: float = 60) -> SystemdHost:
        """Create host ``index`` (address ``10.2xx.index.2``) and boot it."""
        if index in self.hosts:
            raise HostSetupError(f"host index {index} already in this fleet")
        host = SystemdHost(index, self.workdir, self.identity, self.token, self.rootfs)
        self.hosts[index] = host  # registered first, so a half-made host is torn down too
        host.create_network()
        host.boot(timeout)
        return host

    def boot_many(
        self, indices: Sequence[int], *, timeout: float = 90, tools: Mapping[str, Path] | None = None
    ) -> list[SystemdHost]:
        """Create and boot several hosts at once (their boots overlap); ``tools`` go on every host's PATH."""
        hosts = []
        for index in indices:
            if index in self.hosts:
                raise HostSetupError(f"host index {index} already in this fleet")
            host = SystemdHost(index, self.workdir, self.identity, self.token, self.rootfs, tools)
            self.hosts[index] = host
            host.create_network()
            host.start()  # every nspawn first, then wait for each: the boots overlap
            hosts.append(host)
        for host in hosts:
            host.wait_running(timeout)
        return hosts


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.hosts.nspawn serve``: boot hosts for the demo, write their inventory, halt them on SIGTERM.

    Builds the root filesystem if needed, boots hosts ``--index`` (each with an outside peer when ``--outside-port``
    is given), writes ``--inventory`` (Ansible YAML with ``service_bind``/``service_enclave`` per host) and then
    ``--ready`` (the file the caller waits for), and tears everything down when terminated.
    """
    import argparse
    import json

    import yaml

    parser = argparse.ArgumentParser(prog="python -m tests.hosts.nspawn")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--index", type=int, action="append", required=True)
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--outside-port", type=int, default=0)
    args = parser.parse_args(argv)
    terminated: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    signal.signal(signal.SIGINT, lambda *_: terminated.append(True))
    rootfs = build_rootfs(log=args.workdir / "mmdebstrap.log")
    with SystemdFleet(args.workdir, rootfs) as fleet:
        hosts = fleet.boot_many(args.index)
        outside = {h.name: h.add_outside_peer(h.index + 1, args.outside_port) for h in hosts if args.outside_port}
        host_vars = {h.name: {"service_bind": h.address, "service_enclave": [f"{SUBNET_PREFIX}.0.0/16"]} for h in hosts}
        args.inventory.write_text(yaml.safe_dump(fleet.inventory(hosts, host_vars=host_vars)))
        doc = {
            h.name: {"address": h.address, "outside": outside.get(h.name), "enclave": f"{SUBNET_PREFIX}.0.0/16"}
            for h in hosts
        }
        args.ready.write_text(json.dumps(doc))
        while not terminated:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
