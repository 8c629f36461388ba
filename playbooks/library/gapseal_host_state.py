#!/usr/bin/python
"""Ansible module: read everything the install plans from on a host, in one call (changes nothing)."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import json
import os
import platform
import stat
import subprocess
import sys

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_host_state
short_description: One read-only look at a host - python, architecture, free space, hardware probes, installed files
description:
  - The install's first and, on an unchanged host, only module call per host. It reads; it never writes, so check mode
    runs it in full. The C(gapseal_host_state) action plugin turns its output into the facts the roles plan from.
  - I(preflight), when given, checks the host can take the install (Python version, architecture, free space on the
    filesystem that will hold I(root), writable) and fails with the reason, before anything is written.
  - I(probes) runs the hardware tools (C(nvidia-smi), C(rocminfo), C(vulkaninfo), C(uname -m), C(getconf
    GNU_LIBC_VERSION), C(ldconfig -p)) and reads I(cpuinfo_path); their raw output is parsed on the controller.
  - I(file_sets) hashes every file a set lists that is present under its I(dest) with the expected size (fail closed:
    a file counts as installed only when its sha256 on the host matches), and lists the digests still missing, the
    files under I(dest) that are not listed, and the files whose mode is wrong. A set with none of them, and no
    leftover in I(staging), is C(current).
  - I(build_dirs) reads each build's C(current.json) and C(.previous/meta.json) bundle digests (the rollback state).
  - I(record_path) is hashed (the install record as it is now).
options:
  root: {description: The host's gapseal_root (may not exist yet)., type: path, default: /}
  preflight:
    description: >-
      C({files: [{path (relative to root), size}], arches, min_python, reserve_bytes, python_modules: [{name,
      package, purpose}]}); omit to skip. Each of I(python_modules) must import in the host's Python (modules outside
      what every Python carries, e.g. C(ensurepip), which Debian ships in C(python3-venv)); a missing one fails the
      preflight naming the package to install.
    type: dict
  probes: {description: Run the hardware probes., type: bool, default: false}
  timeout: {description: Seconds each hardware tool may run., type: int, default: 60}
  cpuinfo_path: {description: The cpuinfo file to read., type: path, default: /proc/cpuinfo}
  file_sets:
    description: "C([{dest, staging, files: [{path, digest, size}], executable: [globs], prune}])."
    type: list
    elements: dict
    default: []
  build_dirs: {description: "<builds dir>/<build> directories.", type: list, elements: path, default: []}
  record_path: {description: The install record's path., type: path}
  files_sha256: {description: Further files to hash (the egress drop-in)., type: list, elements: path, default: []}
  units: {description: "Units whose C(systemctl is-enabled) state to read (where systemd runs).", type: list,
          elements: str, default: []}
  nft_tables: {description: "nftables C(inet) tables to look for (C(nft list table)).", type: list, elements: str,
               default: []}
  nft: {description: The nft executable., type: path, default: /usr/sbin/nft}
"""

RETURN = r"""
preflight: {description: "arch, machine, python, python_executable, filesystem, free_bytes, needed_bytes.", type: dict}
probes: {description: "Per probe (PROBE_COMMANDS keys and cpuinfo) {present, rc, stdout, stderr, error}.", type: dict}
file_sets: {description: "Per dest {current, missing, extra, stale_modes, leftovers, files}.", type: dict}
builds: {description: "Per build dir {current, previous}: the manifest digests of current.json and .previous.", type: dict}
record_sha256: {description: "sha256 of the install record, or null when there is none.", type: str}
systemd: {description: Whether systemd runs the host (/run/systemd/system exists)., type: bool}
files_sha256: {description: "Per path C({sha256, mode, dir_mode}), or null when it is not a regular file.", type: dict}
units: {description: "Per unit its C(systemctl is-enabled) answer (only where systemd runs).", type: dict}
nft_tables: {description: Per table whether it is loaded (false without nft)., type: dict}
"""

ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# Keep equal to gapseal.installer.hardware.PROBE_COMMANDS (a unit test compares them).
PROBE_COMMANDS = {
    "nvidia_smi_xml": ["nvidia-smi", "-q", "-x"],
    "nvidia_smi_query": ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,uuid", "--format=csv"],
    "rocminfo": ["rocminfo"],
    "vulkaninfo": ["vulkaninfo", "--summary"],
    "uname_m": ["uname", "-m"],
    "glibc": ["getconf", "GNU_LIBC_VERSION"],
    "ldconfig": ["ldconfig", "-p"],
}
MAX_OUTPUT = 8 * 1024 * 1024
CHUNK = 4 * 1024 * 1024


class PreflightError(Exception):
    """The host cannot take the install; the message says why."""


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return str(n)


def missing_python_modules(modules):
    """The entries of ``modules`` ({name, package, purpose}) whose module does not import in this Python."""
    missing = []
    for m in modules:
        try:
            importlib.import_module(str(m["name"]))
        except ImportError:
            missing.append(m)
    return missing


def preflight(root, files, arches, min_python, reserve_bytes, python_modules=()):
    """Return the preflight facts; raise PreflightError (with the facts so far) when the host cannot take it."""
    machine = platform.machine()
    arch = ARCHES.get(machine, machine)
    python = "{}.{}.{}".format(*sys.version_info[:3])
    facts = {"arch": arch, "machine": machine, "python": python, "python_executable": sys.executable}
    want = tuple(int(x) for x in str(min_python).split("."))
    if sys.version_info[: len(want)] < want:
        raise PreflightError(f"python {python} on the host is older than the required {min_python}", facts)
    missing = missing_python_modules(python_modules)
    if missing:
        packages = sorted({str(m["package"]) for m in missing})
        raise PreflightError(
            "{} (python {}) on the host cannot import {}, needed for {}: install {} on the host (Debian, Ubuntu: "
            "apt-get install {}), then run the install again".format(
                sys.executable,
                python,
                ", ".join(str(m["name"]) for m in missing),
                "; ".join(sorted({str(m["purpose"]) for m in missing})),
                " and ".join(packages),
                " ".join(packages),
            ),
            facts,
        )
    if arches and arch not in arches:
        raise PreflightError(
            "host architecture {} ({}) has no build in this bundle (bundle has: {})".format(
                arch, machine, ", ".join(sorted(arches))
            ),
            facts,
        )
    if not os.path.isabs(root):
        raise PreflightError(f"gapseal_root {root!r} must be an absolute path", facts)
    needed = 0
    for f in files:
        try:
            if os.lstat(os.path.join(root, f["path"])).st_size == int(f["size"]):
                continue
        except OSError:
            pass
        needed += int(f["size"])
    probe = root
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    facts.update({"filesystem": probe, "free_bytes": free, "needed_bytes": needed})
    if needed + reserve_bytes > free:
        raise PreflightError(
            f"not enough free space for the install: {_human(needed + reserve_bytes)} to write under {root}, "
            f"but the filesystem of {probe} has {_human(free)} free",
            facts,
        )
    if not os.access(probe, os.W_OK):
        raise PreflightError("{} is not writable by {}".format(probe, os.environ.get("USER", "this user")), facts)
    return facts


def _absent():
    return {"present": False, "rc": None, "stdout": "", "stderr": "", "error": None}


def run_probe(module, argv, timeout):
    """Run one tool found on PATH; return {present, rc, stdout, stderr, error}."""
    path = module.get_bin_path(argv[0])
    if path is None:
        return _absent()
    try:
        done = subprocess.run(
            [path] + argv[1:], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"present": True, "rc": None, "stdout": "", "stderr": "", "error": f"timed out after {timeout}s"}
    except OSError as e:
        return {"present": True, "rc": None, "stdout": "", "stderr": "", "error": f"could not run: {e}"}
    out = done.stdout[:MAX_OUTPUT].decode("utf-8", "replace")
    err = done.stderr[:MAX_OUTPUT].decode("utf-8", "replace")
    return {"present": True, "rc": done.returncode, "stdout": out, "stderr": err, "error": None}


def read_cpuinfo(path):
    """Read the cpuinfo file as a probe result (absent when the file does not exist)."""
    if not os.path.exists(path):
        return _absent()
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_OUTPUT).decode("utf-8", "replace")
    except OSError as e:
        return {"present": True, "rc": None, "stdout": "", "stderr": "", "error": f"could not read: {e}"}
    return {"present": True, "rc": 0, "stdout": text, "stderr": "", "error": None}


def sha256_file(path):
    """Return (sha256:<hex>, size) of the file's content."""
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


def mode_for(rel, executable):
    """0755 for a path matching one of the executable globs, else 0644 (as gapseal_files installs it)."""
    return 0o755 if any(fnmatch.fnmatch(rel, pat) for pat in executable) else 0o644


def survey_files(dest, staging, files, executable, prune):
    """What gapseal_files would do in dest: the digests to send, the files to remove, the modes to mend.

    A listed file is installed only when it is a regular file (not a link) of the listed size whose sha256, computed
    here, is the listed digest; anything else is missing. The same rule as gapseal_files' plan (a unit test runs both
    on the same trees).
    """
    missing, stale = [], []
    for f in files:
        rel, digest, size = f["path"], f["digest"], int(f["size"])
        path = os.path.join(dest, rel)
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == size and sha256_file(path)[0] == digest:
            if stat.S_IMODE(st.st_mode) != mode_for(rel, executable):
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
    leftovers = bool(staging) and os.path.isdir(staging) and bool(os.listdir(staging))
    return {
        "current": not (missing or extra or stale or leftovers),
        "missing": missing,
        "extra": sorted(extra),
        "stale_modes": stale,
        "leftovers": leftovers,
    }


def _bundle_digest(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    bundle = data.get("bundle") if isinstance(data, dict) else None
    return bundle.get("manifest_digest") if isinstance(bundle, dict) else None


def build_state(build_dir):
    """The manifest digests of what the build runs now (current.json) and of the version kept before (.previous)."""
    return {
        "current": _bundle_digest(os.path.join(build_dir, "current.json")),
        "previous": _bundle_digest(os.path.join(build_dir, ".previous", "meta.json")),
    }


def file_state(path):
    """``{sha256, mode, dir_mode}`` of a regular file (modes as octal strings), or None when it is not one."""
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    return {
        "sha256": sha256_file(path)[0],
        "mode": f"{stat.S_IMODE(os.stat(path).st_mode):04o}",
        "dir_mode": f"{stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode):04o}",
    }


def unit_enabled(module, unit):
    """``systemctl is-enabled UNIT``'s answer (enabled, disabled, masked, not-found...)."""
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        return "no systemctl"
    rc, out, err = module.run_command([systemctl, "is-enabled", unit])
    return (out or err).strip().splitlines()[0] if (out or err).strip() else f"exit {rc}"


def nft_table_loaded(module, nft, table):
    """Whether ``inet TABLE`` is loaded (nft missing: not loaded)."""
    if not os.path.exists(nft):
        return False
    rc, _, _ = module.run_command([nft, "list", "table", "inet", table])
    return rc == 0


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/"),
            preflight=dict(type="dict", required=False),
            probes=dict(type="bool", default=False),
            timeout=dict(type="int", default=60),
            cpuinfo_path=dict(type="path", default="/proc/cpuinfo"),
            file_sets=dict(type="list", elements="dict", default=[]),
            build_dirs=dict(type="list", elements="path", default=[]),
            record_path=dict(type="path", required=False),
            files_sha256=dict(type="list", elements="path", default=[]),
            units=dict(type="list", elements="str", default=[]),
            nft_tables=dict(type="list", elements="str", default=[]),
            nft=dict(type="path", default="/usr/sbin/nft"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    if p["preflight"] is not None:
        pre = p["preflight"]
        try:
            result["preflight"] = preflight(
                p["root"],
                pre.get("files") or [],
                pre.get("arches") or [],
                pre.get("min_python") or "3.8",
                int(pre.get("reserve_bytes") or 0),
                pre.get("python_modules") or [],
            )
        except PreflightError as e:
            module.fail_json(msg=e.args[0], preflight=e.args[1], failed_check="preflight")
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout must be at least 1 second, got {p['timeout']}")
    if p["probes"]:
        probes = {name: run_probe(module, argv, p["timeout"]) for name, argv in PROBE_COMMANDS.items()}
        probes["cpuinfo"] = read_cpuinfo(p["cpuinfo_path"])
        result["probes"] = probes
    try:
        result["file_sets"] = {
            s["dest"]: survey_files(
                s["dest"], s.get("staging") or "", s.get("files") or [], s.get("executable") or [], s.get("prune", True)
            )
            for s in p["file_sets"]
        }
        result["builds"] = {d: build_state(d) for d in p["build_dirs"]}
        record = p["record_path"]
        result["record_sha256"] = sha256_file(record)[0] if record and os.path.isfile(record) else None
        result["files_sha256"] = {f: file_state(f) for f in p["files_sha256"]}
        result["systemd"] = os.path.isdir("/run/systemd/system")
        result["units"] = {u: unit_enabled(module, u) for u in p["units"]} if result["systemd"] else {}
        result["nft_tables"] = {t: nft_table_loaded(module, p["nft"], t) for t in p["nft_tables"]}
    except (KeyError, TypeError, ValueError) as e:
        module.fail_json(msg=f"malformed file set: {e}")
    except OSError as e:
        module.fail_json(msg="{}: {}".format(getattr(e, "filename", None) or p["root"], e.strerror or e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
