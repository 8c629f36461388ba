"""Jinja filters for gapseal's roles: paths under gapseal_root, the chosen variant of each build, space needed.

Names and paths here come from the signed descriptor, which is still untrusted input (a trusted key can be careless
or stolen): every name that becomes a path component and every file path is checked by ``gapseal.names`` (the one
home of the rule, shared with create, verify, extract and apply), and every joined path must stay under its root
before a role may write there. A model named ``../../../etc/x`` fails here, on the controller, before any host is
touched. The paths are the hosts', so containment is checked on the normalized string, not on this machine's disk.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex

from ansible.errors import AnsibleFilterError

from gapseal.names import name_problem, path_problem


def _safe_name(what, name):
    """``name`` if it is one safe path component, else refuse naming ``what``."""
    problem = name_problem(str(name))
    if problem is not None:
        raise AnsibleFilterError(f"{what}: {problem}; refusing to build a path from it")
    return str(name)


def _safe_files(what, files):
    """``files`` if every ``path`` is a safe relative path, else refuse naming ``what`` and the path."""
    for f in files or []:
        problem = path_problem(str(f.get("path", "")))
        if problem is not None:
            raise AnsibleFilterError(f"{what}: file {problem}; refusing to install it")
    return files


def gapseal_path(root, *parts):
    """Join ``parts`` under ``root`` (``/`` or a prefix) into one normalized absolute path that stays under it.

    A leading ``/`` of a part is dropped (parts are relative to ``root``); a part that is not a safe relative path
    (``..``, empty or ``.`` components, control characters, over-long) is refused, and so is a result outside ``root``.
    """
    root = root or "/"
    if not posixpath.isabs(root):
        raise AnsibleFilterError(f"gapseal_root {root!r} must be an absolute path")
    relative = []
    for p in parts:
        part = str(p).lstrip("/").rstrip("/")
        problem = path_problem(part)
        if problem is not None:
            raise AnsibleFilterError(f"path under {root!r}: {problem}")
        relative.append(part)
    base = posixpath.normpath(root)
    joined = posixpath.normpath(posixpath.join(base, *relative))
    if base != "/" and joined != base and not joined.startswith(base + "/"):  # pragma: no cover - parts checked
        raise AnsibleFilterError(f"{joined!r} is outside {base!r}")
    return joined


def _choice(variants_fact, build_name):
    """Return (backend, arch) chosen for ``build_name`` from the gapseal_variants fact, or None."""
    entry = (variants_fact or {}).get(build_name)
    if not entry:
        return None
    chosen = entry.get("chosen", entry) if isinstance(entry, dict) else None
    if not isinstance(chosen, dict) or not chosen.get("backend"):
        return None
    return chosen["backend"], chosen.get("arch")


def gapseal_selected_variants(builds, variants_fact, builds_dir):
    """Return ``[{name, backend, arch, dir, files}]``: per build, the variant the hardware facts chose.

    A build without a choice raises: the hardware role fails such a host first, with every variant's reasons.
    """
    selected = []
    for build in builds or []:
        _safe_name("build name", build["name"])
        choice = _choice(variants_fact, build["name"])
        if choice is None:
            raise AnsibleFilterError("no variant chosen for build {!r} on this host".format(build["name"]))
        backend, arch = choice
        match = [v for v in build["variants"] if v["backend"] == backend and (arch is None or v["arch"] == arch)]
        if not match:
            raise AnsibleFilterError("build {!r} has no {}/{} variant".format(build["name"], backend, arch))
        variant = match[0]
        _safe_name(f"build {build['name']!r} backend", variant["backend"])
        _safe_files(f"build {build['name']!r}", variant["files"])
        selected.append(
            {
                "name": build["name"],
                "backend": variant["backend"],
                "arch": variant["arch"],
                "dir": gapseal_path(builds_dir, build["name"], variant["backend"]),
                "files": variant["files"],
            }
        )
    return selected


def gapseal_model_dirs(models, models_dir):
    """Return ``[{name, dir, files}]``: each model with the directory it is installed into."""
    return [
        {
            "name": _safe_name("model name", m["name"]),
            "dir": gapseal_path(models_dir, m["name"]),
            "files": _safe_files(f"model {m['name']!r}", m["files"]),
        }
        for m in models or []
    ]


def gapseal_preflight_files(models, builds, root):
    """Files to write as ``[{path (relative to root), size}]``: every model file, and each build's largest variant.

    The variant is chosen after preflight, so the largest one is counted: the estimate errs on the safe side.
    """
    out = []
    for m in models or []:
        _safe_files(f"model {_safe_name('model name', m['name'])!r}", m["files"])
        base = gapseal_path(root, "var/lib/gapseal/models", m["name"])
        out += [
            {"path": posixpath.relpath(posixpath.join(base, f["path"]), root), "size": f["size"]} for f in m["files"]
        ]
    for b in builds or []:
        if not b.get("variants"):
            continue
        largest = max(b["variants"], key=lambda v: sum(f["size"] for f in v["files"]))
        _safe_files(f"build {_safe_name('build name', b['name'])!r}", largest["files"])
        base = gapseal_path(root, "opt/gapseal/builds", b["name"], _safe_name("backend", largest["backend"]))
        out += [
            {"path": posixpath.relpath(posixpath.join(base, f["path"]), root), "size": f["size"]}
            for f in largest["files"]
        ]
    return out


def gapseal_state_file_sets(models, builds, models_dir, builds_dir, staging, executable):
    """The file sets the host state reads: every model's directory and every variant's (the choice comes later).

    ``[{dest, staging, files, executable, prune}]``, as the models and runtime roles hand them to ``gapseal_files``
    (models with no executable file, builds with ``executable``), so a set the host state calls current is one
    ``gapseal_files`` would leave alone.
    """
    sets = [
        {"dest": m["dir"], "staging": staging, "files": m["files"], "executable": [], "prune": True}
        for m in gapseal_model_dirs(models, models_dir)
    ]
    for b in builds or []:
        name = _safe_name("build name", b["name"])
        for v in b.get("variants") or []:
            sets.append(
                {
                    "dest": gapseal_path(builds_dir, name, _safe_name(f"build {name!r} backend", v["backend"])),
                    "staging": staging,
                    "files": _safe_files(f"build {name!r}", v["files"]),
                    "executable": list(executable or []),
                    "prune": True,
                }
            )
    return sets


def gapseal_state_build_dirs(builds, builds_dir):
    """``<builds dir>/<build>`` for every build: where the host state reads the rollback state (current.json)."""
    return [gapseal_path(builds_dir, _safe_name("build name", b["name"])) for b in builds or []]


def _settled(host_state, dest):
    """True when the host state read ``dest`` and found every file in place (a set it did not read is not)."""
    entry = ((host_state or {}).get("file_sets") or {}).get(dest)
    return isinstance(entry, dict) and entry.get("current") is True


def gapseal_pending_models(models, host_state):
    """The models (``gapseal_model_dirs`` entries) whose directory is not exactly the bundle's yet."""
    return [m for m in models or [] if not _settled(host_state, m["dir"])]


def gapseal_known_plan(host_state, dest):
    """What the host state found in ``dest`` (``{current, missing, extra, stale_modes, leftovers}``), or None."""
    entry = ((host_state or {}).get("file_sets") or {}).get(dest)
    return entry if isinstance(entry, dict) else None


def gapseal_keep_needed(variants, host_state, bundle):
    """The variants whose build may have a running version to keep before they are installed.

    Without the host state's reading of the build every variant is listed (the keep action decides on the host);
    with it, a build that has no ``current.json`` or one for this very bundle is left out (keep would do nothing).
    """
    if not host_state:
        return list(variants or [])
    digest = (bundle or {}).get("manifest_digest")
    builds = host_state.get("builds") or {}
    out = []
    for v in variants or []:
        history = builds.get(posixpath.dirname(v["dir"]))
        if not (isinstance(history, dict) and history.get("current") in (None, digest)):
            out.append(v)
    return out


def _wheels(variant):
    return [f["path"] for f in variant.get("files") or [] if re.match(r"^wheels/[^/]+\.whl$", str(f.get("path", "")))]


def gapseal_pending_variants(selected, host_state, bundle):
    """The chosen variants the runtime role still has work for.

    A variant is left out only when the host state shows its files all in place, the build's rollback state needs
    nothing kept (no ``current.json``, or one for this very bundle) and it has no wheels (its venv is checked by pip
    on every run). Without a host state every variant is pending.
    """
    keep = gapseal_keep_needed(selected, host_state, bundle)
    return [v for v in selected or [] if not _settled(host_state, v["dir"]) or v in keep or _wheels(v)]


def gapseal_with_wheels(variants):
    """The variants that carry wheels, each with ``wheels``: their paths (relative to the variant's directory)."""
    return [{**v, "wheels": _wheels(v)} for v in variants or [] if _wheels(v)]


VENV_PACKAGE = "python3-venv"
"""Debian's and Ubuntu's package for ``venv``'s ``ensurepip``: their python3 leaves it out."""


def gapseal_python_modules(wheels, builds):
    """Python modules the host must import beyond the core every module here uses, for the preflight.

    ``[{name, package, purpose}]``: ``venv`` and ``ensurepip`` when the install makes a virtual environment (gapseal's
    own wheels; a build variant that carries wheels: any variant counts, as the variant is chosen after preflight -
    the check errs on the safe side, as the free-space estimate does). The modules in playbooks/library import
    nothing else outside the standard library (Ansible sends ansible.module_utils with each module).
    """
    purposes = []
    if (wheels or {}).get("files"):
        purposes.append("the virtual environment gapseal's own wheels go into")
    if any(_wheels(v) for b in builds or [] for v in b.get("variants") or []):
        purposes.append("the virtual environment of a build that carries wheels")
    if not purposes:
        return []
    purpose = " and ".join(purposes)
    return [{"name": name, "package": VENV_PACKAGE, "purpose": purpose} for name in ("venv", "ensurepip")]


def gapseal_arches(builds):
    """Architectures the bundle's builds cover (empty when it has no builds)."""
    return sorted({v["arch"] for b in builds or [] for v in b.get("variants", [])})


def gapseal_cidrs(cidrs, family):
    """Return the CIDRs of IP ``family`` (4 or 6) from ``cidrs``, normalized; a malformed entry raises."""
    if isinstance(cidrs, str) or not isinstance(cidrs, (list, tuple)):
        raise AnsibleFilterError(f"egress_allow must be a list of CIDRs, got {cidrs!r}")
    out = []
    for c in cidrs:
        try:
            net = ipaddress.ip_network(str(c), strict=False)
        except ValueError as e:
            raise AnsibleFilterError(f"egress_allow: {c!r} is not an IP network ({e})") from e
        if net.version == int(family):
            out.append(str(net))
    return sorted(set(out))


def _health(svc, bind, port):
    """The service's health check with URLs resolved for this host (``None`` when the spec declares none)."""
    health = svc.get("health")
    if not health:
        return None
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - a wildcard is probed on loopback
    host = wildcard.get(bind, bind)
    base = "http://{}:{}".format(f"[{host}]" if ":" in host else host, port)
    request = health.get("request")
    return {
        "url": base + health["http"] if health.get("http") else "",
        "command": list(health.get("command") or []),
        "timeout": int(health.get("timeout") or 180),
        "request_url": base + request["path"] if request else "",
        "request_body": dict(request.get("body") or {}) if request else {},
    }


def gapseal_service_units(services, selected, models_dir, offline_env, unit_dir, bind_override="", enclave=()):
    """Resolve each service against the host's chosen variants: build dir, model dir, ExecStart, environment.

    ``args`` may use ``{model_dir}``, ``{build_dir}``, ``{bind}`` and ``{port}``; the offline environment always wins
    over the service's own ``env`` (a service cannot turn telemetry back on). ``bind_override`` (the inventory's
    ``service_bind``) replaces every service's bind address on this host; ``enclave`` (``service_enclave`` CIDRs) are
    the only peers the unit may exchange packets with besides loopback (``IPAddressAllow=``).
    """
    by_build = {s["name"]: s for s in selected or []}
    units = []
    for svc in services or []:
        name = _safe_name("service name", svc["name"])
        build = by_build.get(svc.get("build"))
        if build is None:
            raise AnsibleFilterError(
                "service {!r} names build {!r}, which is not in the bundle".format(name, svc.get("build"))
            )
        model_dir = gapseal_path(models_dir, _safe_name("service model", svc["model"])) if svc.get("model") else ""
        bind = str(bind_override or svc.get("bind", "127.0.0.1"))
        port = str(svc.get("port", ""))
        values = {"model_dir": model_dir, "build_dir": build["dir"], "bind": bind, "port": port}
        try:
            args = [str(a).format(**values) for a in svc.get("args", [])]
        except (KeyError, IndexError, ValueError) as e:
            raise AnsibleFilterError(f"service {name!r}: bad placeholder in args: {e}") from e
        exe = gapseal_path(build["dir"], svc.get("exec", "bin/serve"))
        env = {**{str(k): str(v) for k, v in (svc.get("env") or {}).items()}, **dict(offline_env)}
        env.update({"GAPSEAL_MODEL_DIR": model_dir, "GAPSEAL_BIND": bind, "GAPSEAL_PORT": port})
        units.append(
            {
                "name": name,
                "build": build["name"],
                "backend": build["backend"],
                "build_dir": build["dir"],
                "model": svc.get("model", ""),
                "unit": gapseal_path(unit_dir, f"gapseal-{name}.service"),
                "exec_start": _unit_escape(" ".join(shlex.quote(p) for p in [exe, *args]), name, dollar=True),
                "environment": {k: _unit_escape(v, name) for k, v in env.items()},
                "bind": bind,
                "port": port,
                "ip_allow": sorted({str(ipaddress.ip_network(str(c), strict=False)) for c in enclave or []}),
                "health": _health(svc, bind, port),
                "fallback": bool(svc.get("fallback", False)),
            }
        )
    return units


_UNIT_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def _unit_escape(text, service, *, dollar=False):
    """Text for a systemd unit line, with '%' specifiers (and '$' variables in ExecStart) kept literal.

    A control character, quote or backslash is refused (the spec refuses them too: this is the last check before the
    unit file is written).
    """
    if _UNIT_UNSAFE.search(text.replace('"', "").replace("\\", "") if dollar else text):
        raise AnsibleFilterError(f"service {service!r}: {text!r} cannot be written into a unit file safely")
    text = text.replace("%", "%%")
    return text.replace("$", "$$") if dollar else text


def gapseal_fallback_variants(variants_fact, build_name, builds, builds_dir):
    """The variants of ``build_name`` that fit this host after the chosen one, in preference order, installable.

    A service whose health check fails with ``fallback: true`` tries these in turn (``[{name, backend, arch, dir,
    files}]``, the shape ``gapseal_selected_variants`` returns).
    """
    entry = (variants_fact or {}).get(build_name) or {}
    chosen = (entry.get("chosen") or {}).get("index")
    build = next((b for b in builds or [] if b["name"] == build_name), None)
    if chosen is None or build is None:
        return []
    out = []
    for check in entry.get("variants") or []:
        if check.get("satisfied") and check.get("index", -1) > chosen:
            variant = build["variants"][check["index"]]
            out.append(
                {
                    "name": build_name,
                    "backend": variant["backend"],
                    "arch": variant["arch"],
                    "dir": gapseal_path(builds_dir, build_name, variant["backend"]),
                    "files": variant["files"],
                }
            )
    return out


def gapseal_settled_variants(variants_fact, current_files, bundle):
    """The variants fact with each build's choice replaced by the variant it settled on for this very bundle.

    ``current_files`` are the slurped ``<builds>/<build>/current.json`` (the service role's record of the last healthy
    start). A rerun of the same bundle after a fallback then keeps the variant that worked instead of trying the
    failing one again (the install stays idempotent); another bundle starts from the hardware's choice.
    """
    import base64
    import json

    out = dict(variants_fact or {})
    for item in current_files or []:
        if not item.get("content"):
            continue
        try:
            current = json.loads(base64.b64decode(item["content"]))
        except ValueError:
            continue
        build = (item.get("item") or {}).get("name")
        entry = out.get(build)
        if not entry or (current.get("bundle") or {}).get("manifest_digest") != (bundle or {}).get("manifest_digest"):
            continue
        for check in entry.get("variants") or []:
            variant = next((v for i, v in enumerate(item["item"]["variants"]) if i == check.get("index")), None)
            if check.get("satisfied") and variant and variant["backend"] == current.get("backend"):
                chosen = {"index": check["index"], "backend": variant["backend"], "arch": variant["arch"]}
                out[build] = {**entry, "chosen": chosen}
                break
    return out


def gapseal_service_states(units, started, reason, checks=()):
    """Return ``[{name, unit, state}]`` for the record and the report (``checks``: the health checks' outcomes)."""
    by_name = {c["name"]: c for c in checks or []}
    out = []
    for u in units or []:
        state = "started" if started else f"not started: {reason}"
        check = by_name.get(u["name"])
        if started and check is not None:
            state = "started, healthy ({})".format(check["backend"]) if check["healthy"] else "failed health check"
        out.append({"name": u["name"], "unit": u["unit"], "state": state})
    return out


def gapseal_attempt_summary(result):
    """One health-check attempt, cut to what the install report shows (``gapseal_service_check``'s result)."""
    keys = ("backend", "healthy", "reason", "exit", "journal", "exposure", "ready_seconds", "request")
    return {k: result.get(k) for k in keys if k in result}


class FilterModule:
    """The filters gapseal's roles use."""

    def filters(self):
        """Return the filters by name."""
        return {
            "gapseal_path": gapseal_path,
            "gapseal_selected_variants": gapseal_selected_variants,
            "gapseal_preflight_files": gapseal_preflight_files,
            "gapseal_arches": gapseal_arches,
            "gapseal_state_file_sets": gapseal_state_file_sets,
            "gapseal_state_build_dirs": gapseal_state_build_dirs,
            "gapseal_pending_models": gapseal_pending_models,
            "gapseal_python_modules": gapseal_python_modules,
            "gapseal_pending_variants": gapseal_pending_variants,
            "gapseal_with_wheels": gapseal_with_wheels,
            "gapseal_known_plan": gapseal_known_plan,
            "gapseal_keep_needed": gapseal_keep_needed,
            "gapseal_model_dirs": gapseal_model_dirs,
            "gapseal_cidrs": gapseal_cidrs,
            "gapseal_service_units": gapseal_service_units,
            "gapseal_service_states": gapseal_service_states,
            "gapseal_fallback_variants": gapseal_fallback_variants,
            "gapseal_attempt_summary": gapseal_attempt_summary,
            "gapseal_settled_variants": gapseal_settled_variants,
        }
