"""hash_stream reuses one read buffer per thread: digests stay right across threads, sizes and nested calls."""

from __future__ import annotations

import hashlib
import io
import os

from gapseal.hashing import CHUNK, hash_stream, parallel_map


def test_many_streams_on_several_threads_hash_exactly_their_bytes() -> None:
    sizes = [0, 1, 14, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7, 100, 5]
    blobs = [os.urandom(n) for n in sizes * 3]
    got = parallel_map(lambda data: hash_stream(io.BytesIO(data)).sha256, blobs, workers=4)
    assert got == [hashlib.sha256(b).hexdigest() for b in blobs]


class _HashingSink:
    """A sink that hashes what it receives with hash_stream itself: a nested call on the same thread."""

    def __init__(self) -> None:
        self.digests: list[str] = []
        self.copy = io.BytesIO()

    def write(self, chunk: memoryview) -> int:
        self.digests.append(hash_stream(io.BytesIO(bytes(chunk))).sha256)
        return self.copy.write(chunk)


def test_a_nested_call_does_not_share_the_outer_buffer() -> None:
    data = os.urandom(CHUNK + 123)
    sink = _HashingSink()
    outer = hash_stream(io.BytesIO(data), sink=sink)
    assert outer.sha256 == hashlib.sha256(data).hexdigest()
    assert sink.copy.getvalue() == data
    assert sink.digests == [hashlib.sha256(data[:CHUNK]).hexdigest(), hashlib.sha256(data[CHUNK:]).hexdigest()]
