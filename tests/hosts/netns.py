"""Isolated test hosts: one Linux network namespace per host, each with its own sshd and no default route.

A ``NamespaceHost`` is as close to a separate machine as this box allows without VMs: its own network stack
(a veth pair, ``10.231.N.1/30`` on the controller side and ``10.231.N.2/30`` inside, loopback up, **no default
route**), its own nftables ruleset, and its own sshd with its own host key, key-only auth and its own ``PATH``
(so a host can carry fake ``nvidia-smi``/``rocminfo`` executables that print recorded real outputs). The
filesystem is shared with the controller, so tests give every host its own install prefix (``gapseal_root``).

Ranges (TESTING.md, THE NETWORK RULE): the installer's tests use N in 1..49, the auditor's 50 and up. Nothing here
routes anywhere but between the controller and the namespaces it made.

Teardown is by PID and by name, never by pattern: every process left in the namespace (sshd and its sessions,
found with ``ip netns pids``) is killed with SIGKILL, then ``ip netns del``; ssh ControlMaster sockets the tests
opened are closed with ``ssh -O exit``. ``HostFleet`` does all of it on exit, including after a failure.

Usage::

    with HostFleet(workdir) as fleet:
        h = fleet.add(3, extra_path=[fake_tools_dir])
        h.ssh(["true"])
        fleet.inventory({"gapseal_root": ...})
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar


def _subnet_prefix() -> str:
    """``10.231`` unless ``GAPSEAL_TEST_SUBNET`` names another ``10.2xx`` (so two test runs on one machine, e.g. two
    developers' work trees, never assign the same veth address twice). Always inside 10.0.0.0/8, the enclave the
    default site data names."""
    prefix = os.environ.get("GAPSEAL_TEST_SUBNET", "10.231")
    first, _, second = prefix.partition(".")
    if first != "10" or not second.isdigit() or not 200 <= int(second) <= 254:
        raise ValueError(f"GAPSEAL_TEST_SUBNET={prefix!r}: expected 10.N with N in 200..254")
    return prefix


SUBNET_PREFIX = _subnet_prefix()
"""All test hosts live in 10.231.0.0/16 (or GAPSEAL_TEST_SUBNET); the third octet is the host index."""

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HostSetupError(RuntimeError):
    """A namespace host could not be brought up (the message carries the failing command and its stderr)."""


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise HostSetupError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def requirements_missing() -> list[str]:
    """Return what this machine lacks to run namespace hosts (empty when everything is there)."""
    missing = [tool for tool in ("ip", "ssh", "ssh-keygen", "nsenter") if shutil.which(tool) is None]
    if not Path(SSHD).exists():
        missing.append(SSHD)
    if os.geteuid() != 0:
        missing.append("root (network namespaces need CAP_SYS_ADMIN)")
    return missing


@dataclass(frozen=True)
class SshIdentity:
    """The controller's ssh key pair that every host accepts."""

    private_key: Path
    public_key: Path

    @classmethod
    def generate(cls, directory: Path) -> SshIdentity:
        """Create an ed25519 key pair (no passphrase) in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = directory / "id_ed25519"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gapseal-tests", "-f", str(key)])
        return cls(key, key.with_suffix(".pub"))


@dataclass(eq=False)  # identity: a host is itself, usable as a dict key
class NamespaceHost:
    """One isolated host: a network namespace with a veth link to the controller and its own sshd."""

    index: int
    workdir: Path
    identity: SshIdentity
    token: str
    extra_path: Sequence[Path] = ()
    own_mounts: bool = False
    """Start sshd in its own mount + UTS namespace with cgroups visible (what podman needs, see TESTING.md)."""
    env: Mapping[str, str] = field(default_factory=dict)
    sshd_pid: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.index <= 254:
            raise ValueError(f"host index {self.index} outside 1..254")

    # -- names and addresses -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The inventory name (``hostN``)."""
        return f"host{self.index}"

    @property
    def netns(self) -> str:
        """The network namespace's name (unique per test run)."""
        return f"gs{self.token}-{self.index}"

    @property
    def address(self) -> str:
        """The host's own address (inside its namespace)."""
        return f"{SUBNET_PREFIX}.{self.index}.2"

    @property
    def gateway(self) -> str:
        """The controller side of the veth link."""
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def _veth_root(self) -> str:
        return f"gs{self.token}{self.index}r"[:15]

    @property
    def _veth_host(self) -> str:
        return f"gs{self.token}{self.index}h"[:15]

    @property
    def dir(self) -> Path:
        """This host's private directory (sshd config, host key, pid file, log)."""
        return self.workdir / self.name

    @property
    def sshd_log(self) -> Path:
        """sshd's log file (``-E``)."""
        return self.dir / "sshd.log"

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def create_network(self) -> None:
        """Create the namespace and its veth link; no default route, so nothing leaves but to the controller."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "link", "add", self._veth_root, "type", "veth", "peer", "name", self._veth_host])
        _run(["ip", "link", "set", self._veth_host, "netns", self.netns])
        _run(["ip", "addr", "add", f"{self.gateway}/30", "dev", self._veth_root])
        _run(["ip", "link", "set", self._veth_root, "up"])
        _run(["ip", "-n", self.netns, "addr", "add", f"{self.address}/30", "dev", self._veth_host])
        _run(["ip", "-n", self.netns, "link", "set", self._veth_host, "up"])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        # A new namespace may copy the machine's forwarding settings (net.core.devconf_inherit_init_net): on a CI
        # machine that forwards (docker), every host would start out leaky for EGRESS-012. Hosts start not forwarding.
        for key in ("net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"):
            _run(["ip", "netns", "exec", self.netns, "sysctl", "-q", "-w", key], check=False)

    def _write_sshd_config(self) -> Path:
        host_key = self.dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
        authorized = self.dir / "authorized_keys"
        authorized.write_text(self.identity.public_key.read_text())
        path = ":".join([*(str(p) for p in self.extra_path), DEFAULT_PATH])
        setenv = " ".join([f"PATH={path}", *(f"{k}={v}" for k, v in self.env.items())])
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:22",
                    f"HostKey {host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "MaxSessions 64",
                    "MaxStartups 64:30:128",
                    f"Subsystem sftp {SFTP_SERVER}",
                    f"SetEnv {setenv}",
                    "",
                ]
            )
        )
        return config

    def start_sshd(self) -> None:
        """Start this host's sshd inside its namespace and wait until it accepts connections."""
        config = self._write_sshd_config()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        sshd = [SSHD, "-f", str(config), "-E", str(self.sshd_log)]
        if self.own_mounts:
            cg = self.dir / "cg"
            cg.mkdir(exist_ok=True)
            script = (
                f"mount --make-rprivate / && mount --rbind /sys/fs/cgroup {cg} && mount -t sysfs sysfs /sys && "
                f"mount --rbind {cg} /sys/fs/cgroup && umount -l {cg} && hostname {self.name} && exec " + " ".join(sshd)
            )
            argv = ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount", "--uts", "sh", "-c", script]
        else:
            argv = ["ip", "netns", "exec", self.netns, *sshd]
        _run(argv)  # sshd daemonizes; the pid file names the listener
        pidfile = self.dir / "sshd.pid"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip() and self.port_open(22):
                self.sshd_pid = int(pidfile.read_text().strip())
                return
            time.sleep(0.05)
        log = self.sshd_log.read_text() if self.sshd_log.exists() else ""
        raise HostSetupError(f"sshd of {self.name} did not come up on {self.address}:22: {log.strip()}")

    def stop_sshd(self) -> None:
        """Stop sshd (by its PID) and every session it started; the host becomes unreachable (connection refused)."""
        self.kill_namespace_processes()
        self.sshd_pid = None

    def port_open(self, port: int, timeout: float = 0.5) -> bool:
        """Whether the host accepts TCP connections on ``port`` (a connect to this host's own address only)."""
        try:
            with socket.create_connection((self.address, port), timeout=timeout):
                return True
        except OSError:
            return False

    def namespace_pids(self) -> list[int]:
        """PIDs of every process living in this host's network namespace."""
        proc = _run(["ip", "netns", "pids", self.netns], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def kill_namespace_processes(self) -> None:
        """SIGKILL every process in the namespace (sshd, its sessions, anything a test left running), by PID."""
        for _ in range(5):
            pids = self.namespace_pids()
            if self.sshd_pid and self.sshd_pid not in pids:
                pids.append(self.sshd_pid)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
            self.sshd_pid = None

    def destroy(self) -> None:
        """Kill the namespace's processes and delete the namespace and its link; safe to call twice."""
        self.kill_namespace_processes()
        _run(["ip", "link", "del", self._veth_root], check=False)
        _run(["ip", "netns", "del", self.netns], check=False)

    # -- using the host ------------------------------------------------------------------------------------------
    def exec(
        self, argv: Sequence[str], *, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host's network namespace (controller filesystem and user), like a local shell."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise HostSetupError(f"{self.name}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def exec_in_sessions(
        self, argv: Sequence[str], *, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the mount and network namespaces sshd's sessions see (e.g. to mount a small disk there).

        ``ip netns exec`` gives sshd a mount namespace of its own, so a mount made from the controller afterwards is
        not seen by the host's sessions; this enters sshd's namespaces instead.
        """
        if self.sshd_pid is None:
            raise HostSetupError(f"{self.name}: sshd is not running")
        proc = subprocess.run(
            ["nsenter", "-t", str(self.sshd_pid), "-m", "-n", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise HostSetupError(f"{self.name}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def ssh_command(self, argv: Sequence[str], control_dir: Path | None = None) -> list[str]:
        """The ``ssh`` argument list that runs ``argv`` on this host as root with the test identity."""
        return ["ssh", *self.ssh_options(control_dir), f"root@{self.address}", "--", shlex.join(argv)]

    def ssh_options(self, control_dir: Path | None = None) -> list[str]:
        """The ``ssh`` options of ``ssh_command`` (the test identity, no host-key prompts), e.g. for ``rsync -e``."""
        opts = [
            "-i",
            str(self.identity.private_key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
        ]
        if control_dir is not None:
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C", "-o", "ControlPersist=30"]
        return opts

    def ssh(
        self, argv: Sequence[str], *, timeout: float = 30, control_dir: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on the host over ssh (what a remote operator would do)."""
        return subprocess.run(
            self.ssh_command(argv, control_dir), capture_output=True, text=True, timeout=timeout, check=False
        )

    def inventory_vars(self) -> dict[str, Any]:
        """Ansible connection variables for this host."""
        return {
            "ansible_host": self.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.identity.private_key),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        }


def close_control_masters(control_dir: Path) -> None:
    """Close every ssh ControlMaster whose socket lives in ``control_dir`` (``ssh -O exit``), then remove them."""
    if not control_dir.is_dir():
        return
    for sock in control_dir.iterdir():
        if sock.is_socket():
            _run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "placeholder"], check=False, timeout=10)
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()


H = TypeVar("H", bound="NamespaceHost")


class Fleet(Generic[H]):
    """Hosts sharing one controller identity; a context manager that always tears down (namespace or systemd)."""

    def __init__(
        self,
        workdir: Path,
        *,
        token: str | None = None,
        what: str = "namespace hosts",
        missing: Callable[[], list[str]] = requirements_missing,
    ) -> None:
        missing_now = missing()
        if missing_now:
            raise HostSetupError(f"cannot run {what} here, missing: {', '.join(missing_now)}")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = token or secrets.token_hex(2)
        self.identity = SshIdentity.generate(workdir / "controller-key")
        self.control_dirs: list[Path] = []
        self.hosts: dict[int, H] = {}

    def control_dir(self, name: str = "cp") -> Path:
        """A short directory for ssh ControlPath sockets, closed at teardown."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.control_dirs.append(path)
        return path

    def inventory(
        self,
        hosts: Sequence[H] | None = None,
        host_vars: Mapping[str, Mapping[str, Any]] | None = None,
        group_vars: Mapping[str, Any] | None = None,
        group: str = "gapseal",
    ) -> dict[str, Any]:
        """An Ansible YAML inventory (as a dict) with ``hosts`` in one group."""
        chosen = list(hosts) if hosts is not None else list(self.hosts.values())
        per_host = {h.name: {**h.inventory_vars(), **dict((host_vars or {}).get(h.name, {}))} for h in chosen}
        return {"all": {"children": {group: {"hosts": per_host, "vars": dict(group_vars or {})}}}}

    def teardown(self) -> None:
        """Close ControlMasters, destroy every host (its processes by PID, its namespace), even if one fails."""
        for d in self.control_dirs:
            close_control_masters(d)
        errors: list[str] = []
        for host in self.hosts.values():
            try:
                host.destroy()
            except Exception as e:  # noqa: BLE001 - tear down every host even if one fails
                errors.append(f"{host.name}: {e}")
        self.hosts.clear()
        if errors:
            raise HostSetupError("teardown incomplete: " + "; ".join(errors))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()

    def __iter__(self) -> Iterator[H]:
        return iter(self.hosts.values())


class HostFleet(Fleet["NamespaceHost"]):
    """A set of namespace hosts sharing one controller identity; a context manager that always tears down."""

    def add(
        self,
        index: int,
        *,
        extra_path: Sequence[Path] = (),
        start_sshd: bool = True,
        own_mounts: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> NamespaceHost:
        """Create host ``index`` (address 10.231.index.2) and start its sshd unless told not to."""
        if index in self.hosts:
            raise HostSetupError(f"host index {index} already in this fleet")
        host = NamespaceHost(
            index,
            self.workdir,
            self.identity,
            self.token,
            extra_path=tuple(extra_path),
            own_mounts=own_mounts,
            env=dict(env or {}),
        )
        self.hosts[index] = host  # registered first, so a half-made host is torn down too
        host.create_network()
        if start_sshd:
            host.start_sshd()
        return host
