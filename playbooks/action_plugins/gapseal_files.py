"""Action plugin for gapseal_files: plan on the host, push only the missing blobs, commit on the host.

The controller never trusts what it sends: every blob is hashed again on the host by the module's commit phase
before it is renamed into place. Blobs travel over the play's own connection (``put_file``: sftp/scp over the
ssh ControlMaster, or a local copy for ``ansible_connection=local``), straight into the staging directory beside
the destination, so nothing lands in the user's home and the final rename is atomic.

``plan``: what the host state (``gapseal_host_state``, run at the start of the play) found in ``dest`` - ``{missing,
extra, stale_modes, leftovers}``. Given, and with no leftover in staging, it stands in for the plan phase (one module
call less per host); the commit phase plans again on the host and hashes every staged blob, so a host that changed
since fails closed ("was not transferred") instead of taking anything unverified.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import tarfile
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
BATCH_BELOW = 1024 * 1024
"""Blobs smaller than this travel together: inside the commit's own arguments when they add up to at most
INLINE_TOTAL (no transfer session at all), else in one uncompressed tar (one sftp session instead of one per file)."""
INLINE_TOTAL = 2 * 1024 * 1024


class ActionModule(ActionBase):
    """Plan on the host, transfer the missing blobs into staging, commit on the host."""

    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("dest", "staging", "files", "executable", "prune", "plan"))

    @staticmethod
    def _known_plan(args, module_files):
        """The plan phase's result from the host state's ``plan``, or None to run the plan phase on the host."""
        known = args.get("plan")
        if not isinstance(known, dict) or known.get("leftovers") is not False:
            return None  # no host state for this set, or partial blobs to clean first: the plan phase does it
        if not all(isinstance(known.get(k), list) for k in ("missing", "extra", "stale_modes")):
            return None
        dest = str(args.get("dest", "")).rstrip("/")
        managed = sorted(
            ({"path": f"{dest}/{f['path']}", "digest": f["digest"], "size": f["size"]} for f in module_files),
            key=lambda f: f["path"],
        )
        changed = bool(known["missing"] or known["extra"] or known["stale_modes"])
        return {
            "changed": changed,
            "missing": list(known["missing"]),
            "extra": list(known["extra"]),
            "stale_modes": list(known["stale_modes"]),
            "removed_partials": [],
            "installed": [],
            "files": managed,
        }

    def _make_dirs(self, dest, staging):
        """Create dest and staging as the plan phase would (a shell command: no Python started on the host)."""
        cmd = f"mkdir -p -- {shlex.quote(dest)} {shlex.quote(staging)}"
        res = self._low_level_execute_command(cmd)
        if res.get("rc") != 0:
            raise AnsibleActionFail("cannot create {} and {}: {}".format(dest, staging, res.get("stderr", "").strip()))

    def run(self, tmp=None, task_vars=None):
        """Run the plan, push what is missing, run the commit; in check mode only the plan."""
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        files = args.get("files")
        if not isinstance(files, list):
            raise AnsibleActionFail("files must be a list of {path, digest, size, src}")
        sources = {}
        module_files = []
        for f in files:
            if not isinstance(f, dict):
                raise AnsibleActionFail(f"every entry of files must be a mapping, got {f!r}")
            digest = f.get("digest", "")
            if not isinstance(digest, str) or not DIGEST.match(digest):
                raise AnsibleActionFail("file {!r}: digest {!r} is not sha256:<64 hex>".format(f.get("path"), digest))
            src = f.get("src")
            if not isinstance(src, str) or not os.path.isfile(src):
                raise AnsibleActionFail(
                    "file {!r}: source blob {!r} not found on the controller".format(f.get("path"), src)
                )
            sources[digest] = src
            module_files.append({"path": f.get("path"), "digest": digest, "size": f.get("size")})
        module_args = {k: v for k, v in args.items() if k not in ("files", "plan")}
        module_args["files"] = module_files

        plan = self._known_plan(args, module_files)
        if plan is None:
            plan = self._execute_module(
                module_name="gapseal_files", module_args={**module_args, "phase": "plan"}, task_vars=task_vars
            )
        dirs_made = plan is None
        if plan.get("failed") or self._task.check_mode or not plan.get("changed"):
            result.update(plan)
            return result

        staging = args["staging"].rstrip("/")
        sent = 0
        small = [d for d in plan.get("missing", []) if os.path.getsize(sources[d]) < BATCH_BELOW]
        large = [d for d in plan.get("missing", []) if d not in small]
        batches = []
        inline = {}
        if small and sum(os.path.getsize(sources[d]) for d in small) <= INLINE_TOTAL:
            for digest in small:  # in the commit's arguments: hashed on the host like any transferred blob
                with open(sources[digest], "rb") as f:
                    inline[DIGEST.match(digest).group(1)] = base64.b64encode(f.read()).decode("ascii")
                sent += os.path.getsize(sources[digest])
            small = []
        if (small or large) and not dirs_made:
            self._make_dirs(args["dest"], staging)
        if len(small) > 1:  # one transfer for all the small files (configs, tokenizers) instead of one each
            fd, local = tempfile.mkstemp(prefix="gapseal-batch-", suffix=".tar")
            os.close(fd)
            try:
                with tarfile.open(local, "w", format=tarfile.PAX_FORMAT) as tar:
                    for digest in small:
                        tar.add(sources[digest], arcname=DIGEST.match(digest).group(1) + ".partial", recursive=False)
                remote = f"{staging}/batch-{os.getpid()}-{len(batches)}.tar"
                self._transfer_file(local, remote)
                sent += os.path.getsize(local)
                batches.append(remote)
            finally:
                os.unlink(local)
        else:
            large += small
        for digest in large:
            remote = f"{staging}/{DIGEST.match(digest).group(1)}.partial"
            self._transfer_file(sources[digest], remote)
            sent += os.path.getsize(sources[digest])
        module_args["batches"] = batches
        module_args["inline"] = inline

        commit = self._execute_module(
            module_name="gapseal_files", module_args={**module_args, "phase": "commit"}, task_vars=task_vars
        )
        result.update(commit)
        result["bytes_sent"] = sent
        result["extra"] = plan.get("extra", [])
        return result
