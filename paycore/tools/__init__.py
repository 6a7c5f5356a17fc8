"""Pay tools as plug-ins: balance, channel, points, coupon, and any tool registered.

:class:`ToolPlugin` is the interface, :class:`ToolRegistry` the set the pay core asks,
:func:`default_registry` the built-in tools.
"""

from __future__ import annotations

from .base import ToolEnv, ToolPlugin
from .errors import ToolSkipped, UnknownTool

__all__ = ["ToolEnv", "ToolPlugin", "ToolSkipped", "UnknownTool"]
