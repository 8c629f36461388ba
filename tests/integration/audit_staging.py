"""Staging audited hosts by hand: a locked-down install under a host's prefix, and the ways to make it leaky.

Used by tests/integration/test_audit_*.py when a host is prepared without ``gapseal install``: the install record
(``installed.json`` in the installer's own format, ``gapseal.installer.record``) lists real files with their real
digests, the nftables ruleset is the egress role's shape (output policy drop, enclave allowed), journald keeps logs
persistently for a year, sshd takes keys only and forwards nothing (ACCESS-004). Every leak the leaky-host test adds
is one function here.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.hosts.netns import NamespaceHost

MODEL_FILES = {
    "config.json": b'{"model_type": "bert"}\n',
    "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
}
BUILD_FILES = {"bin/llama-server": b"#!/bin/sh\nexit 0\n"}


@dataclass
class StagedHost:
    """A namespace host with a gapseal install staged under ``root``."""

    host: NamespaceHost
    root: Path
    pids: list[int] = field(default_factory=list)

    def stop(self) -> None:
        """Kill the processes this staging started, by PID."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pids.clear()


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def nft_lockdown(host: NamespaceHost) -> str:
    """The egress lockdown ruleset: drop every outgoing packet except loopback and the host's own link."""
    return f"""flush ruleset
table inet gapseal {{
  chain output {{
    type filter hook output priority filter; policy drop;
    oif "lo" accept
    ct state established,related accept
    ip daddr {host.gateway.rsplit(".", 1)[0]}.0/30 accept
  }}
}}
"""


def stage_install(host: NamespaceHost, root: Path) -> StagedHost:
    """Stage a locked-down install of one model and one CPU build under ``root`` and lock the host's egress."""
    model_dir = root / "opt/gapseal/models/minilm"
    build_dir = root / "opt/gapseal/builds/llama/cpu"
    files = []
    for rel, data in MODEL_FILES.items():
        _write(model_dir / rel, data)
        files.append((model_dir / rel, data, "model/minilm"))
    for rel, data in BUILD_FILES.items():
        _write(build_dir / rel, data, 0o755)
        files.append((build_dir / rel, data, "build/llama/cpu"))
    record = {
        "kind": "gapseal.InstalledRecord",
        "version": 1,
        "root": str(root),
        "bundle": {"name": "demo", "version": "1.0.0", "manifest_digest": "sha256:" + "5e" * 32},
        "models": {"minilm": {"dir": str(model_dir)}},
        "variants": {"llama": {"backend": "cpu", "arch": "amd64", "dir": str(build_dir)}},
        "services": [],
        "files": sorted(
            (
                {"path": str(p), "digest": "sha256:" + hashlib.sha256(d).hexdigest(), "size": len(d), "component": c}
                for p, d, c in files
            ),
            key=lambda f: str(f["path"]),
        ),
    }
    _write(root / "var/lib/gapseal/installed.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    _write(
        root / "etc/ssh/sshd_config",
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"PermitEmptyPasswords no\nPubkeyAuthentication yes\nListenAddress {host.address}\n"
        "DisableForwarding yes\nPermitTunnel no\n",
    )
    _write(root / "etc/systemd/journald.conf", "[Journal]\nStorage=persistent\nMaxRetentionSec=1year\n")
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    _write(root / "etc/resolv.conf", "# no resolver: the enclave has none\n")
    _write(root / "etc/environment", "LANG=C.UTF-8\n")
    rules = root.parent / f"{host.name}-lockdown.nft"
    rules.write_text(nft_lockdown(host))
    host.exec(["nft", "-f", str(rules)], check=True)
    return StagedHost(host, root)


# ------------------------------------------------------------------------------------------------ the leaks


def leak_default_route(staged: StagedHost) -> None:
    """A default route via the controller side of the veth (a way off the host towards anywhere)."""
    staged.host.exec(["ip", "route", "add", "default", "via", staged.host.gateway], check=True)


def leak_proxy_variable(staged: StagedHost) -> None:
    """A proxy variable in the host's environment file."""
    env = staged.root / "etc/environment"
    env.write_text(env.read_text() + f"https_proxy=http://{staged.host.gateway}:3128\n")


def _spawn_in_netns(staged: StagedHost, argv: list[str], env: dict[str, str]) -> int:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", staged.host.netns, *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staged.pids.append(proc.pid)
    return proc.pid


def leak_wildcard_listener(staged: StagedHost, port: int = 18080) -> None:
    """A TCP listener bound to 0.0.0.0 inside the host's namespace."""
    code = (
        "import socket,time\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(600)\n"
    )
    _spawn_in_netns(staged, ["/usr/bin/python3", "-c", code], {"PATH": "/usr/bin:/bin"})
    for _ in range(100):
        if staged.host.exec(["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
            return
        subprocess.run(["sleep", "0.05"], check=False)
    raise RuntimeError(f"listener on 0.0.0.0:{port} did not come up in {staged.host.name}")


def leak_inference_without_switches(staged: StagedHost) -> None:
    """An inference process (llama.cpp server, marked as gapseal's units mark it) whose env lacks LLAMA_OFFLINE."""
    server = staged.root / "run/llama-server-run"
    _write(server, "#!/bin/sh\nexec sleep 600\n", 0o755)
    _spawn_in_netns(staged, [str(server)], {"PATH": "/usr/bin:/bin", "GAPSEAL_SERVICE": "llama.cpp"})


def leak_altered_file(staged: StagedHost) -> None:
    """An installed file changed after install."""
    p = staged.root / "opt/gapseal/models/minilm/config.json"
    p.write_bytes(b'{"model_type": "bert", "tampered": true}\n')
