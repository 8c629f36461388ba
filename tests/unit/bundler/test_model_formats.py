"""Model format detection on real weights (MiniLM safetensors), real GGUF files written with gguf.GGUFWriter, and
corrupted headers; every malformed header is refused naming the file and what is wrong."""

from __future__ import annotations

import json
import math
import re
import struct
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapseal.bundler.inputs import InputFile
from gapseal.bundler.model_formats import (
    MAX_SAFETENSORS_HEADER,
    ModelFormatInfo,
    detect_model_format,
    read_safetensors_header,
)
from gapseal.errors import InputError

MINILM = Path(__file__).parents[3] / "examples" / "models" / "minilm"


@pytest.fixture(scope="module")
def minilm() -> Path:
    if not (MINILM / "model.safetensors").is_file():
        pytest.fail(f"the real MiniLM weights are missing from {MINILM}: run `make model` (scripts/fetch-model.sh)")
    return MINILM


def _files(root: Path) -> list[InputFile]:
    return [
        InputFile(p.relative_to(root).as_posix(), p, p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()
    ]


def _one(path: Path, rel: str | None = None) -> list[InputFile]:
    return [InputFile(rel or path.name, path, path.stat().st_size)]


# --- safetensors writer (the format: u64 LE header length, JSON header, data) -----------------------------------------


def _header_bytes(header: dict[str, Any]) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)  # the reference writer pads the header with spaces to 8 bytes


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict[str, str]) -> None:
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    pos = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
    raw = _header_bytes(header)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(t[2] for t in tensors.values()))


def write_raw(path: Path, header: bytes, data: bytes, *, length: int | None = None) -> None:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)


def _small_tensors() -> dict[str, tuple[str, list[int], bytes]]:
    return {
        "embed.weight": ("F32", [2, 4], np.arange(8, dtype="<f4").tobytes()),
        "norm.bias": ("BF16", [4], bytes(8)),
        "ids": ("I64", [1], struct.pack("<q", 7)),
    }


# --- real MiniLM ------------------------------------------------------------------------------------------------------


def test_real_minilm_safetensors_header(minilm: Path) -> None:
    info = detect_model_format(_files(minilm))
    assert info.format == "safetensors"
    assert info.formats_present == ["safetensors"]
    assert info.weight_files == ["model.safetensors"]
    st = info.safetensors
    assert st is not None
    assert st.files == ["model.safetensors"]
    assert st.tensor_count == 104
    assert st.parameter_count == 22_713_728  # all-MiniLM-L6-v2: 22.7 M parameters
    assert st.dtypes == {"F32": 103, "I64": 1}
    assert st.metadata == {"format": "pt"}
    assert st.index is None
    assert info.gguf == []


def test_declared_format_matching_the_files_is_accepted(minilm: Path) -> None:
    assert detect_model_format(_files(minilm), "safetensors").format == "safetensors"


@pytest.mark.parametrize("declared", ["gguf", "onnx", "pytorch"])
def test_declared_format_contradicting_the_files_is_refused(minilm: Path, declared: str) -> None:
    with pytest.raises(
        InputError,
        match=rf"model minilm: the spec declares format '{declared}', but the model holds safetensors \(model.safe",
    ):
        detect_model_format(_files(minilm), declared, model="minilm")


def test_unknown_declared_format_is_refused(minilm: Path) -> None:
    with pytest.raises(InputError, match="unknown model format 'ggml'"):
        detect_model_format(_files(minilm), "ggml")


def _real_header(minilm: Path) -> tuple[dict[str, Any], int]:
    with open(minilm / "model.safetensors", "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), n


def _sparse_copy(minilm: Path, dest: Path, header: dict[str, Any], *, data_size: int) -> None:
    """The real MiniLM header (possibly edited) over a sparse data section: no weight bytes are copied."""
    raw = _header_bytes(header)
    with open(dest, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + data_size)


def test_real_minilm_header_over_a_truncated_file_is_refused(minilm: Path, tmp_path: Path) -> None:
    header, n = _real_header(minilm)
    data_size = (minilm / "model.safetensors").stat().st_size - 8 - n
    _sparse_copy(minilm, tmp_path / "model.safetensors", header, data_size=data_size - 1)
    with pytest.raises(
        InputError,
        match=rf"model.safetensors: not a valid safetensors file: tensors cover {data_size} bytes but the data "
        rf"section holds {data_size - 1} \(truncated or padded file\)",
    ):
        detect_model_format(_one(tmp_path / "model.safetensors"))


def test_real_minilm_header_with_an_edited_shape_is_refused(minilm: Path, tmp_path: Path) -> None:
    header, n = _real_header(minilm)
    data_size = (minilm / "model.safetensors").stat().st_size - 8 - n
    header["embeddings.word_embeddings.weight"]["shape"] = [30522, 385]
    _sparse_copy(minilm, tmp_path / "model.safetensors", header, data_size=data_size)
    with pytest.raises(
        InputError,
        match=r"tensor 'embeddings.word_embeddings.weight': F32 \[30522, 385\] needs 47003880 bytes but data_offsets "
        r"span 46881792",
    ):
        detect_model_format(_one(tmp_path / "model.safetensors"))


def test_real_minilm_sharded_with_index(minilm: Path, tmp_path: Path) -> None:
    """Two real shards cut from MiniLM (layers 0 and 1, with their real bytes) plus a transformers-style index."""
    header, n = _real_header(minilm)
    header.pop("__metadata__")
    shards: dict[str, dict[str, tuple[str, list[int], bytes]]] = {"model-00001-of-00002.safetensors": {}}
    shards["model-00002-of-00002.safetensors"] = {}
    with open(minilm / "model.safetensors", "rb") as f:
        for name, entry in sorted(header.items()):
            for layer, shard in (("encoder.layer.0.", 0), ("encoder.layer.1.", 1)):
                if name.startswith(layer):
                    begin, end = entry["data_offsets"]
                    f.seek(8 + n + begin)
                    shards[sorted(shards)[shard]][name] = (entry["dtype"], entry["shape"], f.read(end - begin))
    weight_map = {}
    for shard_name, tensors in shards.items():
        write_safetensors(tmp_path / shard_name, tensors, {"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard_name))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map})
    )
    info = detect_model_format(_files(tmp_path))
    st = info.safetensors
    assert st is not None
    assert st.files == sorted(shards)
    assert st.index == "model.safetensors.index.json"
    assert st.tensor_count == 32  # 16 tensors per BERT layer
    expected = sum(math.prod(header[t]["shape"]) for s in shards.values() for t in s)
    assert st.parameter_count == expected == 2 * 1_774_464
    assert info.weight_files == sorted(shards)


def _sharded(tmp_path: Path) -> dict[str, str]:
    write_safetensors(tmp_path / "a.safetensors", {"x": ("F32", [1], bytes(4))}, {})
    write_safetensors(tmp_path / "b.safetensors", {"y": ("F32", [1], bytes(4))}, {})
    return {"x": "a.safetensors", "y": "b.safetensors"}


@pytest.mark.parametrize(
    ("case", "edit", "message"),
    [
        (
            "shard-missing",
            lambda m: {**m, "y": "c.safetensors"},
            r"tensor 'y' is mapped to 'c.safetensors', which is not among the model's safetensors files",
        ),
        (
            "tensor-not-in-shard",
            lambda m: {**m, "z": "a.safetensors"},
            r"tensor 'z' is mapped to 'a.safetensors', whose header does not hold it",
        ),
        (
            "shard-path-escapes",
            lambda m: {**m, "y": "../b.safetensors"},
            r"tensor 'y': shard must be a file name beside the index, got '../b.safetensors'",
        ),
        ("empty-weight-map", lambda m: {}, r"needs a non-empty weight_map object"),
    ],
)
def test_bad_safetensors_index_is_refused(
    tmp_path: Path, case: str, edit: Callable[[dict[str, str]], dict[str, str]], message: str
) -> None:
    weight_map = edit(_sharded(tmp_path))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(InputError, match=r"model.safetensors.index.json: invalid safetensors index: " + message):
        detect_model_format(_files(tmp_path))


def test_index_that_is_not_json_is_refused(tmp_path: Path) -> None:
    _sharded(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{'weight_map': ")
    with pytest.raises(InputError, match=r"model.safetensors.index.json: invalid safetensors index: Expecting"):
        detect_model_format(_files(tmp_path))


# --- handmade safetensors: valid and corrupted ------------------------------------------------------------------------


def test_small_safetensors_file(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "w.safetensors", _small_tensors(), {"format": "pt", "note": "x"})
    tensors, meta = read_safetensors_header(tmp_path / "w.safetensors")
    assert set(tensors) == {"embed.weight", "norm.bias", "ids"}
    assert meta == {"format": "pt", "note": "x"}
    info = detect_model_format(_one(tmp_path / "w.safetensors"))
    assert info.safetensors is not None
    assert info.safetensors.parameter_count == 8 + 4 + 1
    assert info.safetensors.dtypes == {"BF16": 1, "F32": 1, "I64": 1}


def test_zero_tensor_file_and_empty_tensor_are_valid(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "empty.safetensors", {}, {})
    write_safetensors(tmp_path / "zero.safetensors", {"z": ("F16", [0, 3], b"")}, {})
    info = detect_model_format(_files(tmp_path))
    assert info.safetensors is not None
    assert info.safetensors.tensor_count == 1
    assert info.safetensors.parameter_count == 0


def test_sub_byte_dtype_sizes(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "f4.safetensors", {"q": ("F4", [4, 4], bytes(8))}, {})
    assert detect_model_format(_files(tmp_path)).safetensors is not None
    write_safetensors(tmp_path / "f4.safetensors", {"q": ("F4", [3], bytes(2))}, {})
    with pytest.raises(InputError, match=r"tensor 'q': F4 \[3\] needs 1.5 bytes but data_offsets span 2"):
        detect_model_format(_files(tmp_path))


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _entry(dtype: str, shape: list[int], offsets: list[int]) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


CORRUPT_SAFETENSORS: list[tuple[str, Callable[[Path], None], str]] = [
    ("file-shorter-than-length-field", lambda p: _write_bytes(p, b"\x10\x00"), r"2 bytes, shorter than the 8-byte"),
    (
        "header-length-over-limit",
        lambda p: write_raw(p, b"{}", b"", length=MAX_SAFETENSORS_HEADER + 1),
        rf"header length {MAX_SAFETENSORS_HEADER + 1} exceeds the {MAX_SAFETENSORS_HEADER}-byte limit",
    ),
    (
        "header-length-past-end-of-file",
        lambda p: write_raw(p, b"{}", b"", length=100),
        r"header length 100 does not fit a file of 10 bytes",
    ),
    ("header-not-an-object", lambda p: write_raw(p, b"[1, 2]", b""), r"header does not start with '\{'"),
    ("header-not-json", lambda p: write_raw(p, b"{nope}", b""), r"header is not valid JSON: Expecting"),
    ("header-not-utf8", lambda p: write_raw(p, b'{"\xff": 1}', b""), r"header is not valid JSON: 'utf-8' codec"),
    (
        "duplicate-tensor-name",
        lambda p: write_raw(
            p,
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
            b"xy",
        ),
        r"header is not valid JSON: duplicate key 'a'",
    ),
    (
        "unknown-dtype",
        lambda p: write_raw(p, _header_bytes({"a": _entry("F12", [1], [0, 2])}), b"xx"),
        r"tensor 'a': unknown dtype 'F12'",
    ),
    (
        "negative-dimension",
        lambda p: write_raw(p, _header_bytes({"a": _entry("U8", [-1], [0, 1])}), b"x"),
        r"tensor 'a': shape must be a list of non-negative integers, got \[-1\]",
    ),
    (
        "boolean-dimension",
        lambda p: write_raw(p, _header_bytes({"a": _entry("U8", [True], [0, 1])}), b"x"),
        r"tensor 'a': shape must be a list of non-negative integers, got \[True\]",
    ),
    (
        "offsets-reversed",
        lambda p: write_raw(p, _header_bytes({"a": _entry("U8", [1], [1, 0])}), b"x"),
        r"tensor 'a': data_offsets must be \[begin, end\] with 0 <= begin <= end, got \[1, 0\]",
    ),
    (
        "offsets-missing",
        lambda p: write_raw(p, _header_bytes({"a": {"dtype": "U8", "shape": [1]}}), b"x"),
        r"tensor 'a': needs exactly dtype, shape and data_offsets",
    ),
    (
        "extra-tensor-key",
        lambda p: write_raw(p, _header_bytes({"a": {**_entry("U8", [1], [0, 1]), "x": 1}}), b"x"),
        r"tensor 'a': needs exactly dtype, shape and data_offsets",
    ),
    (
        "size-does-not-match-dtype-and-shape",
        lambda p: write_raw(p, _header_bytes({"a": _entry("F32", [2, 2], [0, 12])}), bytes(12)),
        r"tensor 'a': F32 \[2, 2\] needs 16 bytes but data_offsets span 12",
    ),
    (
        "tensors-overlap",
        lambda p: write_raw(
            p, _header_bytes({"a": _entry("U8", [4], [0, 4]), "b": _entry("U8", [4], [2, 6])}), bytes(6)
        ),
        r"tensor 'b': data_offsets 2 overlaps the previous tensor",
    ),
    (
        "gap-between-tensors",
        lambda p: write_raw(
            p, _header_bytes({"a": _entry("U8", [4], [0, 4]), "b": _entry("U8", [4], [6, 10])}), bytes(10)
        ),
        r"tensor 'b': data_offsets 6 leaves a gap of 2 bytes",
    ),
    (
        "data-truncated",
        lambda p: write_raw(p, _header_bytes({"a": _entry("U8", [4], [0, 4])}), bytes(3)),
        r"tensors cover 4 bytes but the data section holds 3",
    ),
    (
        "trailing-bytes-after-data",
        lambda p: write_raw(p, _header_bytes({"a": _entry("U8", [4], [0, 4])}), bytes(5)),
        r"tensors cover 4 bytes but the data section holds 5",
    ),
    (
        "metadata-not-strings",
        lambda p: write_raw(p, _header_bytes({"__metadata__": {"epoch": 3}}), b""),
        r"__metadata__ must map strings to strings",
    ),
]


@pytest.mark.parametrize(("case", "make", "message"), CORRUPT_SAFETENSORS, ids=[c[0] for c in CORRUPT_SAFETENSORS])
def test_corrupt_safetensors_is_refused_naming_the_file(
    tmp_path: Path, case: str, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "weights" / f"{case}.safetensors"
    path.parent.mkdir()
    make(path)
    with pytest.raises(InputError) as info:
        detect_model_format(_one(path, f"weights/{case}.safetensors"))
    assert info.value.message.startswith(f"weights/{case}.safetensors: not a valid safetensors file: ")
    assert info.value.where == str(path)
    assert re.search(message, info.value.message), info.value.message


# --- GGUF (real files written by gguf.GGUFWriter) ---------------------------------------------------------------------


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    file_type: int | None = gguf.LlamaFileType.MOSTLY_Q8_0,
    context_length: int | None = 2048,
    split_max_tensors: int = 0,
) -> None:
    w = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    w.add_name("tiny-test")
    if context_length is not None:
        w.add_context_length(context_length)
    if file_type is not None:
        w.add_file_type(file_type)
    w.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(16, dtype=np.float16))
    q = gguf.quants.quantize(np.ones((2, 64), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_metadata(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf")
    info = detect_model_format(_files(tmp_path))
    assert info.format == "gguf"
    assert info.weight_files == ["tiny.gguf"]
    (g,) = info.gguf
    assert g.model_dump() == {
        "files": ["tiny.gguf"],
        "architecture": "llama",
        "name": "tiny-test",
        "quantization": "Q8_0",
        "tensor_count": 3,
        "parameter_count": 32 + 16 + 128,
        "tensor_types": {"F16": 1, "F32": 1, "Q8_0": 1},
        "context_length": 2048,
        "gguf_version": 3,
    }


@pytest.mark.parametrize(
    ("file_type", "expected"),
    [(gguf.LlamaFileType.ALL_F32, "F32"), (gguf.LlamaFileType.MOSTLY_Q4_K_M, "Q4_K_M"), (9999, "9999"), (None, None)],
)
def test_gguf_quantization_names(tmp_path: Path, file_type: int | None, expected: str | None) -> None:
    write_gguf(tmp_path / "m.gguf", file_type=file_type, context_length=None, arch="gemma3")
    (g,) = detect_model_format(_files(tmp_path)).gguf
    assert g.quantization == expected
    assert g.architecture == "gemma3"
    assert g.context_length is None


def test_gguf_split_set_is_one_model(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf", split_max_tensors=1)
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == [f"tiny-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    (g,) = detect_model_format(_files(tmp_path)).gguf
    assert g.files == parts
    assert g.tensor_count == 3
    assert g.parameter_count == 176
    assert g.quantization == "Q8_0"


def test_gguf_split_set_with_a_missing_part_is_refused(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf", split_max_tensors=1)
    (tmp_path / "tiny-00002-of-00003.gguf").unlink()
    with pytest.raises(InputError, match=r"GGUF split set has parts \[0, 2\] of 3"):
        detect_model_format(_files(tmp_path))


def test_two_independent_gguf_files_are_two_models(tmp_path: Path) -> None:
    write_gguf(tmp_path / "q8.gguf")
    write_gguf(tmp_path / "f32.gguf", file_type=gguf.LlamaFileType.ALL_F32)
    infos = detect_model_format(_files(tmp_path)).gguf
    assert [(g.files, g.quantization) for g in infos] == [(["f32.gguf"], "F32"), (["q8.gguf"], "Q8_0")]


def _gguf_bytes(tmp_path: Path) -> bytes:
    write_gguf(tmp_path / "src.gguf")
    data = (tmp_path / "src.gguf").read_bytes()
    (tmp_path / "src.gguf").unlink()
    return data


def _as_reader_sees_it(path: Path) -> dict[str, Any]:
    """The oracle: what gguf.GGUFReader (the gguf package's own reader) says about a file."""
    reader = gguf.GGUFReader(path)

    def field(key: str) -> Any:
        f = reader.get_field(key)
        return f.contents() if f is not None else None

    arch = field("general.architecture")
    return {
        "architecture": arch,
        "name": field("general.name"),
        "file_type": field("general.file_type"),
        "context_length": field(f"{arch}.context_length"),
        "tensor_count": len(reader.tensors),
        "parameter_count": sum(int(t.n_elements) for t in reader.tensors),
        "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
        "gguf_version": field("GGUF.version"),
    }


def _as_we_see_it(path: Path) -> dict[str, Any]:
    (g,) = detect_model_format(_one(path)).gguf
    ft = None if g.quantization is None else int(gguf.LlamaFileType["MOSTLY_" + g.quantization].value)
    return {
        "architecture": g.architecture,
        "name": g.name,
        "file_type": ft,
        "context_length": g.context_length,
        "tensor_count": g.tensor_count,
        "parameter_count": g.parameter_count,
        "tensor_types": g.tensor_types,
        "gguf_version": g.gguf_version,
    }


@pytest.mark.parametrize("endianess", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG])
def test_streaming_reader_agrees_with_gguf_reader(tmp_path: Path, endianess: gguf.GGUFEndian) -> None:
    """A vocabulary large enough to cross the 1 MiB read-ahead, one token longer than it, and both byte orders."""
    path = tmp_path / "vocab.gguf"
    w = gguf.GGUFWriter(path, "llama", endianess=endianess)
    w.add_name("vocab-test")
    w.add_context_length(4096)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens = [f"token-{i:05d}-" + "x" * (200 + i % 97) for i in range(6_000)]  # 1.5 MB: crosses read-ahead blocks
    tokens[5_000] = "L" * (3 << 20)  # longer than one read-ahead block
    w.add_token_list(tokens)
    w.add_token_scores([0.5] * len(tokens))
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_tensor("a", np.ones((3, 32), dtype=np.float16))
    w.add_tensor("b", np.ones(7, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours = _as_we_see_it(path)
    assert ours == _as_reader_sees_it(path)
    assert ours["parameter_count"] == 96 + 7
    assert ours["file_type"] == gguf.LlamaFileType.MOSTLY_F16


def test_streaming_reader_agrees_with_gguf_reader_on_split_parts(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf", split_max_tensors=1)
    parts = [_as_reader_sees_it(p) for p in sorted(tmp_path.iterdir())]
    (g,) = detect_model_format(_files(tmp_path)).gguf
    assert g.tensor_count == sum(p["tensor_count"] for p in parts) == 3
    assert g.parameter_count == sum(p["parameter_count"] for p in parts)
    assert g.tensor_types == dict(sum((Counter(p["tensor_types"]) for p in parts), Counter()))
    assert (g.architecture, g.name, g.context_length) == (
        parts[0]["architecture"],
        parts[0]["name"],
        parts[0]["context_length"],
    )


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _kv_str(key: str, value: str) -> bytes:
    return _str(key) + struct.pack("<I", gguf.GGUFValueType.STRING) + _str(value)


def _kv_u32(key: str, value: int) -> bytes:
    return _str(key) + struct.pack("<I", gguf.GGUFValueType.UINT32) + struct.pack("<I", value)


def _tensor(name: str, dims: list[int], ttype: int, offset: int) -> bytes:
    out = _str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
    return out + struct.pack("<II", ttype, 0)[:4] + struct.pack("<Q", offset)


def raw_gguf(kvs: list[bytes], tensors: list[bytes], data: bytes, *, version: int = 3) -> bytes:
    """A GGUF file byte by byte (header, kv, tensor infos, padding to 32, data) for cases GGUFWriter refuses."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32) + data


F32 = int(gguf.GGMLQuantizationType.F32)
ARCH = _kv_str("general.architecture", "llama")

CORRUPT_GGUF: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("bad-magic", lambda b: b"GGUX" + b[4:], r"magic is b'GGUX', expected b'GGUF'"),
    ("empty-file", lambda b: b"", r"magic is b'', expected b'GGUF'"),
    (
        "unsupported-version",
        lambda b: b[:4] + struct.pack("<I", 99) + b[8:],
        r"unsupported GGUF version 99 \(2 and 3 are read\)",
    ),
    ("truncated-in-metadata", lambda b: b[:150], r"file ends inside the header \(wanted \d+ bytes at offset \d+\)"),
    (
        "truncated-in-tensor-data",
        lambda b: b[:-40],
        r"tensor 'blk.0.attn_q.weight' ends at byte \d+, past the end of the \d+-byte file \(truncated\)",
    ),
    (
        "tensor-count-absurd",
        lambda b: b[:8] + struct.pack("<Q", 2**40) + b[16:],
        r"\d+ metadata entries and 1099511627776 tensors cannot fit in \d+ bytes",
    ),
    (
        "duplicate-metadata-key",
        lambda b: raw_gguf([ARCH, _kv_str("general.name", "a"), _kv_str("general.name", "b")], [], b""),
        r"duplicate metadata key 'general.name'",
    ),
    (
        "unknown-value-type",
        lambda b: raw_gguf([ARCH, _str("general.x") + struct.pack("<I", 99)], [], b""),
        r"general.x: unknown value type 99",
    ),
    (
        "key-not-utf8",
        lambda b: raw_gguf([_str(b"bad\xff") + struct.pack("<II", gguf.GGUFValueType.UINT32, 1)], [], b""),
        r"metadata key: string is not UTF-8",
    ),
    (
        "string-length-past-end",
        lambda b: raw_gguf(
            [ARCH, _str("general.name") + struct.pack("<IQ", gguf.GGUFValueType.STRING, 2**62)], [], b""
        ),
        r"general.name: string length 4611686018427387904 runs past the end of the file",
    ),
    (
        "string-array-past-end",
        lambda b: raw_gguf(
            [ARCH, _str("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, gguf.GGUFValueType.STRING, 10**9)], [], b""
        ),
        r"tokenizer.ggml.tokens: 1000000000 strings cannot fit in the rest of the file",
    ),
    (
        "scalar-array-past-end",
        lambda b: raw_gguf(
            [ARCH, _str("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, gguf.GGUFValueType.FLOAT32, 10**9)], [], b""
        ),
        r"a length of 4000000000 at offset \d+ runs past the end of the \d+-byte file",
    ),
    (
        "duplicate-tensor",
        lambda b: raw_gguf([ARCH], [_tensor("a", [1], F32, 0), _tensor("a", [1], F32, 32)], bytes(64)),
        r"duplicate tensor 'a'",
    ),
    (
        "unknown-tensor-type",
        lambda b: raw_gguf([ARCH], [_tensor("a", [1], 250, 0)], bytes(32)),
        r"tensor 'a': unknown tensor type 250",
    ),
    (
        "too-many-dimensions",
        lambda b: raw_gguf([ARCH], [_tensor("a", [1, 1, 1, 1, 1], F32, 0)], bytes(32)),
        r"tensor 'a': 5 dimensions \(GGML allows 4\)",
    ),
    (
        "partial-quantization-block",
        lambda b: raw_gguf([ARCH], [_tensor("q", [10], int(gguf.GGMLQuantizationType.Q8_0), 0)], bytes(64)),
        r"tensor 'q': first dimension 10 is not a multiple of the 32 block",
    ),
    (
        "misaligned-tensor-data",
        lambda b: raw_gguf([ARCH], [_tensor("a", [1], F32, 4)], bytes(32)),
        r"tensor 'a': data offset 4 is not aligned to 32",
    ),
    (
        "overlapping-tensors",
        lambda b: raw_gguf([ARCH], [_tensor("a", [16], F32, 0), _tensor("b", [8], F32, 32)], bytes(64)),
        r"tensor 'b' overlaps tensor 'a'",
    ),
    (
        "alignment-not-a-power-of-two",
        lambda b: raw_gguf([ARCH, _kv_u32("general.alignment", 24)], [], b""),
        r"general.alignment 24 is not a power of two",
    ),
]


def test_raw_builder_makes_files_both_readers_accept(tmp_path: Path) -> None:
    path = tmp_path / "raw.gguf"
    path.write_bytes(raw_gguf([ARCH, _kv_u32("llama.context_length", 8)], [_tensor("a", [8], F32, 0)], bytes(32)))
    assert _as_we_see_it(path) == _as_reader_sees_it(path)


@pytest.mark.parametrize(("case", "corrupt", "message"), CORRUPT_GGUF, ids=[c[0] for c in CORRUPT_GGUF])
def test_corrupt_gguf_is_refused_naming_the_file(
    tmp_path: Path, case: str, corrupt: Callable[[bytes], bytes], message: str
) -> None:
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(corrupt(_gguf_bytes(tmp_path)))
    with pytest.raises(InputError, match=rf"^{case}.gguf: not a valid GGUF file: {message}") as info:
        detect_model_format(_files(tmp_path))
    assert info.value.where == str(path)


# --- other formats and precedence -------------------------------------------------------------------------------------


def test_pytorch_zip_and_pickle_are_recognized(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02}q\x00.")
    (tmp_path / "tokenizer.bin").write_bytes(b"not a torch file")
    info = detect_model_format(_files(tmp_path))
    assert info.format == "pytorch"
    assert info.weight_files == ["legacy.pt", "pytorch_model.bin"]


def test_onnx_is_recognized_by_name(tmp_path: Path) -> None:
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx/model.onnx").write_bytes(b"\x08\x07")
    info = detect_model_format(_files(tmp_path), "onnx")
    assert (info.format, info.weight_files) == ("onnx", ["onnx/model.onnx"])


def test_safetensors_takes_precedence_and_every_format_is_listed(minilm: Path, tmp_path: Path) -> None:
    files = _files(minilm)
    with zipfile.ZipFile(tmp_path / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    write_gguf(tmp_path / "q8.gguf")
    files += _files(tmp_path)
    info = detect_model_format(files)
    assert info.format == "safetensors"
    assert info.formats_present == ["safetensors", "gguf", "pytorch"]
    assert detect_model_format(files, "pytorch").format == "pytorch"
    assert len(info.gguf) == 1


def test_no_weights_is_unknown_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    info = detect_model_format(_files(tmp_path))
    assert info == ModelFormatInfo(format="unknown")


def test_info_is_frozen_and_serializable(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf")
    info = detect_model_format(_files(tmp_path))
    assert ModelFormatInfo.model_validate_json(info.model_dump_json()) == info
    with pytest.raises(Exception, match="frozen"):
        info.format = "onnx"  # type: ignore[misc]


@pytest.mark.parametrize(
    "first_len",
    [
        (1 << 20) - 8 - 3,  # the next length prefix straddles the 1 MiB read-ahead boundary
        (1 << 20) - 8,  # the first string ends exactly on the boundary
        (1 << 20) - 8 - 8 - 5,  # the second string straddles the boundary
        (3 << 20) + 11,  # longer than several blocks
        0,  # empty strings
    ],
)
def test_string_array_skipping_across_read_ahead_boundaries(first_len: int) -> None:
    """The vocabulary skipper on exact block-boundary layouts (the private reader, since a file can't pin offsets)."""
    import io

    from gapseal.bundler.model_formats import _GgufStream

    strings = [b"a" * first_len, b"bcdefghijklm", b"", b"z" * 70_000, *[b"t%d" % i for i in range(1000)]]
    blob = b"".join(struct.pack("<Q", len(x)) + x for x in strings) + b"END!"
    fh = io.BufferedReader(io.BytesIO(blob), buffer_size=1 << 16)
    _GgufStream(fh, len(blob)).skip_strings(len(strings), "tokens")
    assert fh.read() == b"END!"


# --- fuzzing: damaged headers fail closed, with InputError and nothing else -------------------------------------------


def _valid_safetensors_bytes() -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    pos = 0
    data = b""
    for name, (dtype, shape, raw) in _small_tensors().items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        pos += len(raw)
        data += raw
    raw_header = _header_bytes(header)
    return struct.pack("<Q", len(raw_header)) + raw_header + data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_safetensors_fail_closed(tmp_path: Path, data: st.DataObject) -> None:
    original = _valid_safetensors_bytes()
    blob = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    blob = blob[:cut] if data.draw(st.booleans()) else blob
    path = tmp_path / "f.safetensors"
    path.write_bytes(bytes(blob))
    error: InputError | None = None
    try:
        info = detect_model_format(_one(path))
    except InputError as e:  # anything else escapes and fails the test
        error = e
    if error is not None:
        assert error.message.startswith("f.safetensors: not a valid safetensors file: ")
    else:  # accepted: a byte inside tensor data, or a change the header's JSON reads the same way
        assert info.safetensors is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_gguf_fails_closed(tmp_path: Path, data: st.DataObject) -> None:
    original = raw_gguf(
        [ARCH, _kv_u32("llama.context_length", 8), _kv_str("general.name", "fuzz")],
        [_tensor("a", [8], F32, 0), _tensor("b", [4], F32, 32)],
        bytes(64),
    )
    blob = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path = tmp_path / "f.gguf"
    path.write_bytes(bytes(blob))
    error: InputError | None = None
    try:
        detect_model_format(_one(path))
    except InputError as e:  # anything else escapes and fails the test
        error = e
    if error is not None:
        assert error.message.startswith("f.gguf: not a valid GGUF file: ")
