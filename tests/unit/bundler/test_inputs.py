"""collect_inputs: the exact file list of every component; links and special files are refused, HF snapshots read."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.bundler.inputs import ComponentInputs, InputFile, collect_inputs, hf_blobs_dir
from gapseal.bundler.spec import LoadedSpec, load_spec
from gapseal.errors import InputError

HEADER = "apiVersion: gapseal/v1\nkind: Bundle\nmetadata: {name: demo, version: 1.0.0}\n"


def _write(root: Path, rel: str, data: bytes | str = b"x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _spec(root: Path, body: str) -> LoadedSpec:
    spec = root / "spec.yaml"
    spec.write_text(HEADER + body)
    return load_spec(spec)


def _one(root: Path, path: str, *, kind: str = "models", follow: bool = False) -> ComponentInputs:
    loaded = _spec(root, f"{kind}: [{{name: c, path: '{path}'}}]\n")
    (component,) = collect_inputs(loaded, follow_symlinks=follow)
    return component


def test_directory_is_walked_sorted_with_posix_paths_and_nothing_skipped(tmp_path: Path) -> None:
    for rel in ["m/z.bin", "m/a.json", "m/sub/deeper/b.txt", "m/.git/HEAD", "m/.hidden", "m/__pycache__/x.pyc"]:
        _write(tmp_path, rel, rel)
    c = _one(tmp_path, "m")
    assert [f.rel_path for f in c.files] == [
        ".git/HEAD",
        ".hidden",
        "__pycache__/x.pyc",
        "a.json",
        "sub/deeper/b.txt",
        "z.bin",
    ]
    assert c.kind == "model"
    assert c.name == "c"
    assert c.variant is None
    assert c.root == tmp_path.resolve() / "m"
    assert not c.single_file
    assert all(f.source == c.root / f.rel_path for f in c.files)
    assert c.files[4] == InputFile("sub/deeper/b.txt", c.root / "sub/deeper/b.txt", len("m/sub/deeper/b.txt"))
    assert c.total_size == sum(len(r) for r in ["m/z.bin", "m/a.json", "m/sub/deeper/b.txt", "m/.git/HEAD"]) + len(
        "m/.hidden"
    ) + len("m/__pycache__/x.pyc")


def test_single_file_component_is_its_basename(tmp_path: Path) -> None:
    _write(tmp_path, "weights/tiny.gguf", b"GGUF")
    c = _one(tmp_path, "weights/tiny.gguf")
    assert c.single_file
    assert c.files == (InputFile("tiny.gguf", tmp_path.resolve() / "weights/tiny.gguf", 4),)


def test_every_component_kind_in_spec_order(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    _write(tmp_path, "d/readme.md")
    _write(tmp_path, "b/cpu/server")
    _write(tmp_path, "b/cuda/server")
    loaded = _spec(
        tmp_path,
        "builds: [{name: srv, variants: [{backend: cpu, arch: amd64, path: b/cpu},"
        " {backend: cuda, arch: amd64, path: b/cuda}]}]\n"
        "files: [{name: docs, path: d}]\nmodels: [{name: m, path: m}]\n",
    )
    comps = collect_inputs(loaded)
    assert [(c.kind, c.name, c.variant) for c in comps] == [
        ("model", "m", None),
        ("files", "docs", None),
        ("build", "srv", 0),
        ("build", "srv", 1),
    ]


def test_order_is_by_full_posix_path(tmp_path: Path) -> None:
    # a directory "a" sorts with its children "a/..." under plain string order: "a.txt" < "a/b" < "a0"
    for rel in ["m/a0", "m/a/b", "m/a.txt"]:
        _write(tmp_path, rel)
    assert [f.rel_path for f in _one(tmp_path, "m").files] == ["a.txt", "a/b", "a0"]


# --- links and special files -----------------------------------------------------------------------------------------


def test_symlink_inside_a_directory_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "m/real.bin")
    (tmp_path / "m/link.bin").symlink_to("real.bin")
    with pytest.raises(InputError, match=r"m/link.bin: is a symlink \(to real.bin\)") as info:
        _one(tmp_path, "m")
    assert info.value.hint is not None
    assert "--follow-symlinks" in info.value.hint


def test_component_path_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "real/w.bin")
    (tmp_path / "m").symlink_to("real")
    with pytest.raises(InputError, match=r"/m: is a symlink \(to real\)"):
        _one(tmp_path, "m")


def test_symlinked_directory_on_the_way_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "real/models/w.bin")
    (tmp_path / "via").symlink_to("real")
    with pytest.raises(InputError, match=r"/via: is a symlink on the way to"):
        _one(tmp_path, "via/models")


def test_fifo_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    os.mkfifo(tmp_path / "m/pipe")
    with pytest.raises(InputError, match=r"m/pipe: is a fifo; inputs must be regular files and directories"):
        _one(tmp_path, "m")


def test_socket_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    path = tmp_path / "m/s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        with pytest.raises(InputError, match=r"m/s.sock: is a socket"):
            _one(tmp_path, "m")


def test_device_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    try:
        os.mknod(tmp_path / "m/null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD, which this environment lacks")
    with pytest.raises(InputError, match=r"m/null: is a character device"):
        _one(tmp_path, "m")


def test_non_utf8_file_name_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    (tmp_path / "m").joinpath(os.fsdecode(b"bad-\xff")).write_bytes(b"x")
    with pytest.raises(InputError, match="file name is not valid UTF-8"):
        _one(tmp_path, "m")


def test_control_character_in_file_name_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    _write(tmp_path, "m/new\nline")
    with pytest.raises(InputError, match="control character"):
        _one(tmp_path, "m")


# --- --follow-symlinks -----------------------------------------------------------------------------------------------


def test_follow_symlinks_reads_through_file_and_directory_links(tmp_path: Path) -> None:
    _write(tmp_path, "shared/tokenizer.json", "tok")
    _write(tmp_path, "shared/cfg/a.json", "a")
    _write(tmp_path, "m/w.bin", "w")
    (tmp_path / "m/tokenizer.json").symlink_to("../shared/tokenizer.json")
    (tmp_path / "m/cfg").symlink_to("../shared/cfg")
    c = _one(tmp_path, "m", follow=True)
    real = tmp_path.resolve()
    assert [(f.rel_path, f.source, f.size) for f in c.files] == [
        ("cfg/a.json", real / "shared/cfg/a.json", 1),
        ("tokenizer.json", real / "shared/tokenizer.json", 3),
        ("w.bin", real / "m/w.bin", 1),
    ]


def test_follow_symlinks_refuses_an_escape(tmp_path: Path) -> None:
    _write(tmp_path, "outside/secret", "s")
    project = tmp_path / "project"
    _write(project, "m/w.bin")
    (project / "m/secret").symlink_to(tmp_path / "outside/secret")
    with pytest.raises(InputError, match=r"m/secret: symlink resolves to .*outside/secret, outside the spec's"):
        _one(project, "m", follow=True)


def test_follow_symlinks_refuses_a_loop(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    (tmp_path / "m/again").symlink_to(".")
    with pytest.raises(InputError, match=r"m/again: symlink loop"):
        _one(tmp_path, "m", follow=True)


def test_follow_symlinks_refuses_a_self_referencing_link(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    (tmp_path / "m/self").symlink_to("self")
    with pytest.raises(InputError, match=r"m/self: symlink cannot be resolved"):
        _one(tmp_path, "m", follow=True)


def test_follow_symlinks_refuses_a_dangling_link(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    (tmp_path / "m/gone").symlink_to("nowhere")
    with pytest.raises(InputError, match=r"m/gone: symlink cannot be resolved"):
        _one(tmp_path, "m", follow=True)


def test_follow_symlinks_refuses_a_link_to_a_fifo(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "m/p").symlink_to("../fifo")
    with pytest.raises(InputError, match=r"m/p: symlink points to a fifo"):
        _one(tmp_path, "m", follow=True)


# --- Hugging Face cache snapshots ------------------------------------------------------------------------------------


def _hf_repo(root: Path) -> Path:
    """Build a Hugging Face hub cache repo the way huggingface_hub lays it out; return the snapshot dir."""
    repo = root / "hub/models--sentence-transformers--all-MiniLM-L6-v2"
    snap = repo / "snapshots/8b3219a92973c328a8e22fadcfa821b5dc75636a"
    files = {"config.json": b'{"hidden_size": 384}', "model.safetensors": b"weights", "1_Pooling/config.json": b"{}"}
    for rel, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text(snap.name)
    return snap


def test_hf_snapshot_is_read_through_its_blob_links(tmp_path: Path) -> None:
    snap = _hf_repo(tmp_path)
    c = _one(tmp_path, str(snap.relative_to(tmp_path)))
    blobs = (snap.parents[1] / "blobs").resolve()
    assert [f.rel_path for f in c.files] == ["1_Pooling/config.json", "config.json", "model.safetensors"]
    assert all(f.source.parent == blobs for f in c.files)
    assert c.files[2].source.name == hashlib.sha256(b"weights").hexdigest()
    assert c.files[2].size == len(b"weights")
    assert hf_blobs_dir(snap) == snap.parents[1] / "blobs"


def test_hf_snapshot_single_file(tmp_path: Path) -> None:
    snap = _hf_repo(tmp_path)
    c = _one(tmp_path, str((snap / "model.safetensors").relative_to(tmp_path)))
    assert c.single_file
    assert [(f.rel_path, f.size) for f in c.files] == [("model.safetensors", 7)]


def test_hf_snapshot_link_outside_blobs_is_refused(tmp_path: Path) -> None:
    snap = _hf_repo(tmp_path)
    _write(tmp_path, "hub/elsewhere.txt")
    (snap / "extra.txt").symlink_to("../../../elsewhere.txt")
    with pytest.raises(InputError, match=r"extra.txt: Hugging Face snapshot symlink resolves to .*outside the repo's"):
        _one(tmp_path, str(snap.relative_to(tmp_path)))


def test_hf_snapshot_link_into_another_repos_blobs_is_refused(tmp_path: Path) -> None:
    snap = _hf_repo(tmp_path)
    other = tmp_path / "hub/models--org--other/blobs/abc"
    _write(other.parent.parent.parent.parent, str(other.relative_to(tmp_path)), "other")
    (snap / "stolen.bin").symlink_to(os.path.relpath(other, snap))
    with pytest.raises(InputError, match=r"stolen.bin: Hugging Face snapshot symlink resolves to .*models--org--other"):
        _one(tmp_path, str(snap.relative_to(tmp_path)))


def test_hf_snapshot_link_to_a_directory_is_refused(tmp_path: Path) -> None:
    snap = _hf_repo(tmp_path)
    (snap.parents[1] / "blobs/dir").mkdir()
    (snap / "d").symlink_to("../../blobs/dir")
    with pytest.raises(InputError, match=r"/d: Hugging Face snapshot symlink points to a directory"):
        _one(tmp_path, str(snap.relative_to(tmp_path)))


def test_hf_snapshot_dangling_link_is_refused(tmp_path: Path) -> None:
    snap = _hf_repo(tmp_path)
    (snap / "missing.bin").symlink_to("../../blobs/0000")
    with pytest.raises(InputError, match=r"missing.bin: symlink cannot be resolved"):
        _one(tmp_path, str(snap.relative_to(tmp_path)))


def test_hf_rule_does_not_apply_outside_a_snapshot(tmp_path: Path) -> None:
    # the repo dir itself is not a snapshot: its snapshot links are plain symlinks there
    snap = _hf_repo(tmp_path)
    with pytest.raises(InputError, match="is a symlink"):
        _one(tmp_path, str(snap.parents[1].relative_to(tmp_path)))


def test_a_directory_merely_named_snapshots_is_not_a_hf_snapshot(tmp_path: Path) -> None:
    _write(tmp_path, "backups/snapshots/v1/blob")
    (tmp_path / "backups/snapshots/v1/link").symlink_to("blob")
    with pytest.raises(InputError, match="is a symlink"):
        _one(tmp_path, "backups/snapshots/v1")


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def test_relative_spec_path_gives_absolute_roots(cwd: Path) -> None:
    _write(cwd, "m/w.bin")
    (cwd / "spec.yaml").write_text(HEADER + "models: [{name: c, path: m}]\n")
    (c,) = collect_inputs(load_spec(Path("spec.yaml")))
    assert c.root.is_absolute()
    assert c.files[0].source.is_absolute()


def test_deep_nesting_is_walked_without_recursion_limits(tmp_path: Path) -> None:
    deep = tmp_path / "m"
    deep.mkdir()
    for _ in range(600):  # 2 frames per level would pass the recursion limit; one mkdir per level (makedirs recurses)
        deep = deep / "d"
        deep.mkdir()
    (deep / "leaf.bin").write_bytes(b"x")
    try:
        (c,) = [_one(tmp_path, "m")]
        assert len(c.files) == 1
        assert c.files[0].rel_path.count("/") == 600
    finally:
        # pytest removes old temp dirs with a recursive rmtree that a tree this deep overflows (RecursionError in
        # a later session's cleanup): take it down here, bottom up, without recursion.
        (deep / "leaf.bin").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent


def test_messages_name_the_path_as_seen_through_a_followed_link(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    (tmp_path / "shared").mkdir()
    os.mkfifo(tmp_path / "shared/pipe")
    (tmp_path / "m/cfg").symlink_to("../shared")
    with pytest.raises(InputError, match=r"/m/cfg/pipe: is a fifo"):
        _one(tmp_path, "m", follow=True)


def test_two_links_to_one_directory_are_not_a_loop(tmp_path: Path) -> None:
    _write(tmp_path, "shared/a.json", "a")
    _write(tmp_path, "m/w.bin")
    (tmp_path / "m/one").symlink_to("../shared")
    (tmp_path / "m/two").symlink_to("../shared")
    c = _one(tmp_path, "m", follow=True)
    assert [f.rel_path for f in c.files] == ["one/a.json", "two/a.json", "w.bin"]


def test_the_demo_spec_in_examples_collects_the_real_model() -> None:
    """examples/clinic-assistant.yaml (make demo's spec) with the real MiniLM from `make model`."""
    spec = Path(__file__).parents[3] / "examples" / "clinic-assistant.yaml"
    if not (spec.parent / "models/minilm/model.safetensors").is_file():
        pytest.fail("the real MiniLM weights are missing: run `make model` (scripts/fetch-model.sh)")
    comps = collect_inputs(load_spec(spec))
    model = next(c for c in comps if c.kind == "model")
    names = [f.rel_path for f in model.files]
    assert "model.safetensors" in names
    assert ".gitattributes" in names  # nothing is skipped silently
    assert "1_Pooling/config.json" in names
    assert model.total_size > 90_000_000


def test_hf_blobs_dir_linked_from_outside_the_spec_dir_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    snap = _hf_repo(project)
    blobs = snap.parents[1] / "blobs"
    blobs.rename(tmp_path / "elsewhere-blobs")
    blobs.symlink_to(tmp_path / "elsewhere-blobs")
    with pytest.raises(InputError, match=r"the Hugging Face repo's blobs/ directory .* outside the spec's directory"):
        _one(project, str(snap.relative_to(project)))


def test_dangling_symlink_without_follow_is_refused_as_a_symlink(tmp_path: Path) -> None:
    _write(tmp_path, "m/w.bin")
    (tmp_path / "m/gone").symlink_to("nowhere")
    with pytest.raises(InputError, match=r"m/gone: is a symlink \(to nowhere\)"):
        _one(tmp_path, "m")
