"""The simulator: merchant traffic, notification receivers, scripted drills, the TCP
fault proxy and the sandbox channel (a test server for several pay orgs: signed
requests, asynchronous signed callbacks, statements, fault knobs; not part of the pay
core, which reaches any channel only through ``paycore.channels``).

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
    "Knobs": "sandbox_config",
    "SandboxConfig": "sandbox_config",
    "create_sandbox_app": "sandbox",
}
__all__ = [
    "BUILTIN",
    "Drill",
    "DrillTargets",
    "Knobs",
    "ReceivedEvent",
    "ReceiverServer",
    "SandboxAdmin",
    "SandboxConfig",
    "SimConfig",
    "SimMerchant",
    "SimStats",
    "Simulator",
    "Step",
    "create_sandbox_app",
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
    from .sandbox import create_sandbox_app
    from .sandbox_config import Knobs, SandboxConfig
    from .simulator import SimConfig, Simulator
    from .stats import SimStats


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
