#!/usr/bin/python
"""Ansible module: remove everything a gapseal install put on a host; idempotent, check-mode safe, rerun-safe."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_uninstall
short_description: Remove a gapseal install from a host and say what was removed and what was left
description:
  - Reads installed.json. For each service unit (where systemd runs): stop, disable, remove its state directory
    (systemd's StateDirectory, /var/lib/gapseal-NAME and /var/lib/private/gapseal-NAME, also found without a
    record; kept with keep_state) and its unit file.
    Then every file the record lists, and the directories that leaves empty.
  - Also what the install makes whole and never lists file by file, found at the places the roles make them,
    with or without a record (so a host an older uninstall left half-clean is finished too); each is gapseal's by
    construction and goes whole: every build's virtual environments (C(<variant>.venv), recognised by pyvenv.cfg),
    its rollback copy (C(.previous/), C(.previous.new/)) and C(current.json); gapseal's own virtual environment and
    the wheels it came from (self role, C(*.whl) only); the staging directory; the images role's OCI layout
    (C(oci-layout), C(index.json), C(blobs/sha256/<hex>)).
  - Before anything is removed, every path the record names must be below root and where the roles put such a
    thing (models in models_dir, variants in a build of builds_dir, files in a recorded directory, units named
    gapseal-NAME.service in unit_dir); else nothing at all is removed.
  - A file the install did not put there (an operator's) stays, and so does every directory above it; it is listed
    in kept. So is anything found where gapseal makes a directory but that is a symlink or not a directory: a symlink
    is never followed, and nothing outside root is touched (a record naming such a path removes nothing at all).
  - The record goes last: an interrupted run leaves it, and the next run finishes the job.
  - The egress lockdown stays unless remove_egress is true (then the nftables table, its rules file and, where
    systemd runs the host at /, the nftables.service drop-in that reloads it at boot go too).
  - Container images stay in podman's store (listed as images_kept: podman rmi removes them).
options:
  path: {description: Absolute path of installed.json., type: path, required: true}
  root: {description: The host's gapseal_root; nothing outside it is removed., type: path, required: true}
  builds_dir: {description: "The runtime role's build directory (<root>/opt/gapseal/builds).", type: path}
  models_dir: {description: "The models role's directory (<root>/var/lib/gapseal/models).", type: path}
  unit_dir: {description: "The service role's unit directory (<root>/etc/systemd/system).", type: path}
  self_venv: {description: "The self role's virtual environment (<root>/opt/gapseal/venv).", type: path}
  self_wheels_dir: {description: "The self role's wheel directory (<root>/opt/gapseal/wheels).", type: path}
  staging: {description: "The roles' staging directory (<root>/var/lib/gapseal/.staging).", type: path}
  images_layouts: {description: "The images role's OCI layout (<root>/var/lib/gapseal/images).", type: path}
  keep_state: {description: Keep the services' state directories (listed in kept)., type: bool, default: false}
  remove_egress: {description: Also remove the egress lockdown., type: bool, default: false}
  egress_table: {description: The nftables inet table of the lockdown., type: str, default: gapseal_egress}
  egress_rules_path: {description: The lockdown's rules file., type: path, required: true}
  egress_dropin_path:
    description: The egress role's nftables.service drop-in (only where root is /).
    type: path
    default: /etc/systemd/system/nftables.service.d/gapseal-egress.conf
  nft: {description: Path of nft., type: path, default: /usr/sbin/nft}
"""

RETURN = r"""
actions: {description: "What was (or in check mode would be) done, one line each.", type: list, returned: always}
kept: {description: "What was left under gapseal's directories, one line each: the path and why.", type: list}
"""

HEX_BLOB = re.compile(r"^[0-9a-f]{64}$")
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # gapseal.names: a component name
TMP_COPY = re.compile(r"^\..+\.gapseal-tmp$")
TMP_RECORD = re.compile(r"^\.installed\..+\.tmp$")
TMP_RULES = re.compile(r"^\.egress\..+\.tmp$")
DROPIN_MARK = "# Managed by gapseal"
STATE_BASE = "/var/lib"  # systemd's StateDirectory= base for system units


def _inside(root, path):
    """``path`` is absolute and, with every symlink in its directories resolved, stays below ``root``."""
    root = os.path.realpath(root)
    real = os.path.realpath(os.path.dirname(os.path.normpath(path)))
    return os.path.isabs(path) and (real == root or real.startswith(root.rstrip("/") + "/"))


SYSTEM_DIRS = frozenset(
    ("/etc/systemd", "/etc/systemd/system", "/usr/local", "/var/lib", "/var/lib/private", "/var/cache", "/var/log")
)


def _system_dir(root, directory):
    """Where pruning empty parents stops: the root itself and, on a host installed at /, the system's own
    directories (every top-level one, like /opt, and SYSTEM_DIRS), however empty."""
    directory = os.path.normpath(directory)
    if directory in ("/", os.path.normpath(root)):
        return True
    return os.path.normpath(root) == "/" and (directory.count("/") <= 1 or directory in SYSTEM_DIRS)


class Uninstall:
    """One host's removal: every step checks before it acts, so a rerun after any interruption finishes the job."""

    def __init__(self, module, root):
        self.module = module
        self.check = module.check_mode
        self.root = os.path.normpath(root)
        self.actions = []
        self.kept = []
        self.prune = []  # directories to remove, bottom-up, where they end up empty
        self.kept_paths = set()

    def keep(self, path, why):
        if path not in self.kept_paths:
            self.kept_paths.add(path)
            self.kept.append(f"{path} ({why})")

    def usable_dir(self, path, what):
        """``path`` is a real directory below root gapseal may clean; else it is listed as kept (when it exists)."""
        if not os.path.lexists(path):
            return False
        if os.path.islink(path) or not os.path.isdir(path) or not _inside(self.root, path):
            self.keep(
                path,
                f"gapseal makes {what} here, but this is a symlink, not a directory, or outside the root: left alone",
            )
            return False
        return True

    def remove_file(self, path):
        if not os.path.lexists(path):
            return
        if os.path.isdir(path) and not os.path.islink(path):
            self.keep(path, "a directory where gapseal puts a file: left alone")
            return
        self.actions.append(f"remove {path}")
        if not self.check:
            os.unlink(path)

    def remove_tree(self, path, what, last=None):
        """Remove a directory gapseal made whole (a venv, a rollback copy); never follows a symlink. The entry
        ``last`` (what marks the directory as gapseal's) goes last, so a run cut short still finds the mark."""
        if not self.usable_dir(path, "a " + what):
            return
        self.actions.append(f"remove {what} {path}")
        if self.check:
            return
        for name in os.listdir(path):
            entry = os.path.join(path, name)
            if name == last:
                continue
            if os.path.isdir(entry) and not os.path.islink(entry):
                shutil.rmtree(entry)
            else:
                os.unlink(entry)
        if last is not None and os.path.lexists(os.path.join(path, last)):
            os.unlink(os.path.join(path, last))
        os.rmdir(path)

    def remove_venv(self, path):
        if os.path.isdir(path) and not os.path.islink(path) and not os.path.isfile(os.path.join(path, "pyvenv.cfg")):
            self.keep(path, "no pyvenv.cfg: not a virtual environment gapseal made, left alone")
            return
        if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
            self.keep(path, "gapseal makes a virtual environment here, but this is not one: left alone")
            return
        self.remove_tree(path, "venv", last="pyvenv.cfg")

    # -- the parts of an install -----------------------------------------------------------------------------------

    def services(self, services, keep_state):
        """Stop, disable and remove each unit, then the services' state; return systemctl when systemd must reload,
        and the units it must forget a failure of (reset-failed)."""
        # the service role starts units only on a host installed at /: under a prefix there is nothing to stop
        systemd = self.root == "/" and os.path.isdir("/run/systemd/system")
        systemctl = systemd and self.module.get_bin_path("systemctl")
        reload_needed, failed = False, []
        for svc in services:
            unit = svc.get("unit") or ""
            name = os.path.basename(unit)
            if systemctl:
                _, out, _ = self.module.run_command([systemctl, "is-active", name])
                if out.strip() in ("active", "activating", "reloading", "deactivating"):
                    self.actions.append(f"stop {name}")
                    if not self.check:
                        self.module.run_command([systemctl, "stop", name], check_rc=True)
                elif out.strip() == "failed":
                    failed.append(name)
                _, out, _ = self.module.run_command([systemctl, "is-enabled", name])
                if out.strip() in ("enabled", "enabled-runtime", "linked", "linked-runtime"):
                    self.actions.append(f"disable {name}")
                    if not self.check:
                        self.module.run_command([systemctl, "disable", name], check_rc=True)
            # what an enable left that disable could not take back (the unit file was already gone, say)
            for link in sorted(
                glob.glob(os.path.join(glob.escape(os.path.dirname(unit)), "*.wants", glob.escape(name)))
            ):
                if os.path.islink(link) and os.readlink(link) == unit:
                    self.remove_file(link)
                    reload_needed = True
            if os.path.lexists(unit):
                self.remove_file(unit)
                reload_needed = True
            if self.root != "/":
                self.prune.append(os.path.dirname(unit))
        if self.root == "/":
            self.service_state([str(s["name"]) for s in services if s.get("name")], keep_state)
        return (systemctl if reload_needed else None), failed

    def service_state(self, names, keep_state):
        """DynamicUser=yes: systemd keeps a unit's StateDirectory=gapseal-NAME in /var/lib/private/gapseal-NAME,
        behind the symlink /var/lib/gapseal-NAME. Those of the record's services, and any other gapseal-* ones (a
        record an earlier run with keep_state removed no longer names them)."""
        paths = set()
        for name in names:
            paths.add(os.path.join(STATE_BASE, "gapseal-" + name))
            paths.add(os.path.join(STATE_BASE, "private", "gapseal-" + name))
        for base in (STATE_BASE, os.path.join(STATE_BASE, "private")):
            if os.path.isdir(base) and not os.path.islink(base):
                paths.update(os.path.join(base, n) for n in os.listdir(base) if n.startswith("gapseal-"))
        for path in sorted(paths):
            if not os.path.lexists(path):
                continue
            if keep_state:
                self.keep(path, "a service's state, kept as asked: uninstall without --keep-state removes it")
            elif os.path.islink(path):
                self.remove_file(path)
            else:
                self.remove_tree(path, "service state")

    def builds(self, variant_dirs, builds_dir):
        """Each build directory: its venvs, rollback copy and current.json (the variant files are in the record)."""
        build_dirs = {os.path.dirname(d) for d in variant_dirs}
        if builds_dir and os.path.isdir(builds_dir) and not os.path.islink(builds_dir):
            build_dirs.update(os.path.join(builds_dir, n) for n in os.listdir(builds_dir))
        for build in sorted(build_dirs):
            if not os.path.isdir(build) or os.path.islink(build) or not _inside(self.root, build):
                continue
            for name in sorted(os.listdir(build)):
                path = os.path.join(build, name)
                if name.endswith(".venv"):
                    self.remove_venv(path)
                elif name in (".previous", ".previous.new"):
                    self.remove_tree(path, "rollback copy")
                elif name in ("current.json", "current.json.tmp"):
                    self.remove_file(path)
            self.prune.append(build)
        self.prune += sorted(variant_dirs)
        if builds_dir:
            self.prune.append(builds_dir)

    def own_venv(self, venv, wheels_dir):
        if venv:
            self.remove_venv(venv)
        if wheels_dir and self.usable_dir(wheels_dir, "a wheel directory"):
            for name in sorted(os.listdir(wheels_dir)):
                path = os.path.join(wheels_dir, name)
                if name.endswith(".whl") and os.path.isfile(path) and not os.path.islink(path):
                    self.remove_file(path)
            self.prune.append(wheels_dir)

    def scratch(self, staging, layouts):
        # staging holds only the roles' partial transfers (gapseal_files deletes whatever it finds there)
        if staging and self.usable_dir(staging, "a staging directory"):
            for name in sorted(os.listdir(staging)):
                path = os.path.join(staging, name)
                if not os.path.isdir(path) or os.path.islink(path):
                    self.remove_file(path)
            self.prune.append(staging)
        if layouts and self.usable_dir(layouts, "an OCI layout"):
            for name in ("oci-layout", "index.json"):
                if os.path.isfile(os.path.join(layouts, name)):
                    self.remove_file(os.path.join(layouts, name))
            blobs = os.path.join(layouts, "blobs", "sha256")
            if self.usable_dir(blobs, "a blob directory"):
                for name in sorted(os.listdir(blobs)):
                    path = os.path.join(blobs, name)
                    if HEX_BLOB.match(name) and os.path.isfile(path) and not os.path.islink(path):
                        self.remove_file(path)
                self.prune.append(blobs)
            self.prune.append(layouts)

    def egress(self, table, rules_path, dropin_path, nft):
        if os.path.exists(nft):
            rc, _, _ = self.module.run_command([nft, "list", "table", "inet", table])
            if rc == 0:
                self.actions.append(f"nft delete table inet {table}")
                if not self.check:
                    self.module.run_command([nft, "delete", "table", "inet", table], check_rc=True)
        self.remove_file(rules_path)
        rules_dir = os.path.dirname(rules_path)
        if os.path.isdir(rules_dir) and not os.path.islink(rules_dir):  # gapseal_egress's write, cut short
            for name in sorted(os.listdir(rules_dir)):
                if TMP_RULES.match(name) and os.path.isfile(os.path.join(rules_dir, name)):
                    self.remove_file(os.path.join(rules_dir, name))
        self.prune.append(rules_dir)
        if self.root != "/" or not os.path.lexists(dropin_path):
            return False  # the egress role writes the drop-in only where the host is installed at /
        try:
            with open(dropin_path, encoding="utf-8") as f:
                ours = f.readline().startswith(DROPIN_MARK)
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours or os.path.islink(dropin_path):
            self.keep(dropin_path, "not the drop-in gapseal writes: left alone")
            return False
        self.remove_file(dropin_path)
        self.prune.append(os.path.dirname(dropin_path))
        systemctl = os.path.isdir("/run/systemd/system") and self.module.get_bin_path("systemctl")
        if systemctl:
            _, out, _ = self.module.run_command([systemctl, "is-enabled", "nftables.service"])
            if out.strip() == "enabled":
                self.keep(
                    "nftables.service",
                    "enabled, by the egress lockdown or before it (not recorded): it now loads only the host's own "
                    "/etc/nftables.conf at boot; systemctl disable nftables.service if the host does not use it",
                )
        return True

    def temporaries(self, dirs, record_dir):
        """What a write cut short leaves beside its target: gapseal_files' .NAME.gapseal-tmp (a copy across
        filesystems) in the install's directories, gapseal_record's .installed.*.tmp beside the record."""
        for top in dirs:
            if not os.path.isdir(top) or os.path.islink(top) or not _inside(self.root, top):
                continue
            for dirpath, _dirs, names in os.walk(top):
                for name in sorted(names):
                    if TMP_COPY.match(name):
                        self.remove_file(os.path.join(dirpath, name))
        if os.path.isdir(record_dir) and not os.path.islink(record_dir):
            for name in sorted(os.listdir(record_dir)):
                path = os.path.join(record_dir, name)
                if TMP_RECORD.match(name) and os.path.isfile(path) and not os.path.islink(path):
                    self.remove_file(path)

    # -- what is left ----------------------------------------------------------------------------------------------

    def prune_empty(self, stop):
        """Remove each candidate directory's empty subdirectories, itself and its parents (up to a ``stop``
        directory) bottom-up, where they hold nothing: a file left anywhere keeps its directory and all above it."""
        done = set()
        removing = bool(self.actions)
        for directory in sorted(set(self.prune), key=lambda d: (-d.count("/"), d)):
            if not os.path.isdir(directory) or os.path.islink(directory) or not _inside(self.root, directory):
                continue
            if self.check:  # what removing the files above would leave empty is not known before they are gone
                if removing:
                    self.actions.append(f"remove dir {directory} (if empty)")
                continue
            for dirpath, _dirs, _files in os.walk(directory, topdown=False):
                if dirpath not in done and not stop(dirpath) and not os.listdir(dirpath):
                    self.actions.append(f"remove dir {dirpath}")
                    os.rmdir(dirpath)
                    done.add(dirpath)
            parent = os.path.dirname(directory)
            while not stop(parent) and _inside(self.root, parent) and os.path.isdir(parent):
                if os.path.islink(parent) or os.listdir(parent):
                    break
                self.actions.append(f"remove dir {parent}")
                os.rmdir(parent)
                done.add(parent)
                parent = os.path.dirname(parent)

    def leftovers(self, tops, reason_for):
        """List every entry (not directory) still under gapseal's directories, with the reason it stayed."""
        seen = set()
        for top in sorted(set(tops)):
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            for dirpath, dirnames, filenames in os.walk(top):
                links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
                for name in sorted(filenames + links):
                    path = os.path.join(dirpath, name)
                    if path not in seen:
                        seen.add(path)
                        self.keep(path, reason_for(path))
        self.kept.sort()


def _misplaced(p, services, files, model_dirs, variant_dirs):
    """What in the record is not where the roles put it (None when all is): a model directory outside models_dir,
    a variant directory outside builds_dir, a file outside every recorded directory, a unit not
    ``<unit_dir>/gapseal-NAME.service``, a service name that is not a component name."""
    for d in model_dirs:
        if p["models_dir"] and not _inside(p["models_dir"], d):
            return f"the model directory {d!r} is not in {p['models_dir']}"
    for d in variant_dirs:
        if p["builds_dir"] and not _inside(p["builds_dir"], os.path.dirname(d)):
            return f"the variant directory {d!r} is not in a build of {p['builds_dir']}"
    dirs = model_dirs + variant_dirs
    for f in files:
        if not any(_inside(d, f) for d in dirs if d):
            return f"the file {f!r} is in no model or variant directory the record lists"
    for svc in services:
        name, unit = str(svc.get("name") or ""), str(svc.get("unit") or "")
        if not SERVICE_NAME.match(name):
            return f"the service name {name!r} is not a component name"
        if os.path.basename(unit) != f"gapseal-{name}.service" or (p["unit_dir"] and not _inside(p["unit_dir"], unit)):
            return (
                f"the unit {unit!r} of service {name!r} is not {p['unit_dir'] or '<unit dir>'}/gapseal-{name}.service"
            )
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            root=dict(type="path", required=True),
            builds_dir=dict(type="path"),
            models_dir=dict(type="path"),
            unit_dir=dict(type="path"),
            self_venv=dict(type="path"),
            self_wheels_dir=dict(type="path"),
            staging=dict(type="path"),
            images_layouts=dict(type="path"),
            keep_state=dict(type="bool", default=False),
            remove_egress=dict(type="bool", default=False),
            egress_table=dict(type="str", default="gapseal_egress"),
            egress_rules_path=dict(type="path", required=True),
            egress_dropin_path=dict(type="path", default="/etc/systemd/system/nftables.service.d/gapseal-egress.conf"),
            nft=dict(type="path", default="/usr/sbin/nft"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root = p["root"]
    if not os.path.isabs(root):
        module.fail_json(msg=f"root {root!r} must be an absolute path; set gapseal_root to the install's prefix")
    record = None
    try:
        with open(p["path"], "rb") as f:
            record = json.loads(f.read())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        module.fail_json(msg=f"{p['path']}: cannot read the install record ({e}); nothing removed")
    if record is not None and (not isinstance(record, dict) or record.get("kind") != "gapseal.InstalledRecord"):
        module.fail_json(msg=f"{p['path']}: not a gapseal install record; nothing removed")
    record = record or {}

    services = [s for s in record.get("services") or [] if isinstance(s, dict)]
    files = [f.get("path") or "" for f in record.get("files") or [] if isinstance(f, dict)]
    model_dirs = [m.get("dir") or "" for m in (record.get("models") or {}).values() if isinstance(m, dict)]
    variant_dirs = [v.get("dir") or "" for v in (record.get("variants") or {}).values() if isinstance(v, dict)]
    own = [p[k] for k in ("builds_dir", "self_venv", "self_wheels_dir", "staging", "images_layouts") if p[k]]
    # Every path the record names or the playbook passes is checked before the first removal: a lie removes nothing.
    for path in [s.get("unit") or "" for s in services] + files + model_dirs + variant_dirs + own:
        if not _inside(root, path):
            module.fail_json(msg=f"{path!r} is outside the install root {root}; nothing removed")
    # Installed at /, "below the root" is everything: each path must also be where the roles put such a thing.
    problem = _misplaced(p, services, files, model_dirs, variant_dirs)
    if problem:
        module.fail_json(msg=f"{p['path']}: {problem}; nothing removed (is this the record gapseal wrote?)")

    u = Uninstall(module, root)
    try:
        reload_with, failed = u.services(services, p["keep_state"])
        for path in files:
            u.remove_file(path)
        u.prune += model_dirs
        u.builds(variant_dirs, p["builds_dir"])
        u.own_venv(p["self_venv"], p["self_wheels_dir"])
        u.scratch(p["staging"], p["images_layouts"])
        u.temporaries(model_dirs + variant_dirs + [d for d in (p["self_wheels_dir"],) if d], os.path.dirname(p["path"]))
        removed_dropin = False
        if p["remove_egress"]:
            removed_dropin = u.egress(p["egress_table"], p["egress_rules_path"], p["egress_dropin_path"], p["nft"])
        elif os.path.normpath(root) == "/" and os.path.lexists(p["egress_dropin_path"]):
            u.keep(p["egress_dropin_path"], "egress lockdown, reloaded at boot, kept: --remove-egress removes it")
        if not reload_with and removed_dropin and os.path.isdir("/run/systemd/system"):
            reload_with = module.get_bin_path("systemctl")
        if reload_with:
            u.actions.append("systemctl daemon-reload")
            if not u.check:
                module.run_command([reload_with, "daemon-reload"], check_rc=True)
            for name in failed:  # a removed unit that had failed stays listed until its failure is forgotten
                u.actions.append(f"systemctl reset-failed {name}")
                if not u.check:
                    module.run_command([reload_with, "reset-failed", name])
        if record:
            u.remove_file(p["path"])  # last: until here a rerun knows everything this run knew
        u.prune.append(os.path.dirname(p["path"]))
        u.prune_empty(lambda d: _system_dir(root, d))
    except OSError as e:
        module.fail_json(
            msg=f"{getattr(e, 'filename', None) or p['path']}: {e.strerror or e}; rerun uninstall to finish the job",
            actions=u.actions,
        )

    rules = os.path.normpath(p["egress_rules_path"])
    tops = [os.path.join(root, d) for d in ("opt/gapseal", "var/lib/gapseal", "etc/gapseal")]
    tops += [d for d in model_dirs + variant_dirs + own if d]

    def reason(path):
        if path == rules:
            return "egress lockdown rules, kept: --remove-egress removes them"
        return "not in the install record, so not known to be gapseal's: left alone"

    if not u.check:
        u.leftovers(tops, reason)

    facts = {
        "installed": bool(record),
        "actions": u.actions,
        "kept": u.kept,
        "egress_kept": not p["remove_egress"],
    }
    if record:
        facts["bundle"] = record.get("bundle") or {}
        # Container images stay in podman's store: another install or a person may use them; the record names them.
        facts["images_kept"] = [i.get("reference") for i in record.get("images") or [] if i.get("reference")]
    module.exit_json(
        changed=bool(u.actions), actions=u.actions, kept=u.kept, ansible_facts={"gapseal_uninstall": facts}
    )


if __name__ == "__main__":
    main()
