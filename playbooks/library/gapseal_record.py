#!/usr/bin/python
"""Ansible module: write installed.json, the install record (gapseal.installer.record.InstalledRecord), atomically."""

from __future__ import annotations

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_record
short_description: Write the gapseal install record (installed.json) atomically and idempotently
description:
  - Builds the record from the bundle identity, the model and build directories and their file lists, sorts it,
    and writes it as JSON through a temporary file, fsync and rename. Unchanged content is not rewritten.
  - The document is the one gapseal.installer.record.InstalledRecord describes (JSON Schema
    installed-record.v1.schema.json); the auditor compares hosts against it.
options:
  path: {description: Absolute path of the record., type: path, required: true}
  root: {description: The host's gapseal_root., type: path, required: true}
  bundle: {description: "{name, version, manifest_digest, created}", type: dict, required: true}
  models:
    description: "Models as {name, dir, files: [{path, digest, size}]}, file paths relative to dir."
    type: list
    elements: dict
    default: []
  builds:
    description: "Chosen variants as {name, backend, arch, dir, files: [...]}, file paths relative to dir."
    type: list
    elements: dict
    default: []
  services:
    description: "Service units as {name, unit, state}."
    type: list
    elements: dict
    default: []
  images:
    description: "Container images pulled into podman's store as {name, digest, reference}."
    type: list
    elements: dict
    default: []
  current_sha256:
    description:
      - Action plugin option. The sha256 of the record on the host as the host state read it (C(sha256:<hex>)); when
        the record these options make has exactly that digest, nothing is sent to the host.
    type: str
"""

RETURN = r"""
record: {description: The document written., type: dict, returned: always}
"""


def _files(component, directory, files):
    return [
        {
            "path": os.path.join(directory, f["path"]),
            "digest": f["digest"],
            "size": int(f["size"]),
            "component": component,
        }
        for f in files
    ]


def build_record(p):
    files = []
    models = {}
    for m in p["models"]:
        models[m["name"]] = {"dir": m["dir"]}
        files += _files("model/{}".format(m["name"]), m["dir"], m.get("files", []))
    variants = {}
    for b in p["builds"]:
        variants[b["name"]] = {"backend": b["backend"], "arch": b["arch"], "dir": b["dir"]}
        files += _files("build/{}/{}".format(b["name"], b["backend"]), b["dir"], b.get("files", []))
    bundle = {k: p["bundle"][k] for k in ("name", "version", "manifest_digest", "created") if p["bundle"].get(k)}
    return {
        "kind": "gapseal.InstalledRecord",
        "version": 1,
        "root": p["root"],
        "bundle": bundle,
        "models": models,
        "variants": variants,
        "services": sorted(
            ({"name": s["name"], "unit": s["unit"], "state": s["state"]} for s in p["services"]),
            key=lambda s: s["name"],
        ),
        "images": sorted(
            ({"name": i["name"], "digest": i["digest"], "reference": i["reference"]} for i in p["images"]),
            key=lambda i: i["name"],
        ),
        "files": sorted(files, key=lambda f: f["path"]),
    }


def record_bytes(params):
    """The record for these parameters and the exact bytes written for it (sorted keys, two-space indent)."""
    record = build_record(params)
    return record, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            root=dict(type="path", required=True),
            bundle=dict(type="dict", required=True),
            models=dict(type="list", elements="dict", default=[]),
            builds=dict(type="list", elements="dict", default=[]),
            services=dict(type="list", elements="dict", default=[]),
            images=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        record, data = record_bytes(module.params)
    except (KeyError, TypeError, ValueError) as e:
        module.fail_json(msg=f"cannot build the install record: missing or malformed field {e}")
    try:
        with open(path, "rb") as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    except OSError as e:
        module.fail_json(msg=f"{path}: {e.strerror}")
    if current == data:
        module.exit_json(changed=False, record=record, path=path)
    if module.check_mode:
        module.exit_json(changed=True, record=record, path=path)
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".installed.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        module.fail_json(msg="{}: {}".format(getattr(e, "filename", None) or path, e.strerror or e))
    module.exit_json(changed=True, record=record, path=path)


if __name__ == "__main__":
    main()
