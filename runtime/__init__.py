"""The runtime: the composition root and the processes.

It is the one package that imports every other: it reads ``PAYWATCH_*`` settings
(:mod:`.settings`), applies the schema (:mod:`.migrate`), builds a running system
(:func:`build_platform` in :mod:`.bootstrap`, with :mod:`.wiring` for the stability
layer and :mod:`.observability` for metrics and alerts), and runs the processes:
``paywatch serve`` / ``worker`` (:mod:`.worker` holds the worker's whole job list) /
``console`` / ``sandbox`` / ``up`` / ``simulate`` (:mod:`.cli`).

Names load lazily: every ``paywatch`` command imports :mod:`.cli`, and must not pay
for the pay core unless it runs it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Platform": "bootstrap",
    "build_platform": "bootstrap",
    "Settings": "settings",
    "upgrade_database": "migrate",
    "main": "cli",
}
__all__ = ["Platform", "Settings", "build_platform", "main", "upgrade_database"]

if TYPE_CHECKING:
    from .bootstrap import Platform, build_platform
    from .cli import main
    from .migrate import upgrade_database
    from .settings import Settings


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
