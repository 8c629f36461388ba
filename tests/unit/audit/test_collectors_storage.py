"""Storage facts: mounts behind paths, local vs remote, and dm-crypt/LUKS in the device chain.

NFS, CIFS, FUSE and LUKS cannot be staged on the test machine, so the ``test_recorded_*`` tests parse outputs
recorded on real machines and published in public repositories (tests/fixtures/audit/README.md names each source).
The ``test_live_*`` tests run the collector on this machine's own /proc/self/mountinfo and lsblk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors.storage import (
    classify,
    collect_storage,
    device_for,
    mount_for,
    parse_lsblk,
    parse_mountinfo,
    path_storage,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "audit"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


# ------------------------------------------------------------------------------------------------ recorded outputs


def test_recorded_util_linux_mountinfo_classifies_cifs_fuse_and_local() -> None:
    """util-linux's findmnt test input (a real Fedora desktop): CIFS share, gvfs FUSE mount, LVM home, escapes."""
    mounts = parse_mountinfo(fixture_text("mountinfo-util-linux-findmnt.txt"))
    assert len(mounts) == 33
    by_point = {m.mount_point: m for m in mounts}
    cifs = by_point["/mnt/sounds"]
    assert (cifs.fstype, cifs.source, cifs.kind, cifs.remote) == ("cifs", "//foo.home/bar/", "network", True)
    assert "addr=192.168.111.1" in cifs.super_options
    gvfs = by_point["/home/kzak/.gvfs"]
    assert (gvfs.fstype, gvfs.kind, gvfs.remote) == ("fuse.gvfs-fuse-daemon", "fuse", True)
    home = by_point["/home/kzak"]
    assert (home.major_minor, home.source, home.kind, home.remote) == (
        "253:0",
        "/dev/mapper/kzak-home",
        "local_block",
        False,
    )
    assert by_point["/"].kind == "local_block"
    assert by_point["/proc"].kind == "virtual"
    assert "/mnt/foo (deleted)" in by_point  # \040 decoded
    assert by_point["/mnt/foo (deleted)"].kind == "unknown"  # type "bar" from source "/fooooo": not claimed local


def test_recorded_util_linux_paths_resolve_to_the_right_mount() -> None:
    """A model under the CIFS share is remote with unknown encryption; one in the LVM home has no lsblk data."""
    mounts = parse_mountinfo(fixture_text("mountinfo-util-linux-findmnt.txt"))
    remote = path_storage(Path("/mnt/sounds/models/llama.gguf"), "model", mounts, [], exists=False)
    assert (remote.mount_point, remote.kind, remote.remote, remote.encryption) == (
        "/mnt/sounds", "network", True, "unknown",
    )  # fmt: skip
    assert remote.reason == "cifs from //foo.home/bar/: remote storage, encryption at rest not visible from this host"
    gvfs = path_storage(Path("/home/kzak/.gvfs/share/data"), "data", mounts, [], exists=False)
    assert (gvfs.mount_point, gvfs.kind, gvfs.remote) == ("/home/kzak/.gvfs", "fuse", True)
    home = path_storage(Path("/home/kzak/models"), "model", mounts, [], exists=False)
    assert (home.mount_point, home.kind, home.encryption) == ("/home/kzak", "local_block", "unknown")
    assert home.reason == "no block device 253:0 (/dev/mapper/kzak-home) in lsblk output"
    no_lsblk = path_storage(Path("/home/kzak/models"), "model", mounts, None, exists=False)
    assert no_lsblk.encryption == "unknown"
    assert no_lsblk.reason == "lsblk could not run: block device chain unknown"
    boot = path_storage(Path("/boot/vmlinuz"), "data", mounts, [], exists=False)
    assert boot.mount_point == "/boot"


def test_recorded_k8s_pod_mountinfo_with_nfs4_volume() -> None:
    """A Kubernetes pod's mountinfo: an NFSv4 PersistentVolume, an overlay root and bind mounts from LVM."""
    mounts = parse_mountinfo(fixture_text("mountinfo-k8s-nfs4.txt"))
    nfs = path_storage(Path("/kaiwudb/certs/ca.crt"), "data", mounts, [], exists=False)
    assert (nfs.fstype, nfs.kind, nfs.remote, nfs.encryption) == ("nfs4", "network", True, "unknown")
    assert nfs.source == "20.20.20.43:/data/k8s/nfs_share/pvc-2108ee90-b185-43f7-a95c-21d9a4d84a67"
    root = path_storage(Path("/models/x"), "model", mounts, [], exists=False)
    assert (root.mount_point, root.kind, root.remote) == ("/", "overlay", False)
    opt = next(m for m in mounts if m.mount_point == "/opt")
    assert (opt.root, opt.kind, opt.major_minor) == (
        "/var/lib/kubelet/pods/f2c26abd-d7b4-4c07-9067-7fc2b72f89cb/volumes/kubernetes.io~configmap/server-entrypoint",
        "local_block",
        "253:0",
    )
    assert "ro" in opt.options


def test_recorded_lsblk_luks_lvm_chain() -> None:
    """``lsblk -pJ`` of a laptop with LUKS under LVM: the root LV's chain passes through the crypt device."""
    devices = parse_lsblk(json.loads(fixture_text("lsblk-luks-lvm.json")))
    by_name = {d.name: d for d in devices}
    root = by_name["/dev/mapper/kilgore--trout--vg-root"]
    assert root.chain == [
        "/dev/mapper/kilgore--trout--vg-root",
        "/dev/mapper/nvme0n1p3_crypt",
        "/dev/nvme0n1p3",
        "/dev/nvme0n1",
    ]
    assert root.encrypted is True
    assert root.mountpoints == ["/"]  # util-linux 2.36: one "mountpoint" value
    assert by_name["/dev/mapper/kilgore--trout--vg-swap_1"].encrypted is True
    assert by_name["/dev/nvme0n1p2"].encrypted is False
    assert by_name["/dev/nvme0n1p2"].mountpoints == ["/boot"]
    assert by_name["/dev/nvme0n1"].encrypted is False


def test_recorded_lsblk_resolves_mounts_by_device_number_and_path() -> None:
    """Mounts of the LUKS laptop's layout (device numbers from the same lsblk output) map to the crypt chain."""
    devices = parse_lsblk(json.loads(fixture_text("lsblk-luks-lvm.json")))
    lines = (
        "25 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/kilgore--trout--vg-root rw\n"
        "31 25 259:2 / /boot rw,relatime shared:2 - ext2 /dev/nvme0n1p2 rw\n"
    )  # the mount table this lsblk implies (source and device numbers copied from the recorded output)
    mounts = parse_mountinfo(lines)
    root = path_storage(Path("/srv/models/m.gguf"), "model", mounts, devices, exists=False)
    assert root.encryption == "encrypted"
    assert root.device_chain[1] == "/dev/mapper/nvme0n1p3_crypt"
    boot = path_storage(Path("/boot/x"), "data", mounts, devices, exists=False)
    assert (boot.encryption, boot.device_chain) == ("not_encrypted", ["/dev/nvme0n1p2", "/dev/nvme0n1"])
    anon = parse_mountinfo("40 25 0:45 / / rw - btrfs /dev/mapper/kilgore--trout--vg-root rw\n")
    dev = device_for(anon[0], devices)
    assert dev is not None
    assert dev.name == "/dev/mapper/kilgore--trout--vg-root"  # btrfs' anonymous 0:45 matched by source path


def test_recorded_lsblk_of_this_machine_mountpoints_arrays() -> None:
    """util-linux 2.38 (Debian 12) prints ``mountpoints`` arrays with null for unmounted devices."""
    devices = parse_lsblk(json.loads(fixture_text("lsblk-this-machine-debian12.json")))
    assert devices
    assert all(None not in d.mountpoints for d in devices)
    assert not any(d.encrypted for d in devices)


@pytest.mark.parametrize(
    ("document", "message"),
    [({}, '"blockdevices"'), ({"blockdevices": {}}, '"blockdevices"'), ([], '"blockdevices"')],
)
def test_lsblk_rejects_unexpected_documents(document: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_lsblk(document)


@pytest.mark.parametrize(
    ("fstype", "source", "kind"),
    [
        ("nfs", "h:/x", "network"),
        ("nfs4", "h:/x", "network"),
        ("cifs", "//h/s", "network"),
        ("smb3", "//h/s", "network"),
        ("ceph", "mon:/", "network"),
        ("9p", "host9p", "network"),
        ("fuse.sshfs", "u@h:/", "fuse"),
        ("fuse.s3fs", "bucket", "fuse"),
        ("fuseblk", "/dev/sdb1", "fuse"),
        ("overlay", "overlay", "overlay"),
        ("tmpfs", "nfs:/looks-remote", "virtual"),
        ("ext4", "/dev/sda1", "local_block"),
        ("xfs", "/dev/mapper/vg-lv", "local_block"),
        ("zfs", "tank/data", "unknown"),
    ],
)
def test_classify(fstype: str, source: str, kind: str) -> None:
    assert classify(fstype, source) == kind


def test_mount_for_prefers_the_longest_and_latest_mount_point() -> None:
    mounts = parse_mountinfo(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "2 1 8:2 / /srv rw - ext4 /dev/sda2 rw\n"
        "3 1 0:50 / /srv rw - nfs4 h:/srv rw\n"  # mounted over /srv: shadows it
        "4 1 8:3 / /srvdata rw - ext4 /dev/sda3 rw\n"
    )
    assert mount_for(Path("/srv/m"), mounts).mount_id == 3  # type: ignore[union-attr]
    assert mount_for(Path("/srvdata/m"), mounts).mount_id == 4  # type: ignore[union-attr]
    assert mount_for(Path("/srvx"), mounts).mount_id == 1  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------------ live


def test_live_storage_of_this_machine(tmp_path: Path) -> None:
    """This machine's own mountinfo and lsblk: the temp dir is on a local block device or tmpfs, never remote."""
    facts = collect_storage(RawStore(), [(tmp_path, "data"), (Path("/nonexistent/models"), "model")])
    assert facts.status == "ok"
    assert facts.block_devices_status == "ok"
    assert facts.mounts
    data, model = facts.paths
    assert data.exists is True
    assert model.exists is False
    assert data.remote is False
    assert data.kind in {"local_block", "virtual", "overlay"}
    if data.kind == "local_block":
        assert data.encryption in {"encrypted", "not_encrypted"}
        assert data.device_chain
    argvs = [s.argv for s in facts.sources if s.kind == "command"]
    assert argvs == [["lsblk", "-J", "-o", "NAME,KNAME,MAJ:MIN,TYPE,FSTYPE,MOUNTPOINTS,PKNAME"]]
    assert any(s.path == "/proc/self/mountinfo" and s.stored for s in facts.sources)


def test_live_storage_unknown_without_mountinfo(tmp_path: Path) -> None:
    facts = collect_storage(RawStore(), [(tmp_path, "data")], proc=tmp_path / "no-proc")
    assert facts.status == "unknown"
    assert facts.reason == f"{tmp_path}/no-proc/self/mountinfo unreadable"
    assert facts.paths == []


def test_mounts_below_a_model_directory_are_each_checked() -> None:
    """A model directory on the encrypted root with one shard directory on the unencrypted /boot partition's device
    mounted below it: the mount below is reported on its own, not encrypted (recorded LUKS laptop layout)."""
    from gapseal.audit.collectors.storage import mounts_below

    devices = parse_lsblk(json.loads(fixture_text("lsblk-luks-lvm.json")))
    mounts = parse_mountinfo(
        "25 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/kilgore--trout--vg-root rw\n"
        "31 25 259:2 / /srv/models/big/shards rw,relatime shared:2 - ext2 /dev/nvme0n1p2 rw\n"
        "32 25 0:40 / /srv/models/big/cache rw - tmpfs tmpfs rw\n"
        "33 25 259:2 / /srv/models-other rw - ext2 /dev/nvme0n1p2 rw\n"
    )
    assert mounts_below(Path("/srv/models"), mounts) == ["/srv/models/big/cache", "/srv/models/big/shards"]
    assert mounts_below(Path("/srv/models/"), mounts) == ["/srv/models/big/cache", "/srv/models/big/shards"]
    shards = path_storage(Path("/srv/models/big/shards"), "model", mounts, devices, exists=True)
    assert (shards.mount_point, shards.encryption) == ("/srv/models/big/shards", "not_encrypted")
    cache = path_storage(Path("/srv/models/big/cache"), "model", mounts, devices, exists=True)
    assert cache.encryption == "not_applicable"
