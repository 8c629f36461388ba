"""Action plugin for gapseal_files: plan on the host, push only the missing blobs, commit on the host.

The controller never trusts what it sends: every blob is hashed again on the host by the module's commit phase
before it is renamed into place. Blobs travel over the play's own connection (``put_file``: sftp/scp over the
ssh ControlMaster, or a local copy for ``ansible_connection=local``), straight into the staging directory beside
the destination, so nothing lands in the user's home and the final rename is atomic.
"""

from __future__ import annotations

import os
import re
import tarfile
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
BATCH_BELOW = 1024 * 1024
"""Blobs smaller than this travel together in one uncompressed tar (one sftp session instead of one per file)."""


class ActionModule(ActionBase):
    """Plan on the host, transfer the missing blobs into staging, commit on the host."""

    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("dest", "staging", "files", "executable", "prune"))

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
        module_args = {k: v for k, v in args.items() if k != "files"}
        module_args["files"] = module_files

        plan = self._execute_module(
            module_name="gapseal_files", module_args={**module_args, "phase": "plan"}, task_vars=task_vars
        )
        if plan.get("failed") or self._task.check_mode or not plan.get("changed"):
            result.update(plan)
            return result

        staging = args["staging"].rstrip("/")
        sent = 0
        small = [d for d in plan.get("missing", []) if os.path.getsize(sources[d]) < BATCH_BELOW]
        large = [d for d in plan.get("missing", []) if d not in small]
        batches = []
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

        commit = self._execute_module(
            module_name="gapseal_files", module_args={**module_args, "phase": "commit"}, task_vars=task_vars
        )
        result.update(commit)
        result["bytes_sent"] = sent
        result["extra"] = plan.get("extra", [])
        return result
