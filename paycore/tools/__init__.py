"""Pay tools as plug-ins: balance, channel, points, coupon, and any tool registered.

:class:`ToolPlugin` is the interface, :class:`ToolRegistry` the set the pay core asks,
:func:`default_registry` the built-in tools.
"""

from __future__ import annotations

from .balance import BalanceTool
from .base import ToolEnv, ToolPlugin
from .channel import ChannelTool
from .errors import ToolSkipped, UnknownTool
from .points import PointsTool
from .registry import ToolRegistry, default_registry, env_of, tools_of

__all__ = [
    "BalanceTool",
    "ChannelTool",
    "PointsTool",
    "ToolEnv",
    "ToolPlugin",
    "ToolRegistry",
    "ToolSkipped",
    "UnknownTool",
    "default_registry",
    "env_of",
    "tools_of",
]
