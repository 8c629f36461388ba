#!/usr/bin/python
"""Ansible module: place a set of files in a directory, each checked against its sha256 on the host, atomically."""

from __future__ import annotations

import base64
import errno
import fnmatch
import hashlib
import os
import re
import stat
import tarfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_files
short_description: Install files whose sha256 digests are known, verified on the host and renamed into place
description:
  - Runs in two phases driven by the gapseal_files action plugin. C(plan) hashes what is already in I(dest) and
    reports which digests are missing (and which files are extra); the action plugin then copies only those blobs
    into I(staging) as C(<hex>.partial). C(commit) hashes every staged blob on the host, refuses a digest or size
    mismatch, fsyncs it and renames it into place, so a file under I(dest) is always complete and verified.
  - A kill at any moment leaves at most C(*.partial) files in I(staging); the next run deletes them first.
  - Files under I(dest) that are not in I(files) are removed when I(prune) is true (the default), so the directory
    holds exactly the bundle's files.
options:
  dest: {description: Absolute directory to install into., type: path, required: true}
  staging: {description: Absolute staging directory on the same filesystem as I(dest)., type: path, required: true}
  files:
    description: Files as C({path, digest, size}); path is relative to I(dest), digest is C(sha256:<hex>).
    type: list
    elements: dict
    required: true
  executable:
    description: Glob patterns (relative paths) of files installed with mode 0755; others get 0644.
    type: list
    elements: str
    default: []
  prune: {description: Remove files under I(dest) that are not listed., type: bool, default: true}
  phase: {description: Internal, set by the action plugin., type: str, choices: [plan, commit], default: plan}
  batches: {description: Internal. Tar files of small blobs in I(staging) (commit)., type: list, elements: path}
  inline:
    description:
      - Internal. Small blobs sent inside the arguments, C({<hex digest>: <base64>}) (commit); written to I(staging)
        and then verified like any transferred blob.
    type: dict
"""

RETURN = r"""
missing: {description: Digests (C(sha256:<hex>)) that must be transferred., type: list, returned: always}
extra: {description: Files under dest that are not in the list (removed on commit when prune)., type: list, returned: always}
installed: {description: Relative paths written by commit., type: list, returned: always}
files: {description: Every managed file as C({path (absolute), digest, size})., type: list, returned: always}
"""


CHUNK = 4 * 1024 * 1024
DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def _sha256(path):
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(view)
            if not n:
                break
            h.update(view[:n])
            size += n
    return "sha256:" + h.hexdigest(), size


def _mode_for(rel, executable):
    return 0o755 if any(fnmatch.fnmatch(rel, pat) for pat in executable) else 0o644


def _check_entries(module, files):
    seen = set()
    for f in files:
        rel = f.get("path")
        digest = f.get("digest")
        size = f.get("size")
        if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel:
            module.fail_json(msg=f"file path {rel!r} must be a relative posix path")
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            module.fail_json(msg=f"file path {rel!r} must not contain empty, '.' or '..' parts")
        if rel in seen:
            module.fail_json(msg=f"file path {rel!r} is listed twice")
        seen.add(rel)
        if not isinstance(digest, str) or not DIGEST.match(digest):
            module.fail_json(msg=f"file {rel!r}: digest {digest!r} is not sha256:<64 hex>")
        if not isinstance(size, int) or size < 0:
            module.fail_json(msg=f"file {rel!r}: size {size!r} is not a non-negative integer")


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current(dest, rel, size, mode):
    """Return True when dest/rel is a regular file (not a link) with this size, mode and (checked later) digest."""
    path = os.path.join(dest, rel)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False, None
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return False, None
    return True, stat.S_IMODE(st.st_mode) == mode


def _plan(module, dest, staging, files, executable, prune, clean):
    missing = []
    stale = []  # present with the right digest, wrong mode
    for f in files:
        rel, digest, size = f["path"], f["digest"], f["size"]
        mode = _mode_for(rel, executable)
        exists, mode_ok = _current(dest, rel, size, mode)
        if exists and _sha256(os.path.join(dest, rel))[0] == digest:
            if not mode_ok:
                stale.append(rel)
            continue
        if digest not in missing:
            missing.append(digest)
    listed = {f["path"] for f in files}
    extra = []
    if prune and os.path.isdir(dest):
        for root, dirs, names in os.walk(dest):
            for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                rel = os.path.relpath(os.path.join(root, name), dest)
                if rel not in listed:
                    extra.append(rel)
    leftovers = []
    if os.path.isdir(staging):
        leftovers = sorted(os.listdir(staging))
        if clean:
            for name in leftovers:
                p = os.path.join(staging, name)
                if os.path.isfile(p) or os.path.islink(p):
                    os.unlink(p)
    return missing, sorted(extra), stale, leftovers


def _place(staged, target):
    """Rename the verified staged file onto target; fall back to copy + rename when they are on two filesystems."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.replace(staged, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.gapseal-tmp")
        with open(staged, "rb") as src, open(tmp, "wb") as dst:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
        os.unlink(staged)
    _fsync_dir(os.path.dirname(target))


def _unpack_batches(module, staging, batches, wanted):
    """Unpack the small-file batches (tar) into staging; only regular members named <wanted hex>.partial."""
    for batch in batches:
        if os.path.dirname(os.path.abspath(batch)) != os.path.abspath(staging):
            module.fail_json(msg=f"batch {batch} is not in the staging directory {staging}")
        with tarfile.open(batch, "r:") as tar:
            for member in tar:
                name = member.name
                if not member.isreg() or not name.endswith(".partial") or name[: -len(".partial")] not in wanted:
                    module.fail_json(msg=f"batch {batch}: unexpected member {name!r}")
                src = tar.extractfile(member)
                with open(os.path.join(staging, name), "wb") as out:
                    while True:
                        chunk = src.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
        os.unlink(batch)


def _write_inline(module, staging, inline, wanted):
    """Write the blobs that came inside the arguments (base64, by hex digest) into staging as <hex>.partial."""
    if inline:
        os.makedirs(staging, exist_ok=True)
    for hexd, data in inline.items():
        if hexd not in wanted:
            module.fail_json(msg=f"inline blob {hexd} is not one this commit is missing")
        try:
            raw = base64.b64decode(data, validate=True)
        except (TypeError, ValueError) as e:
            module.fail_json(msg=f"inline blob {hexd} is not base64: {e}")
        with open(os.path.join(staging, hexd + ".partial"), "wb") as out:
            out.write(raw)


def _commit(module, dest, staging, files, executable, prune, missing, extra, stale):
    by_digest = {}
    for f in files:
        by_digest.setdefault(f["digest"], []).append(f)
    installed = []
    for digest in missing:
        hexd = DIGEST.match(digest).group(1)
        staged = os.path.join(staging, hexd + ".partial")
        if not os.path.isfile(staged) or os.path.islink(staged):
            module.fail_json(msg=f"blob {digest} was not transferred to {staged}")
        got, size = _sha256(staged)
        want_size = by_digest[digest][0]["size"]
        if got != digest or size != want_size:
            os.unlink(staged)
            module.fail_json(
                msg=f"{', '.join(f['path'] for f in by_digest[digest])}: content on the host does not match the bundle: "
                f"expected {digest} ({want_size} bytes), got {got} ({size} bytes)"
            )
        fd = os.open(staged, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        targets = by_digest[digest]
        for i, f in enumerate(targets):
            rel = f["path"]
            target = os.path.join(dest, rel)
            os.chmod(staged, _mode_for(rel, executable))
            if i < len(targets) - 1:  # several files with one content: copy for all but the last
                copy = f"{staged}.{i}"
                with open(staged, "rb") as src, open(copy, "wb") as dst:
                    dst.write(src.read())
                    dst.flush()
                    os.fsync(dst.fileno())
                _place(copy, target)
            else:
                _place(staged, target)
            installed.append(rel)
    for rel in stale:
        os.chmod(os.path.join(dest, rel), _mode_for(rel, executable))
        installed.append(rel)
    for rel in extra if prune else []:
        p = os.path.join(dest, rel)
        if os.path.islink(p) or not os.path.isdir(p):
            os.unlink(p)
    if prune and os.path.isdir(dest):  # drop directories left empty by pruning
        for root, _dirs, _names in os.walk(dest, topdown=False):
            if root != dest and not os.listdir(root):
                os.rmdir(root)
    if os.path.isdir(staging) and not os.listdir(staging):
        os.rmdir(staging)
    return sorted(installed)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            staging=dict(type="path", required=True),
            files=dict(type="list", elements="dict", required=True),
            executable=dict(type="list", elements="str", default=[]),
            prune=dict(type="bool", default=True),
            phase=dict(type="str", choices=["plan", "commit"], default="plan"),
            batches=dict(type="list", elements="path", default=[]),
            inline=dict(type="dict", default={}, no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    dest, staging, files = p["dest"], p["staging"], p["files"]
    for name, value in (("dest", dest), ("staging", staging)):
        if not os.path.isabs(value) or os.path.normpath(value) in ("/", ""):
            module.fail_json(msg=f"{name} {value!r} must be an absolute path below /")
    _check_entries(module, files)
    managed = sorted(
        ({"path": os.path.join(dest, f["path"]), "digest": f["digest"], "size": f["size"]} for f in files),
        key=lambda f: f["path"],
    )
    clean = not module.check_mode
    try:
        if p["phase"] == "plan":
            missing, extra, stale, leftovers = _plan(module, dest, staging, files, p["executable"], p["prune"], clean)
            if not module.check_mode:
                os.makedirs(dest, exist_ok=True)
                if missing:
                    os.makedirs(staging, exist_ok=True)
            module.exit_json(
                changed=bool(missing or extra or stale),
                missing=missing,
                extra=extra,
                stale_modes=stale,
                removed_partials=leftovers if clean else [],
                installed=[],
                files=managed,
            )
        missing, extra, stale, _ = _plan(module, dest, staging, files, p["executable"], p["prune"], clean=False)
        wanted = {DIGEST.match(d).group(1) for d in missing}
        _write_inline(module, staging, p["inline"], wanted)
        _unpack_batches(module, staging, p["batches"], wanted)
        installed = _commit(module, dest, staging, files, p["executable"], p["prune"], missing, extra, stale)
    except OSError as e:
        module.fail_json(msg="{}: {}".format(getattr(e, "filename", None) or dest, e.strerror or e))
    module.exit_json(changed=bool(installed or extra), missing=[], extra=extra, installed=installed, files=managed)


if __name__ == "__main__":
    main()
