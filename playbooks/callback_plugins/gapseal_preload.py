"""Callback plugin: import gapseal's controller-side code once, in ansible-playbook's main process.

Ansible runs every task of every host in a worker process forked from the main one. The action plugins that parse
hardware and choose variants on the controller (``gapseal_host_state``, ``gapseal_hardware``) import
``gapseal.installer.hardware`` and ``gapseal.installer.variants`` (pydantic models, packaging): done in each worker,
that is about a quarter of a second of CPU per host, which on a small controller serializes a fleet. Imported here,
when the callbacks load (before any worker is forked), every worker inherits the modules already imported. The same
holds for Ansible's argument spec checker, which ``gapseal_role_arguments`` (site.yml's first task) runs on every host.

At the start of each play, once the playbook is parsed and before the play's first worker is forked, it also moves
every object the main process holds into the garbage collector's permanent generation (``gc.freeze()``, as Python's
documentation advises before fork without exec): a worker's collections then never walk the inherited heap, which
touched, and so copied, its pages in every worker (about 0.1 s of controller CPU less per 1-host rerun).

It prints nothing and handles no other event. Enabled by ``callbacks_enabled`` in playbooks/ansible.cfg (and by the
installer's ansible-runner environment); without gapseal importable it imports only Ansible's checker (the action
plugins then say why).
"""

from __future__ import annotations

import contextlib
import gc

# The checker gapseal_role_arguments uses (site.yml's first task on every host): ~70 ms to import in each worker.
import ansible.module_utils.common.arg_spec  # noqa: F401
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: gapseal_preload
type: aggregate
short_description: Import gapseal's controller-side modules and freeze the heap before Ansible forks its workers
description:
  - Imports gapseal.installer.hardware and gapseal.installer.variants (and Ansible's argument spec checker) in the main
    process, so the forked workers that run gapseal's action plugins do not import them again for every host.
requirements:
  - enabled in configuration (callbacks_enabled)
"""

with contextlib.suppress(ImportError):
    import gapseal.installer.hardware
    import gapseal.installer.variants  # noqa: F401


class CallbackModule(CallbackBase):
    """Loads the imports above; freezes the main process's heap before each play forks its workers."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gapseal_preload"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_play_start(self, play: object) -> None:
        """Collect once, then freeze what survives: the workers forked from here on inherit it, never to scan it."""
        del play
        gc.collect()
        gc.freeze()
