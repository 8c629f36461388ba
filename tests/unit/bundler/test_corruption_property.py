"""Property: a single corrupted byte anywhere in a packed bundle (tar or any part of a split set) is always detected."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import create_bundle
from gapseal.bundler.verify import read_inventory, verify_inventory
from gapseal.errors import GapsealError
from gapseal.signing.keys import VerifyingKey
from tests.bundles import make_inputs, make_keys


@cache
def _packed() -> tuple[Path, VerifyingKey, list[Path]]:
    """One real signed bundle, packed whole and split; built once for all examples (removed at interpreter exit)."""
    root = Path(tempfile.mkdtemp(prefix="gapseal-prop-"))
    atexit.register(shutil.rmtree, root, True)
    keys = make_keys(root / "keys")
    spec = make_inputs(root / "in")
    # A 50 KB document: larger than a part, so the split set also carries a blob cut into ranges.
    (root / "in/docs/manual.txt").write_bytes(bytes(range(256)) * 200)
    bundle = create_bundle(spec, keys.private, root / "bundle", link=False).path
    pack_layout(bundle, root / "whole.tar", mtime=1767225600)
    split = pack_layout(bundle, root / "split.tar", mtime=1767225600, part_size=20480)
    return root, keys.public, [root / "whole.tar", *[p.path for p in split.parts]]


def _verify(first: Path, key: VerifyingKey) -> None:
    verify_inventory(read_inventory(first), [key])


def test_the_pristine_archives_verify() -> None:
    _, key, files = _packed()
    _verify(files[0], key)
    _verify(files[1], key)
    assert len(files) > 3, "the split set should have several parts"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_byte_corruption_is_detected(data: st.DataObject) -> None:
    root, key, files = _packed()
    target = data.draw(st.sampled_from(files), label="file")
    original = target.read_bytes()
    offset = data.draw(st.integers(0, len(original) - 1), label="offset")
    delta = data.draw(st.integers(1, 255), label="xor")
    corrupted = bytearray(original)
    corrupted[offset] ^= delta
    work = Path(tempfile.mkdtemp(dir=root))
    try:
        for f in files:
            shutil.copyfile(f, work / f.name)
        (work / target.name).write_bytes(bytes(corrupted))
        first = work / ("whole.tar" if target.name == "whole.tar" else files[1].name)
        try:
            _verify(first, key)
        except GapsealError:
            return
        raise AssertionError(f"corruption of byte {offset} of {target.name} (xor {delta:#04x}) went undetected")
    finally:
        shutil.rmtree(work)
