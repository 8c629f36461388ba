"""Test helpers that build real inputs, keys and signed bundles (no stand-ins): shared by every test suite."""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from gapseal.bundler.create import CreatedBundle, create_bundle
from gapseal.signing.keys import SigningKey, VerifyingKey, generate_key_pair, load_private_key, load_public_key

REPO = Path(__file__).resolve().parent.parent
MINILM = REPO / "examples" / "models" / "minilm"
"""The real MiniLM weights, fetched by ``make model`` (scripts/fetch-model.sh) before the tests run."""


@dataclass(frozen=True)
class KeyPair:
    """A signing key and its public half on disk."""

    private: SigningKey
    private_path: Path
    public: VerifyingKey
    public_path: Path


def make_keys(directory: Path, name: str = "signer") -> KeyPair:
    """Generate an unencrypted P-256 key pair under ``directory`` (tests generate their keys; none is committed)."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = generate_key_pair(directory / name, None)
    return KeyPair(load_private_key(private_path, None), private_path, load_public_key(public_path), public_path)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], *, fill: int = 1) -> None:
    """Write a real safetensors file: 8-byte header length, JSON header, then the tensor bytes."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I64": 8}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in sorted(tensors.items()):
        n = sizes[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(bytes([fill % 256]) * offset)


SPEC_TEMPLATE = """\
apiVersion: gapseal/v1
kind: Bundle
metadata:
  name: {name}
  version: {version}
  created: "2026-01-01T00:00:00Z"
{expires}models:
  - name: tiny
    path: models/tiny
files:
  - name: docs
    path: docs
builds:
  - name: server
    variants:
      - {{backend: cuda, arch: amd64, path: builds/cuda,
         requires: {{nvidia_driver: ">=535", compute_capability: ">=8.0"}}}}
      - {{backend: cpu, arch: amd64, path: builds/cpu, requires: {{cpu_flags: [avx2]}}}}
"""


def make_inputs(root: Path, *, name: str = "clinic", version: str = "1.0.0", expires: str | None = None) -> Path:
    """Write a small but real bundle input tree (safetensors model, docs, two build variants); return the spec."""
    write_safetensors(root / "models/tiny/model.safetensors", {"w": ("F32", [16, 16]), "b": ("F16", [16])})
    (root / "models/tiny/config.json").write_text('{"hidden_size": 16}\n')
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "docs/README.md").write_text("site notes\n")
    for backend in ("cuda", "cpu"):
        (root / f"builds/{backend}/bin").mkdir(parents=True, exist_ok=True)
        (root / f"builds/{backend}/bin/server").write_text(f"#!/bin/sh\necho {backend}\n")
    spec = root / "bundle.yaml"
    spec.write_text(
        SPEC_TEMPLATE.format(name=name, version=version, expires=f'  expires: "{expires}"\n' if expires else "")
    )
    return spec


def make_minilm_inputs(root: Path, *, version: str = "1.0.0") -> Path:
    """A spec over a copy of the real MiniLM weights plus a CPU build; return the spec path."""
    if not (MINILM / "model.safetensors").is_file():
        raise FileNotFoundError(f"{MINILM} is missing: run `make model` (scripts/fetch-model.sh) first")
    shutil.copytree(MINILM, root / "models/minilm")
    (root / "builds/cpu/bin").mkdir(parents=True)
    (root / "builds/cpu/bin/server").write_text("#!/bin/sh\necho cpu\n")
    spec = root / "bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        f'metadata: {{name: minilm-demo, version: {version}, created: "2026-01-01T00:00:00Z"}}\n'
        "models:\n  - {name: minilm, path: models/minilm}\n"
        "builds:\n  - name: server\n    variants:\n"
        "      - {backend: cpu, arch: amd64, path: builds/cpu, requires: {cpu_flags: [sse2]}}\n"
    )
    return spec


def make_bundle(tmp: Path, keys: KeyPair, **kwargs: str) -> CreatedBundle:
    """Inputs under tmp/in, bundle at tmp/bundle (copied, never linked: tamper tests must not alter inputs)."""
    spec = make_inputs(tmp / "in", **kwargs)
    return create_bundle(spec, keys.private, tmp / "bundle", link=False)
