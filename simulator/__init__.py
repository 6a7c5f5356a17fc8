"""The simulator: merchant traffic, notification receivers and scripted drills.

Public contract (``paywatch up`` and ``paywatch simulate`` use it):
:func:`ensure_demo_merchants` → :class:`SimMerchant` list; :class:`SimConfig` and
:class:`Simulator` (``start()``, ``stop()``, ``stats``); :class:`ReceiverServer`.
Drills: :data:`BUILTIN` drills, :func:`load_drill`, :func:`run_drill`.

Nothing starts at import time, and the names load lazily: ``paywatch`` builds its
argument parser from :mod:`.cli` on every command and must not pay for the pay core.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "BUILTIN": "drills",
    "Drill": "drills",
    "Step": "drills",
    "load_drill": "drills",
    "SimMerchant": "merchants",
    "ensure_demo_merchants": "merchants",
    "load_merchants": "merchants",
    "ReceivedEvent": "receiver",
    "ReceiverServer": "receiver",
    "DrillTargets": "runner",
    "SandboxAdmin": "runner",
    "run_drill": "runner",
    "SimConfig": "simulator",
    "Simulator": "simulator",
    "SimStats": "stats",
}
__all__ = [
    "BUILTIN",
    "Drill",
    "DrillTargets",
    "ReceivedEvent",
    "ReceiverServer",
    "SandboxAdmin",
    "SimConfig",
    "SimMerchant",
    "SimStats",
    "Simulator",
    "Step",
    "ensure_demo_merchants",
    "load_drill",
    "load_merchants",
    "run_drill",
]

if TYPE_CHECKING:
    from .drills import BUILTIN, Drill, Step, load_drill
    from .merchants import SimMerchant, ensure_demo_merchants, load_merchants
    from .receiver import ReceivedEvent, ReceiverServer
    from .runner import DrillTargets, SandboxAdmin, run_drill
    from .simulator import SimConfig, Simulator
    from .stats import SimStats


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
