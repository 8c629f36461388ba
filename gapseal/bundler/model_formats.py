"""Detect a model's weight format and read what its headers say, without reading the weights.

- **safetensors**: an 8-byte little-endian header length, then a JSON header mapping tensor names to dtype, shape and
  byte offsets. The header is bounded (``MAX_SAFETENSORS_HEADER``), parsed strictly (duplicate keys refused) and
  checked the way the format requires: known dtypes, non-negative shapes, offsets that tile the data section exactly
  and match ``dtype size x elements``. Several files (or a ``*.safetensors.index.json``) are aggregated, and an index
  must agree with the shards' headers.
- **GGUF**: the header is streamed (``_GgufStream``) with the PyPI ``gguf`` package's format constants (value types,
  quantization block sizes, file-type names): architecture, quantization (``general.file_type``), tensor and
  parameter counts, context length; tensor infos are checked (known types, whole blocks, aligned, inside the file,
  no overlap). Split files (``split.count``) are merged. ``gguf.GGUFReader`` itself is the tests' oracle only: it
  materializes every vocabulary entry (Gemma 3 270M: 68 s and +700 MB RSS, against 0.7 s and +18 MB here).
- **pytorch** (``.bin``/``.pt``/``.pth``/``.ckpt`` holding a zip or pickle) and **onnx** (``.onnx``) are recognized
  by name and magic only.

A malformed header is an ``InputError`` naming the file; a declared format the files contradict is an ``InputError``
too. Every model must match *some* rule or is recorded as ``unknown`` (tokenizer-only directories exist).
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.bundler.inputs import InputFile
from gapseal.errors import InputError

DetectedFormat = Literal["safetensors", "gguf", "pytorch", "onnx", "unknown"]

MAX_SAFETENSORS_HEADER = 16 * 1024 * 1024
"""Largest safetensors JSON header read (real ones are under 1 MiB even for thousands of tensors)."""
MAX_INDEX_JSON = 64 * 1024 * 1024
"""Largest ``*.safetensors.index.json`` read."""

SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
"""Bits per element of every dtype the safetensors format defines."""

_PRECEDENCE: tuple[DetectedFormat, ...] = ("safetensors", "gguf", "onnx", "pytorch")
_PYTORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_GGUF_MAGIC = b"GGUF"


class _Info(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class SafetensorsInfo(_Info):
    """What the safetensors headers of a model say, aggregated over every ``.safetensors`` file."""

    files: list[str]
    """The ``.safetensors`` files, relative to the model root, sorted."""
    tensor_count: int
    """Tensors over all files."""
    parameter_count: int
    """Sum over all tensors of the product of the shape."""
    dtypes: dict[str, int]
    """Tensor count per dtype (``F32``, ``BF16``, ...)."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """The ``__metadata__`` string map (of the first file that has one; an index's ``metadata`` is not merged)."""
    index: str | None = None
    """The ``*.safetensors.index.json`` that maps tensors to shards, if any."""


class GgufInfo(_Info):
    """What the GGUF metadata of one model (one file, or one split set) says."""

    files: list[str]
    """The file(s) of this model, relative to the model root, in split order."""
    architecture: str | None
    """``general.architecture`` (``llama``, ``gemma3``, ...)."""
    name: str | None = None
    """``general.name``, when present."""
    quantization: str | None
    """``general.file_type`` as a name (``Q4_K_M``, ``F16``, ``F32``), or the raw number if unknown."""
    tensor_count: int
    """Tensors over all parts."""
    parameter_count: int
    """Elements over all tensors."""
    tensor_types: dict[str, int]
    """Tensor count per GGML type (``Q4_K``, ``F32``, ...)."""
    context_length: int | None = None
    """``<architecture>.context_length``, when present."""
    gguf_version: int
    """GGUF container version."""


class ModelFormatInfo(_Info):
    """The detected format of a model and what its headers say."""

    format: DetectedFormat
    """The format recorded for the model (the declared one, or the first present of safetensors, gguf, onnx,
    pytorch)."""
    formats_present: list[DetectedFormat] = Field(default_factory=list)
    """Every weight format found among the files (a repo may carry safetensors and pytorch copies)."""
    weight_files: list[str] = Field(default_factory=list)
    """The files of ``format``, relative to the model root."""
    safetensors: SafetensorsInfo | None = None
    """Header summary when safetensors files are present."""
    gguf: list[GgufInfo] = Field(default_factory=list)
    """One entry per GGUF model (a split set counts once) when GGUF files are present."""


# ---------------------------------------------------------------------------------------------------------------------
# safetensors


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_safetensors_header(path: Path, *, name: str | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Read and validate the header of the safetensors file at ``path``; return ``(tensors, __metadata__)``.

    Only the header is read. Raises ``InputError`` naming ``name`` (or ``path``) for anything the format forbids.
    """
    label = name or str(path)

    def bad(why: str) -> InputError:
        return InputError(f"{label}: not a valid safetensors file: {why}", where=str(path))

    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"{size} bytes, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_SAFETENSORS_HEADER:
                raise bad(f"header length {n} exceeds the {MAX_SAFETENSORS_HEADER}-byte limit")
            if n < 2 or 8 + n > size:
                raise bad(f"header length {n} does not fit a file of {size} bytes")
            raw = f.read(n)
    except OSError as e:
        raise InputError(f"{label}: cannot read: {e.strerror or e}", where=str(path)) from e
    if raw[:1] != b"{":
        raise bad("header does not start with '{'")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"header is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    metadata_raw = header.pop("__metadata__", {})
    if not isinstance(metadata_raw, dict) or not all(isinstance(v, str) for v in metadata_raw.values()):
        raise bad("__metadata__ must map strings to strings")
    metadata: dict[str, str] = dict(metadata_raw)
    data_size = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for tname, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {tname!r}: needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPE_BITS:
            raise bad(f"tensor {tname!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad(f"tensor {tname!r}: shape must be a list of non-negative integers, got {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise bad(f"tensor {tname!r}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offsets!r}")
        bits = math.prod(shape) * SAFETENSORS_DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
            raise bad(
                f"tensor {tname!r}: {dtype} {shape} needs {bits // 8 if bits % 8 == 0 else bits / 8} bytes but "
                f"data_offsets span "
                f"{offsets[1] - offsets[0]}"
            )
        spans.append((offsets[0], offsets[1], tname))
    spans.sort()
    pos = 0
    for begin, end, tname in spans:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a gap of {begin - pos} bytes"
            raise bad(f"tensor {tname!r}: data_offsets {begin} {what}")
        pos = end
    if pos != data_size:
        raise bad(f"tensors cover {pos} bytes but the data section holds {data_size} (truncated or padded file)")
    return header, metadata


def _safetensors_info(files: Sequence[InputFile]) -> SafetensorsInfo:
    shards = sorted((f for f in files if f.rel_path.endswith(".safetensors")), key=lambda f: f.rel_path)
    dtypes: Counter[str] = Counter()
    params = 0
    metadata: dict[str, str] = {}
    tensors_by_file: dict[str, set[str]] = {}
    for f in shards:
        tensors, meta = read_safetensors_header(f.source, name=f.rel_path)
        tensors_by_file[f.rel_path] = set(tensors)
        for entry in tensors.values():
            dtypes[entry["dtype"]] += 1
            params += math.prod(entry["shape"])
        if meta and not metadata:
            metadata = meta
    indexes = sorted((f for f in files if f.rel_path.endswith(".safetensors.index.json")), key=lambda f: f.rel_path)
    for index in indexes:
        _check_index(index, tensors_by_file)
    return SafetensorsInfo(
        files=[f.rel_path for f in shards],
        tensor_count=sum(len(t) for t in tensors_by_file.values()),
        parameter_count=params,
        dtypes=dict(sorted(dtypes.items())),
        metadata=metadata,
        index=indexes[0].rel_path if indexes else None,
    )


def _check_index(index: InputFile, tensors_by_file: dict[str, set[str]]) -> None:
    """Check that a ``*.safetensors.index.json`` names only shards that exist and tensors those shards hold."""

    def bad(why: str) -> InputError:
        return InputError(f"{index.rel_path}: invalid safetensors index: {why}", where=str(index.source))

    if index.size > MAX_INDEX_JSON:
        raise bad(f"{index.size} bytes, larger than the {MAX_INDEX_JSON}-byte limit")
    try:
        doc = json.loads(index.source.read_bytes().decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(str(e)) from e
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise bad("needs a non-empty weight_map object")
    base = index.rel_path.rpartition("/")[0]
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or "/" in shard or shard in {"", ".", ".."}:
            raise bad(f"tensor {tensor!r}: shard must be a file name beside the index, got {shard!r}")
        rel = f"{base}/{shard}" if base else shard
        if rel not in tensors_by_file:
            raise bad(f"tensor {tensor!r} is mapped to {shard!r}, which is not among the model's safetensors files")
        if tensor not in tensors_by_file[rel]:
            raise bad(f"tensor {tensor!r} is mapped to {shard!r}, whose header does not hold it")


# ---------------------------------------------------------------------------------------------------------------------
# GGUF


def _quantization_name(value: Any) -> str | None:
    from gguf import LlamaFileType

    if value is None:
        return None
    try:
        name = LlamaFileType(int(value)).name
    except ValueError:
        return str(value)
    return {"ALL_F32": "F32", "GUESSED": "GUESSED"}.get(name, name.removeprefix("MOSTLY_"))


class _GgufStream:
    """A streaming reader of a GGUF header: metadata scalars and tensor infos, never the tensor data.

    ``gguf.GGUFReader`` turns every metadata array element into numpy objects: on the real Gemma 3 270M (262,144
    tokenizer entries) it takes over a minute and 700+ MB of RSS. This reader walks the same layout (GGUF v2/v3,
    either byte order) through a buffered file, keeps scalar values, skips arrays by length, and takes every format
    constant (value types, quantization block sizes, file types) from the ``gguf`` package. Tests check it agrees
    with ``GGUFReader`` on every file they write.
    """

    _SCALARS: dict[int, str] = {}

    def __init__(self, fh: BinaryIO, size: int) -> None:
        from gguf import GGUFValueType

        self.fh = fh
        self.size = size
        self.order = "<"
        if not _GgufStream._SCALARS:
            _GgufStream._SCALARS.update(
                {
                    GGUFValueType.UINT8: "B",
                    GGUFValueType.INT8: "b",
                    GGUFValueType.UINT16: "H",
                    GGUFValueType.INT16: "h",
                    GGUFValueType.UINT32: "I",
                    GGUFValueType.INT32: "i",
                    GGUFValueType.FLOAT32: "f",
                    GGUFValueType.BOOL: "?",
                    GGUFValueType.UINT64: "Q",
                    GGUFValueType.INT64: "q",
                    GGUFValueType.FLOAT64: "d",
                }
            )

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise ValueError(f"file ends inside the header (wanted {n} bytes at offset {self.fh.tell() - len(data)})")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(self.order + fmt, self.read(struct.calcsize(fmt)))[0]

    def skip(self, n: int) -> None:
        pos = self.fh.tell()
        if n < 0 or pos + n > self.size:
            raise ValueError(f"a length of {n} at offset {pos} runs past the end of the {self.size}-byte file")
        self.fh.seek(n, 1)

    def skip_strings(self, count: int, key: str) -> None:
        """Skip ``count`` length-prefixed strings, parsing lengths from 1 MiB blocks (a vocabulary has 100k+)."""
        fmt = self.order + "Q"
        buf, pos = b"", 0
        for _ in range(count):
            if len(buf) - pos < 8:
                buf, pos = buf[pos:] + self.fh.read(1 << 20), 0
                if len(buf) < 8:
                    raise ValueError(f"{key}: file ends inside a string array")
            (n,) = struct.unpack_from(fmt, buf, pos)
            pos += 8
            if n <= len(buf) - pos:
                pos += n
            else:  # a string longer than what is buffered: continue from the file
                self.skip(n - (len(buf) - pos))
                buf, pos = b"", 0
        self.fh.seek(pos - len(buf), 1)  # give back what was read ahead

    def string(self, what: str) -> str:
        n = self.unpack("Q")
        if n > self.size - self.fh.tell():
            raise ValueError(f"{what}: string length {n} runs past the end of the file")
        try:
            return self.read(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{what}: string is not UTF-8") from e

    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        """Read one value; arrays are skipped (``None``), scalars and strings returned."""
        from gguf import GGUFValueType

        if vtype in self._SCALARS:
            return self.unpack(self._SCALARS[vtype])
        if vtype == GGUFValueType.STRING:
            return self.string(key)
        if vtype == GGUFValueType.ARRAY:
            if depth > 4:
                raise ValueError(f"{key}: arrays nested deeper than 4 levels")
            item_type, count = self.unpack("I"), self.unpack("Q")
            if item_type in self._SCALARS:
                self.skip(count * struct.calcsize(self._SCALARS[item_type]))
            elif item_type == GGUFValueType.STRING:
                if count > (self.size - self.fh.tell()) // 8:
                    raise ValueError(f"{key}: {count} strings cannot fit in the rest of the file")
                self.skip_strings(count, key)
            elif item_type == GGUFValueType.ARRAY:
                for _ in range(count):
                    self.value(item_type, key, depth + 1)
            else:
                raise ValueError(f"{key}: unknown array item type {item_type}")
            return None
        raise ValueError(f"{key}: unknown value type {vtype}")


def _parse_gguf(fh: BinaryIO, size: int) -> tuple[dict[str, Any], list[tuple[str, str, int, int, int]]]:
    """Return ``(metadata scalars, tensors as (name, type, elements, offset, bytes))`` of a GGUF stream."""
    from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType

    r = _GgufStream(fh, size)
    if r.read(4) != _GGUF_MAGIC:
        raise ValueError("bad magic")
    raw_version = r.read(4)
    version = struct.unpack("<I", raw_version)[0]
    if version & 0xFFFF == 0:  # written for the other byte order, as GGUFReader detects it
        r.order = ">"
        version = struct.unpack(">I", raw_version)[0]
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version} (2 and 3 are read)")
    tensor_count, kv_count = r.unpack("Q"), r.unpack("Q")
    if kv_count > size // 12 or tensor_count > size // 24:  # smallest possible kv and tensor-info records
        raise ValueError(f"{kv_count} metadata entries and {tensor_count} tensors cannot fit in {size} bytes")
    meta: dict[str, Any] = {"GGUF.version": version}
    seen: set[str] = set()
    for _ in range(kv_count):
        key = r.string("metadata key")
        if key in seen:
            raise ValueError(f"duplicate metadata key {key!r}")
        seen.add(key)
        value = r.value(r.unpack("I"), key)
        if value is not None:
            meta[key] = value
    infos: list[tuple[str, int, int, int]] = []
    names: set[str] = set()
    for _ in range(tensor_count):
        name = r.string("tensor name")
        if name in names:
            raise ValueError(f"duplicate tensor {name!r}")
        names.add(name)
        n_dims = r.unpack("I")
        if n_dims > 4:
            raise ValueError(f"tensor {name!r}: {n_dims} dimensions (GGML allows 4)")
        dims = [r.unpack("Q") for _ in range(n_dims)]
        ttype, offset = r.unpack("I"), r.unpack("Q")
        try:
            qtype = GGMLQuantizationType(ttype)
        except ValueError:
            raise ValueError(f"tensor {name!r}: unknown tensor type {ttype}") from None
        block, type_size = GGML_QUANT_SIZES[qtype]
        if dims and dims[0] % block:
            raise ValueError(f"tensor {name!r}: first dimension {dims[0]} is not a multiple of the {block} block")
        infos.append((name, ttype, math.prod(dims), offset))
    alignment = meta.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"general.alignment {alignment!r} is not a power of two")
    data_start = -(-fh.tell() // alignment) * alignment
    tensors: list[tuple[str, str, int, int, int]] = []
    for name, ttype, n_elements, offset in infos:
        qtype = GGMLQuantizationType(ttype)
        block, type_size = GGML_QUANT_SIZES[qtype]
        n_bytes = n_elements * type_size // block
        if offset % alignment:
            raise ValueError(f"tensor {name!r}: data offset {offset} is not aligned to {alignment}")
        end = data_start + offset + n_bytes
        if end > size:
            raise ValueError(f"tensor {name!r} ends at byte {end}, past the end of the {size}-byte file (truncated)")
        tensors.append((name, qtype.name, n_elements, offset, n_bytes))
    spans = sorted((t[3], t[3] + t[4], t[0]) for t in tensors)
    for (_, prev_end, prev), (begin, _, name) in zip(spans, spans[1:], strict=False):
        if begin < prev_end:
            raise ValueError(f"tensor {name!r} overlaps tensor {prev!r}")
    return meta, tensors


def _read_gguf(f: InputFile) -> tuple[dict[str, Any], Counter[str], int, int]:
    """Return ``(metadata, tensor types, tensor count, parameter count)`` of one GGUF file, or raise ``InputError``."""
    try:
        with open(f.source, "rb", buffering=1 << 20) as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            magic = fh.read(4)
            if magic != _GGUF_MAGIC:
                raise InputError(
                    f"{f.rel_path}: not a valid GGUF file: magic is {magic!r}, expected {_GGUF_MAGIC!r}",
                    where=str(f.source),
                )
            fh.seek(0)
            meta, tensors = _parse_gguf(fh, size)
    except OSError as e:
        raise InputError(f"{f.rel_path}: cannot read: {e.strerror or e}", where=str(f.source)) from e
    except (ValueError, struct.error, OverflowError) as e:
        raise InputError(f"{f.rel_path}: not a valid GGUF file: {e}", where=str(f.source)) from e
    types: Counter[str] = Counter(t[1] for t in tensors)
    return meta, types, len(tensors), sum(t[2] for t in tensors)


def _gguf_infos(files: Sequence[InputFile]) -> list[GgufInfo]:
    parts = [f for f in files if f.rel_path.endswith(".gguf")]
    groups: dict[tuple[str, ...], list[tuple[int, InputFile, dict[str, Any], Counter[str], int, int]]] = {}
    for f in parts:
        meta, types, count, params = _read_gguf(f)
        split_count = meta.get("split.count")
        if split_count is not None and int(split_count) > 1:
            # llama.cpp split naming: <prefix>-00001-of-00003.gguf
            stem = f.rel_path.rsplit("-", 3)[0] if "-of-" in f.rel_path else f.rel_path
            key: tuple[str, ...] = ("split", stem, str(split_count))
            no = int(meta.get("split.no", 0))
        else:
            key, no = ("file", f.rel_path), 0
        groups.setdefault(key, []).append((no, f, meta, types, count, params))
    infos = []
    for key, members in sorted(groups.items()):
        members.sort(key=lambda m: m[0])
        if key[0] == "split":
            expected = int(key[2])
            numbers = [m[0] for m in members]
            if numbers != list(range(expected)):
                names = ", ".join(m[1].rel_path for m in members)
                raise InputError(
                    f"{members[0][1].rel_path}: GGUF split set has parts {numbers} of {expected} ({names})",
                    where=str(members[0][1].source),
                    hint="bundle every part of a split GGUF model",
                )
        first = members[0][2]
        arch = first.get("general.architecture")
        types = sum((m[3] for m in members), Counter())
        ctx = first.get(f"{arch}.context_length") if isinstance(arch, str) else None
        infos.append(
            GgufInfo(
                files=[m[1].rel_path for m in members],
                architecture=arch if isinstance(arch, str) else None,
                name=first["general.name"] if isinstance(first.get("general.name"), str) else None,
                quantization=_quantization_name(first.get("general.file_type")),
                tensor_count=sum(m[4] for m in members),
                parameter_count=sum(m[5] for m in members),
                tensor_types=dict(sorted(types.items())),
                context_length=int(ctx) if ctx is not None else None,
                gguf_version=int(first.get("GGUF.version") or 0),
            )
        )
    return infos


# ---------------------------------------------------------------------------------------------------------------------
# Detection


def _starts_with(f: InputFile, prefixes: tuple[bytes, ...]) -> bool:
    try:
        with open(f.source, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise InputError(f"{f.rel_path}: cannot read: {e.strerror or e}", where=str(f.source)) from e
    return head.startswith(prefixes)


def _is_pytorch(f: InputFile) -> bool:
    if not f.rel_path.endswith(_PYTORCH_SUFFIXES):
        return False
    # torch.save: a zip archive (>= 1.6) or a pickle (protocol 2-5: 0x80 then the protocol number).
    return _starts_with(f, (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"))


def detect_model_format(files: Sequence[InputFile], declared: str = "auto", *, model: str = "") -> ModelFormatInfo:
    """Detect the weight format of a model from its files and summarize its headers.

    ``declared`` is the spec's ``format`` (``auto`` to detect); ``model`` names the model in messages. Raises
    ``InputError`` for a malformed safetensors or GGUF header (naming the file) and for a declared format none of the
    files has.
    """
    if declared not in ("auto", *_PRECEDENCE):
        raise InputError(f"unknown model format {declared!r}; use auto, safetensors, gguf, pytorch or onnx")
    by_format: dict[DetectedFormat, list[str]] = {
        "safetensors": [f.rel_path for f in files if f.rel_path.endswith(".safetensors")],
        "gguf": [f.rel_path for f in files if f.rel_path.endswith(".gguf")],
        "onnx": [f.rel_path for f in files if f.rel_path.endswith(".onnx")],
        "pytorch": [f.rel_path for f in files if _is_pytorch(f)],
    }
    present = [fmt for fmt in _PRECEDENCE if by_format[fmt]]
    if declared != "auto" and declared not in present:
        found = ", ".join(f"{fmt} ({', '.join(by_format[fmt][:3])})" for fmt in present) or "no weight files"
        raise InputError(
            f"model {model or '?'}: the spec declares format {declared!r}, but the model holds {found}",
            hint="fix the spec's format, or use format: auto",
        )
    fmt: DetectedFormat = declared if declared != "auto" else (present[0] if present else "unknown")  # type: ignore[assignment]
    safetensors = _safetensors_info(files) if by_format["safetensors"] else None
    gguf = _gguf_infos(files) if by_format["gguf"] else []
    return ModelFormatInfo(
        format=fmt,
        formats_present=present,
        weight_files=sorted(by_format[fmt]) if fmt != "unknown" else [],
        safetensors=safetensors,
        gguf=gguf,
    )
