"""Storage behind model, data and install paths, and every mount below them: which mount, local or remote, encrypted.

Mounts come from ``/proc/self/mountinfo`` (proc(5)); block devices from ``lsblk -J``, whose tree nests each device
under the device it is built on (disk → part → crypt → lvm), so walking from a mounted device up to the tree's root
gives its chain, and a ``crypt`` node or a ``crypto_LUKS`` member in that chain means dm-crypt/LUKS encryption.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from gapseal.audit.collectors._common import RawStore, Trace
from gapseal.audit.facts import BlockDevice, Encryption, Mount, PathStorage, StorageFacts, StorageKind

NETWORK_FS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
    "afs",
    "ncpfs",
    "coda",
    "lustre",
    "gpfs",
    "beegfs",
    "ocfs2",
    "gfs2",
    "davfs",
    "sshfs",
    "orangefs",
    "pvfs2",
    "virtiofs",
}
VIRTUAL_FS = {
    "proc",
    "sysfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "fusectl",
    "efivarfs",
    "nsfs",
    "ramfs",
    "rpc_pipefs",
    "selinuxfs",
    "squashfs",
    "rootfs",
}
LSBLK_COLUMNS = "NAME,KNAME,MAJ:MIN,TYPE,FSTYPE,MOUNTPOINTS,PKNAME"
_OCTAL = re.compile(r"\\([0-7]{3})")

Role = Literal["model", "data", "install"]


def _unescape(text: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def classify(fstype: str, source: str) -> StorageKind:
    """Classify a file system by type (and source for block devices)."""
    base = fstype.split(".", 1)[0]
    if base in {"fuse", "fuseblk"}:
        return "fuse"
    if base in NETWORK_FS:
        return "network"
    if base == "overlay":
        return "overlay"
    if base in VIRTUAL_FS:
        return "virtual"
    if source.startswith("/dev/"):
        return "local_block"
    return "unknown"


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse ``/proc/<pid>/mountinfo`` lines (optional fields up to the ``-`` separator)."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if "-" not in parts or len(parts) < 7:
            continue
        sep = parts.index("-")
        if len(parts) < sep + 3:
            continue
        fstype = parts[sep + 1]
        source = _unescape(parts[sep + 2])
        super_opts = parts[sep + 3].split(",") if len(parts) > sep + 3 else []
        kind = classify(fstype, source)
        mounts.append(
            Mount(
                mount_id=int(parts[0]),
                parent_id=int(parts[1]),
                major_minor=parts[2],
                root=_unescape(parts[3]),
                mount_point=_unescape(parts[4]),
                options=parts[5].split(","),
                fstype=fstype,
                source=source,
                super_options=super_opts,
                kind=kind,
                remote=kind in {"network", "fuse"},
            )
        )
    return mounts


def parse_lsblk(document: Any) -> list[BlockDevice]:
    """Flatten an ``lsblk -J`` tree; every node gets its chain down to the disk and an ``encrypted`` flag."""
    if not isinstance(document, dict) or not isinstance(document.get("blockdevices"), list):
        raise ValueError('lsblk -J output has no "blockdevices" array')
    out: list[BlockDevice] = []

    def walk(node: dict[str, Any], parents: list[dict[str, Any]]) -> None:
        chain_nodes = [node, *reversed(parents)]
        mps = node.get("mountpoints")
        if mps is None:
            mps = [node.get("mountpoint")]
        encrypted = any(
            str(n.get("type", "")) == "crypt" or str(n.get("fstype") or "") == "crypto_LUKS" for n in chain_nodes
        )
        out.append(
            BlockDevice(
                name=str(node.get("name", "")),
                kname=node.get("kname"),
                major_minor=node.get("maj:min"),
                type=str(node.get("type", "")),
                fstype=node.get("fstype"),
                mountpoints=[m for m in mps if m],
                chain=[str(n.get("name", "")) for n in chain_nodes],
                encrypted=encrypted,
            )
        )
        for child in node.get("children", []) or []:
            if isinstance(child, dict):
                walk(child, [*parents, node])

    for dev in document["blockdevices"]:
        if isinstance(dev, dict):
            walk(dev, [])
    return out


def mount_for(path: Path, mounts: list[Mount]) -> Mount | None:
    """Return the mount holding ``path``: longest mount point prefix, the last of equal ones (it shadows)."""
    best: Mount | None = None
    text = str(path)
    for m in mounts:
        mp = m.mount_point
        covers = text == mp or text.startswith(mp.rstrip("/") + "/") or mp == "/"
        if covers and (best is None or len(mp) >= len(best.mount_point)):
            best = m
    return best


def mounts_below(path: Path, mounts: list[Mount]) -> list[str]:
    """Mount points strictly below ``path``, each once, in order."""
    prefix = str(path).rstrip("/") + "/"
    return sorted({m.mount_point for m in mounts if m.mount_point.startswith(prefix)})


def device_for(mount: Mount, devices: list[BlockDevice]) -> BlockDevice | None:
    """Return the block device behind a mount: by ``major:minor``, else by the source's device name."""
    for d in devices:
        if d.major_minor and d.major_minor == mount.major_minor:
            return d
    if mount.source.startswith("/dev/"):
        real = os.path.basename(mount.source)
        for d in devices:
            if mount.source == d.name or real in {d.name, d.kname, os.path.basename(d.name)}:
                return d
    if mount.root == "/":  # btrfs subvolumes and other anonymous devices: lsblk knows where it mounted them
        for d in devices:
            if mount.mount_point in d.mountpoints:
                return d
    return None


def path_storage(
    path: Path, role: Role, mounts: list[Mount], devices: list[BlockDevice] | None, *, exists: bool
) -> PathStorage:
    """Describe the storage behind ``path`` (``devices`` None: lsblk unavailable)."""
    m = mount_for(path, mounts)
    if m is None:
        return PathStorage(path=str(path), role=role, exists=exists, reason="no mount covers this path")
    encryption: Encryption = "unknown"
    chain: list[str] = []
    reason = None
    if m.kind == "virtual":
        encryption = "not_applicable"
    elif m.kind in {"network", "fuse"}:
        reason = f"{m.fstype} from {m.source}: remote storage, encryption at rest not visible from this host"
    elif devices is None:
        reason = "lsblk could not run: block device chain unknown"
    else:
        dev = device_for(m, devices)
        if dev is None:
            reason = f"no block device {m.major_minor} ({m.source}) in lsblk output"
        else:
            chain = dev.chain
            encryption = "encrypted" if dev.encrypted else "not_encrypted"
    return PathStorage(
        path=str(path),
        role=role,
        exists=exists,
        mount_point=m.mount_point,
        fstype=m.fstype,
        source=m.source,
        kind=m.kind,
        remote=m.remote,
        encryption=encryption,
        device_chain=chain,
        reason=reason,
    )


def collect_storage(store: RawStore, paths: list[tuple[Path, Role]], proc: Path = Path("/proc")) -> StorageFacts:
    """Collect mounts and block devices, and the storage of each ``(path, role)``."""
    trace = Trace(store)
    text = trace.read_text(proc / "self" / "mountinfo")
    if text is None:
        return StorageFacts(status="unknown", reason=f"{proc}/self/mountinfo unreadable", sources=trace.sources)
    mounts = parse_mountinfo(text)
    out = trace.run(["lsblk", "-J", "-o", LSBLK_COLUMNS])
    devices: list[BlockDevice] | None = None
    if out.ok:
        try:
            devices = parse_lsblk(json.loads(out.stdout))
        except ValueError:
            devices = None
    results = []
    for p, role in paths:
        exists = p.exists()
        real = p.resolve() if exists else p
        results.append(path_storage(real, role, mounts, devices, exists=exists).model_copy(update={"path": str(p)}))
        # A mount below the path holds part of it too (a model's shards on another disk): each must comply as well.
        for mp in mounts_below(real, mounts):
            below = path_storage(Path(mp), role, mounts, devices, exists=True)
            results.append(below.model_copy(update={"below": str(p)}))
    return StorageFacts(
        status="ok",
        reason=None if devices is not None else f"lsblk: {out.error or 'unparseable output'}",
        sources=trace.sources,
        mounts=mounts,
        block_devices=devices or [],
        block_devices_status="ok" if devices is not None else "unknown",
        paths=results,
    )
