"""One resolver for the data that ships with gapseal: policies and playbooks.

Installed from a wheel they live in ``gapseal/_data/``; in a checkout (or an editable install) they are the
top-level ``policies/`` and ``playbooks/`` folders beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory of shipped data ``name`` (``policies`` or ``playbooks``)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gapseal data directory {name!r} not found beside {_PACKAGE}")


def policies_dir() -> Path:
    """Return the directory holding the Rego policies and the controls catalog."""
    return data_dir("policies")


def playbooks_dir() -> Path:
    """Return the directory holding ``site.yml``, its roles and custom modules."""
    return data_dir("playbooks")
