"""``pack_layout``: deterministic tars, split sets cut on blob boundaries, and every way a split set goes wrong."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapseal.bundler import tarformat
from gapseal.bundler.archive import (
    PARTS_LIST_NAME,
    PartsList,
    pack_layout,
    parse_size,
    part_path,
)
from gapseal.bundler.inventory import LayoutEntry, read_layout_archive, read_layout_dir
from gapseal.canonical import canonical_model_json
from gapseal.errors import ArchiveError, InputError, OutputError, UsageError
from gapseal.progress import Progress

MTIME = 1_700_000_000
PART = 64 * 1024


def make_layout(root: Path, sizes: list[int], *, seed: int = 1) -> Path:
    """An OCI-layout-shaped directory: oci-layout, index.json, and blobs named by their real sha256."""
    rng = random.Random(seed)
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    digests = []
    for size in sizes:
        data = rng.randbytes(size)
        digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / "sha256" / digest).write_bytes(data)
        digests.append(digest)
    index = {"schemaVersion": 2, "manifests": [{"digest": f"sha256:{d}"} for d in sorted(digests)]}
    (root / "index.json").write_bytes(json.dumps(index).encode())
    return root


def snapshot(entries: Mapping[str, LayoutEntry]) -> dict[str, tuple[int, str]]:
    return {p: (e.size, e.sha256) for p, e in entries.items()}


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    # 3000 B, 20 KiB, 100 KiB (fits no 64 KiB part: ranges), 40 KiB, 1 B
    return make_layout(tmp_path / "layout", [3000, 20 * 1024, 100 * 1024, 40 * 1024, 1])


@pytest.fixture
def split(tmp_path: Path, layout: Path) -> list[Path]:
    (tmp_path / "out").mkdir()
    result = pack_layout(layout, tmp_path / "out" / "b.tar", mtime=MTIME, part_size=PART)
    return [p.path for p in result.parts]


# ---------------------------------------------------------------------------------------------------------------
# Single tar
# ---------------------------------------------------------------------------------------------------------------


def test_pack_round_trips_through_the_strict_reader(tmp_path: Path, layout: Path) -> None:
    result = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME)
    assert result.out == tmp_path / "b.tar"
    assert result.parts[0].size == (tmp_path / "b.tar").stat().st_size == result.total_bytes
    inv = read_layout_archive(tmp_path / "b.tar")
    assert snapshot(inv.entries) == snapshot(read_layout_dir(layout).entries)
    assert inv.directories == {"blobs", "blobs/sha256"}
    assert inv.mtime == MTIME
    assert inv.parts is None


def test_pack_is_deterministic_whatever_the_files_metadata(tmp_path: Path, layout: Path) -> None:
    first = pack_layout(layout, tmp_path / "a.tar", mtime=MTIME).out.read_bytes()
    for i, path in enumerate(sorted(layout.rglob("*"))):
        os.utime(path, (1_000_000 + i, 2_000_000 + i))
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    copy = tmp_path / "copy"
    shutil.copytree(layout, copy)  # other inode order, other times
    second = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out.read_bytes()
    third = pack_layout(copy, tmp_path / "c.tar", mtime=MTIME).out.read_bytes()
    assert first == second == third
    assert pack_layout(layout, tmp_path / "d.tar", mtime=MTIME + 1).out.read_bytes() != first


def test_gnu_tar_lists_sorted_members_with_fixed_owner_and_mode(tmp_path: Path, layout: Path) -> None:
    out = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    verbose = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", str(out)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    names = [line.split()[-1] for line in verbose]
    assert names == sorted(names, key=lambda n: n.encode())
    assert names[:2] == ["blobs/", "blobs/sha256/"]
    assert names[-2:] == ["index.json", "oci-layout"]
    for line in verbose:
        perms, owner = line.split()[:2]
        assert owner == "0/0"
        assert perms in ("drwxr-xr-x", "-rw-r--r--")


def test_skopeo_reads_the_pack_as_an_oci_archive(tmp_path: Path) -> None:
    """Interop: the transport tar is a plain OCI layout archive; the real skopeo reads and copies an image from it."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (scripts/system-deps.sh installs it)")
    root = tmp_path / "layout"
    (root / "blobs" / "sha256").mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / "sha256" / digest).write_bytes(data)
        return digest

    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{put(config)}",
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    manifest_digest = put(manifest)
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{manifest_digest}",
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    out = pack_layout(root, tmp_path / "b.tar", mtime=MTIME).out
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{out}:v1"], check=True, capture_output=True, timeout=60
    ).stdout
    assert json.loads(raw) == json.loads(manifest)
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci-archive:{out}:v1", f"oci:{tmp_path / 'copied'}:v1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (tmp_path / "copied" / "blobs" / "sha256" / manifest_digest).exists()


def test_pack_refuses_to_overwrite_unless_asked(tmp_path: Path, layout: Path) -> None:
    out = tmp_path / "b.tar"
    out.write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists"):
        pack_layout(layout, out, mtime=MTIME)
    assert out.read_bytes() == b"precious"
    pack_layout(layout, out, mtime=MTIME, overwrite=True)
    assert read_layout_archive(out).entries


def test_pack_checks_the_output_before_reading_the_layout(tmp_path: Path, layout: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        pack_layout(layout, tmp_path / "missing" / "b.tar", mtime=MTIME)
    with pytest.raises(UsageError, match="must end with .tar"):
        pack_layout(layout, tmp_path / "b.tgz", mtime=MTIME)
    with pytest.raises(UsageError, match="looks like a part of a split set"):
        pack_layout(layout, tmp_path / "b.part0001.tar", mtime=MTIME)


def test_pack_refuses_an_output_directory_it_cannot_write(tmp_path: Path, layout: Path) -> None:
    """Mode 0500 stops other users; root is stopped by the immutable attribute (chattr +i) instead."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    immutable = False
    try:
        if os.access(ro, os.W_OK) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(ro)], capture_output=True, check=False).returncode == 0
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a directory unwritable for this user here (root without chattr +i)")
        with pytest.raises(OutputError, match="not writable"):
            pack_layout(layout, ro / "b.tar", mtime=MTIME)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o700)


def test_pack_refuses_an_output_inside_the_layout(layout: Path) -> None:
    with pytest.raises(UsageError, match="inside the layout"):
        pack_layout(layout, layout / "blobs" / "b.tar", mtime=MTIME)
    assert not list(layout.rglob("*.tar"))


def test_pack_refuses_to_replace_a_directory_even_with_overwrite(tmp_path: Path, layout: Path) -> None:
    (tmp_path / "b.tar").mkdir()
    with pytest.raises(UsageError, match="not a regular file"):
        pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, overwrite=True)


def test_pack_refuses_a_symlink_in_the_layout(tmp_path: Path, layout: Path) -> None:
    (layout / "blobs" / "sha256" / "link").symlink_to("/etc/passwd")
    with pytest.raises(InputError, match="symbolic link") as exc:
        pack_layout(layout, tmp_path / "b.tar", mtime=MTIME)
    assert "link" in (exc.value.where or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]


def test_pack_refuses_a_fifo_and_unsafe_names(tmp_path: Path, layout: Path) -> None:
    os.mkfifo(layout / "pipe")
    with pytest.raises(InputError, match="special file"):
        pack_layout(layout, tmp_path / "b.tar", mtime=MTIME)
    (layout / "pipe").unlink()
    (layout / "a name").write_bytes(b"x")
    with pytest.raises(InputError, match="characters outside"):
        pack_layout(layout, tmp_path / "b.tar", mtime=MTIME)


def test_pack_leaves_no_temp_file_when_interrupted(tmp_path: Path, layout: Path) -> None:
    class Interrupt(Progress):
        def advance(self, task: int, amount: int) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, progress=Interrupt())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]


class Recorder(Progress):
    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.done = 0
        self.ended = 0

    def begin(self, label: str, total: int | None = None) -> int:
        self.totals.append(total)
        return len(self.totals)

    def advance(self, task: int, amount: int) -> None:
        self.done += amount

    def end(self, task: int) -> None:
        self.ended += 1


@pytest.mark.parametrize("part_size", [None, PART])
def test_pack_reports_every_byte_to_progress(tmp_path: Path, layout: Path, part_size: int | None) -> None:
    rec = Recorder()
    pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=part_size, progress=rec)
    total = sum(p.stat().st_size for p in layout.rglob("*") if p.is_file())
    assert rec.totals == [total]
    assert rec.done == total
    assert rec.ended == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4GiB", 4 * 1024**3),
        ("4 GiB", 4 * 1024**3),
        ("512mib", 512 * 1024**2),
        ("1KiB", 1024),
        ("2TiB", 2 * 1024**4),
        ("4GB", 4_000_000_000),
        ("700MB", 700_000_000),
        ("5KB", 5000),
        ("1TB", 10**12),
        ("1048576", 1048576),
        ("10B", 10),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "GiB", "4.5GiB", "-1", "4 GiBs", "4XB", "0x10"])
def test_parse_size_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(UsageError, match="cannot read size"):
        parse_size(text)


# ---------------------------------------------------------------------------------------------------------------
# Split sets
# ---------------------------------------------------------------------------------------------------------------


def test_split_parts_are_small_valid_tars_cut_on_blob_boundaries(split: list[Path], layout: Path) -> None:
    assert [p.name for p in split] == [f"b.part{n:04d}.tar" for n in range(1, len(split) + 1)]
    for part in split:
        assert part.stat().st_size <= PART
        with tarfile.open(part) as t:  # every part is a valid tar for other tools too
            t.getmembers()
    with tarfile.open(split[0]) as t:
        assert t.getnames() == [PARTS_LIST_NAME, "index.json", "oci-layout"]
    blob_members = []
    for part in split[1:]:
        with tarfile.open(part) as t:
            blob_members.append([n for n in t.getnames() if n.startswith("blobs/sha256/")])
    flat = [n for names in blob_members for n in names]
    whole = [n for n in flat if ".range" not in n]
    ranges = [n for n in flat if ".range" in n]
    big = next(p.name for p in (layout / "blobs" / "sha256").iterdir() if p.stat().st_size == 100 * 1024)
    assert ranges == [f"blobs/sha256/{big}.range{i:04d}" for i in range(1, len(ranges) + 1)]
    assert len(ranges) >= 2
    # every blob that fits in a part is whole, in exactly one part
    assert sorted(n.rsplit("/", 1)[1] for n in whole) == sorted(
        p.name for p in (layout / "blobs" / "sha256").iterdir() if p.name != big
    )


def test_split_set_reads_back_as_the_layout(split: list[Path], layout: Path) -> None:
    inv = read_layout_archive(split[0])
    assert snapshot(inv.entries) == snapshot(read_layout_dir(layout).entries)
    assert inv.parts is not None
    assert [p.path for p in inv.parts] == split
    assert PARTS_LIST_NAME not in inv.entries
    big = next(e for e in inv.entries.values() if e.size == 100 * 1024)
    assert big.content is not None
    assert hashlib.sha256(big.content).hexdigest() == big.sha256


def test_split_sidecars_check_with_sha256sum(tmp_path: Path, split: list[Path]) -> None:
    out = tmp_path / "out"
    check = subprocess.run(["sha256sum", "-c", "b.SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(split)
    listed = PartsList.model_validate_json((out / "b.parts.json").read_bytes())
    assert [(r.name, r.size) for r in listed.parts] == [(p.name, p.stat().st_size) for p in split]
    assert all(r.sha256 == hashlib.sha256(p.read_bytes()).hexdigest() for r, p in zip(listed.parts, split, strict=True))


def test_pack_result_as_dict_lists_every_part(tmp_path: Path, layout: Path) -> None:
    (tmp_path / "out").mkdir()
    result = pack_layout(layout, tmp_path / "out" / "b.tar", mtime=MTIME, part_size=PART)
    doc = result.as_dict()
    assert doc["out"] == str(tmp_path / "out" / "b.part0001.tar")
    parts = doc["parts"]
    assert isinstance(parts, list)
    assert [p["name"] for p in parts] == [p.path.name for p in result.parts]
    assert all(p["sha256"] == hashlib.sha256(Path(p["path"]).read_bytes()).hexdigest() for p in parts)
    assert doc["total_bytes"] == sum(p["size"] for p in parts)
    assert doc["sidecars"] == [str(tmp_path / "out" / "b.parts.json"), str(tmp_path / "out" / "b.SHA256SUMS")]


def test_split_is_deterministic(tmp_path: Path, layout: Path, split: list[Path]) -> None:
    (tmp_path / "again").mkdir()
    second = pack_layout(layout, tmp_path / "again" / "b.tar", mtime=MTIME, part_size=PART)
    assert [p.path.read_bytes() for p in second.parts] == [p.read_bytes() for p in split]


def test_split_refuses_existing_parts_and_overwrite_removes_stale_ones(tmp_path: Path, layout: Path) -> None:
    out = tmp_path / "out" / "b.tar"
    (tmp_path / "out").mkdir()
    part_path(out, 9).write_bytes(b"old")
    with pytest.raises(UsageError, match="already exists"):
        pack_layout(layout, out, mtime=MTIME, part_size=PART)
    result = pack_layout(layout, out, mtime=MTIME, part_size=PART, overwrite=True)
    assert len(result.parts) < 9
    assert not part_path(out, 9).exists()
    read_layout_archive(result.out)


def test_split_refuses_a_part_size_too_small(tmp_path: Path, layout: Path) -> None:
    with pytest.raises(UsageError, match="too small"):
        pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=4096)


def test_a_single_part_set_still_reads(tmp_path: Path, layout: Path) -> None:
    result = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=1024**3)
    assert len(result.parts) == 2  # part 1 is always the index part; all blobs fit in part 2
    assert snapshot(read_layout_archive(result.out).entries) == snapshot(read_layout_dir(layout).entries)


# -- tampering with a split set: each rejected naming the part file ------------------------------------------------


def rejected(first: Path, *fragments: str) -> str:
    with pytest.raises(ArchiveError) as exc:
        read_layout_archive(first)
    text = exc.value.diagnostics()
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_missing_part_is_named(split: list[Path]) -> None:
    split[2].unlink()
    rejected(split[0], "missing part 3", split[2].name)


def test_swapped_parts_are_named(split: list[Path]) -> None:
    a, b = split[1], split[2]
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    rejected(split[0], a.name)


def test_swapped_parts_of_equal_size_are_named_by_content(split: list[Path]) -> None:
    sizes = [p.stat().st_size for p in split]
    pair = next((i, j) for i in range(1, len(split)) for j in range(i + 1, len(split)) if sizes[i] == sizes[j])
    a, b = split[pair[0]], split[pair[1]]
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    rejected(split[0], a.name, "where the parts list expects", "swapped")


def test_truncated_part_is_named(split: list[Path]) -> None:
    data = split[3].read_bytes()
    split[3].write_bytes(data[: -tarformat.RECORD])
    rejected(split[0], split[3].name, "truncated")


def test_corrupted_part_is_named_with_its_member(split: list[Path]) -> None:
    data = bytearray(split[1].read_bytes())
    data[3 * tarformat.BLOCK + 10] ^= 0xFF  # inside the first member's data
    split[1].write_bytes(bytes(data))
    text = rejected(split[0], split[1].name, "is damaged", "does not match its digest")
    assert "blobs/sha256/" in text


def test_extra_part_beside_the_set_is_named(split: list[Path]) -> None:
    extra = part_path(split[0], len(split) + 1)
    shutil.copy(split[1], extra)
    rejected(split[0], extra.name, "lies beside a set")


def test_a_later_part_given_as_the_bundle_is_refused(split: list[Path]) -> None:
    with pytest.raises(ArchiveError, match="give the first part"):
        read_layout_archive(split[1])


def test_first_part_replaced_by_another_is_named(split: list[Path]) -> None:
    shutil.copy(split[1], split[0])
    rejected(split[0], split[0].name, f"does not start with {PARTS_LIST_NAME}")


def test_part_from_another_pack_is_named(tmp_path: Path, layout: Path, split: list[Path]) -> None:
    (tmp_path / "other").mkdir()
    other = pack_layout(layout, tmp_path / "other" / "b.tar", mtime=MTIME + 5, part_size=PART)
    shutil.copy(other.parts[2].path, split[2])
    rejected(split[0], split[2].name, "packed at another time")


def test_parts_list_damaged_is_named(split: list[Path]) -> None:
    doc = json.loads(_parts_list_bytes(split[0]))
    doc["parts"][1]["members"][0]["path"] = "clobs" + doc["parts"][1]["members"][0]["path"][5:]
    _replace_parts_list(split[0], canonical_model_json(PartsList.model_validate(doc)))
    rejected(split[0], split[0].name, "is damaged", "does not match its own digest")


def test_parts_list_not_in_canonical_form_is_refused(split: list[Path]) -> None:
    doc = json.loads(_parts_list_bytes(split[0]))
    assert doc["kind"] == "gapseal-parts"
    _replace_parts_list(split[0], json.dumps(doc, sort_keys=True, indent=1).encode())
    rejected(split[0], split[0].name, PARTS_LIST_NAME, "canonical form")


def test_parts_list_claiming_a_wrong_digest_names_the_part(split: list[Path]) -> None:
    """A forged but self-consistent list: the mismatch is reported at the part whose member disagrees."""
    doc = json.loads(_parts_list_bytes(split[0]))
    number, member = next(
        (n, m) for n, r in enumerate(doc["parts"]) if n >= 1 for m in r["members"] if m.get("sha256") is not None
    )
    member["sha256"] = "0" * 64
    _replace_parts_list(split[0], canonical_model_json(PartsList.model_validate(doc).sealed()))
    rejected(split[0], split[number].name, "does not match its digest in the parts list", member["path"])


# -- parts list version 2: a range has no digest of its own; its part's digest and its blob's name cover it ---------


def _big_blob(layout: Path) -> str:
    return next(p.name for p in (layout / "blobs" / "sha256").iterdir() if p.stat().st_size == 100 * 1024)


def test_ranges_of_a_blob_named_by_its_digest_carry_no_digest(tmp_path: Path, layout: Path, split: list[Path]) -> None:
    listed = PartsList.model_validate_json((tmp_path / "out" / "b.parts.json").read_bytes())
    assert listed.version == 2
    members = [m for r in listed.parts for m in r.members]
    ranges = [m for m in members if m.blob is not None]
    assert ranges
    assert all(m.sha256 is None and m.blob == f"blobs/sha256/{_big_blob(layout)}" for m in ranges)
    assert all(m.sha256 is not None for m in members if m.blob is None)
    blobs = [m for m in members if m.blob is None and m.path.startswith("blobs/")]
    assert blobs
    assert all(m.sha256 == m.path.rsplit("/", 1)[1] for m in blobs)


def _part_with_range(split: list[Path]) -> tuple[Path, str, int, int]:
    """(part, range member, data offset, size) of the first range in the set."""
    for part in split[1:]:
        with part.open("rb") as f:
            for m in tarformat.TarReader(f, str(part)).members():
                if ".range" in m.path:
                    return part, m.path, m.offset + tarformat.BLOCK, m.size
    raise AssertionError("no range in the set")


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_damaged_range_names_its_part_and_range(split: list[Path], where: str) -> None:
    part, member, offset, size = _part_with_range(split)
    data = bytearray(part.read_bytes())
    data[offset + (0 if where == "first" else size - 1)] ^= 0x01
    part.write_bytes(bytes(data))
    text = rejected(split[0], part.name, member, "is damaged", "does not match its digest in the parts list")
    assert "before it was packed" not in text


def test_a_ranged_blob_damaged_before_packing_is_named(tmp_path: Path, layout: Path) -> None:
    victim = layout / "blobs" / "sha256" / _big_blob(layout)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    (tmp_path / "out").mkdir()
    result = pack_layout(layout, tmp_path / "out" / "b.tar", mtime=MTIME, part_size=PART)
    rejected(result.out, victim.name, "does not match its digest in the parts list", "damaged before it was packed")


def _as_version_1(first: Path) -> None:
    """Rewrite a set's parts list as gapseal wrote it before version 2: every range with its own sha256."""
    doc = json.loads(_parts_list_bytes(first))
    doc["version"] = 1
    for record in doc["parts"]:
        part = part_path(first, record["number"])
        with part.open("rb") as f:
            reader = tarformat.TarReader(f, str(part))
            digests = {}
            for m in reader.members():
                if not m.is_dir:
                    h = hashlib.sha256()
                    reader.read_data(m, h.update)
                    digests[m.path] = h.hexdigest()
        for member in record["members"]:
            member["sha256"] = digests[member["path"]]
    _replace_parts_list(first, canonical_model_json(PartsList.model_validate(doc).sealed()))


def test_a_version_1_set_still_reads(split: list[Path], layout: Path) -> None:
    _as_version_1(split[0])
    assert snapshot(read_layout_archive(split[0]).entries) == snapshot(read_layout_dir(layout).entries)


def test_a_version_1_set_names_a_damaged_range_by_its_own_digest(split: list[Path]) -> None:
    _as_version_1(split[0])
    part, member, offset, size = _part_with_range(split)
    data = bytearray(part.read_bytes())
    data[offset + size // 2] ^= 0x01
    part.write_bytes(bytes(data))
    rejected(split[0], part.name, member, "is damaged: member", "does not match its digest in the parts list")


def test_a_version_2_list_giving_a_range_a_digest_is_refused(split: list[Path]) -> None:
    doc = json.loads(_parts_list_bytes(split[0]))
    member = next(m for r in doc["parts"] for m in r["members"] if m.get("blob") is not None)
    member["sha256"] = "0" * 64
    _replace_parts_list(split[0], canonical_model_json(PartsList.model_validate(doc).sealed()))
    rejected(split[0], split[0].name, "inconsistent", "has a digest of its own")


def _parts_list_bytes(first: Path) -> bytes:
    with tarfile.open(first) as t:
        f = t.extractfile(PARTS_LIST_NAME)
        assert f is not None
        return f.read()


def _replace_parts_list(first: Path, new: bytes) -> None:
    """Rewrite part 1 with gapseal's own writer and a different parts list (a consistent, well-formed forgery)."""
    with tarfile.open(first) as t:
        others = [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.name != PARTS_LIST_NAME]  # type: ignore[union-attr]
    fd = os.open(first, os.O_WRONLY | os.O_TRUNC)
    try:
        writer = tarformat.TarWriter(fd, mtime=MTIME)
        writer.add_bytes(PARTS_LIST_NAME, new)
        for name, data in others:
            writer.add_bytes(name, data)
        writer.close()
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def packed_set(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    base = tmp_path_factory.mktemp("packed")
    layout = make_layout(base / "layout", [3000, 20 * 1024, 100 * 1024, 40 * 1024, 1])
    parts = pack_layout(layout, base / "b.tar", mtime=MTIME, part_size=PART).parts
    return [(p.path.name, p.path.read_bytes()) for p in parts]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(part_index=st.integers(min_value=0, max_value=20), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_single_bit_flip_in_any_part_names_that_part(
    tmp_path_factory: pytest.TempPathFactory,
    packed_set: list[tuple[str, bytes]],
    part_index: int,
    position: int,
    bit: int,
) -> None:
    """Property: flip one bit anywhere in any part of a split set; the reader refuses it and names that part."""
    base = tmp_path_factory.mktemp("flip")
    victim = part_index % len(packed_set)
    for i, (name, data) in enumerate(packed_set):
        if i == victim:
            bad = bytearray(data)
            bad[position % len(bad)] ^= 1 << bit
            data = bytes(bad)
        (base / name).write_bytes(data)
    text = rejected(base / packed_set[0][0])
    assert packed_set[victim][0] in text, text
