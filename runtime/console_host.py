"""The console's host (entry point ``paywatch.console:host``): the console calls these
to get its settings and its platform, without importing the runtime."""

from __future__ import annotations

from .bootstrap import Platform
from .bootstrap import build_platform as _build
from .settings import Settings


def settings() -> Settings:
    """Settings from the environment, read afresh (a test may change them)."""
    return Settings.from_env()


def build_platform() -> Platform:
    """The console's platform: role "console", no channel front."""
    return _build(Settings.from_env(), role="console", channels=False)
