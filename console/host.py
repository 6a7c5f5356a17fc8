"""What the console asks of the process that runs it: the platform and the settings.

The console is the UI only: it never reads ``PAYWATCH_*`` or builds engines itself. The
host is found through the ``paywatch.console`` entry point named ``host`` (the runtime
registers :mod:`runtime.console_host` in ``pyproject.toml``), so ``streamlit run
console/app.py`` and ``paywatch console`` both get the platform the runtime builds,
while ``console`` never imports ``runtime``.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

GROUP = "paywatch.console"


@cache
def _host() -> ModuleType:
    found = entry_points(group=GROUP, name="host")
    if not found:
        raise RuntimeError(
            f"no console host: the '{GROUP}' entry point 'host' is not installed "
            "(install the project: make install)"
        )
    return next(iter(found)).load()


def settings() -> Any:
    """The host's settings (``runtime.settings.Settings``), read afresh."""
    return _host().settings()


def build_platform() -> Any:
    """A new platform for the console (role "console", no channels)."""
    return _host().build_platform()
