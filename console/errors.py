"""The console package's exceptions.

::

    ConsoleError
    ├── AuthError (also ValueError): a bad user name, role or password, or a lock-out
    └── ThrottleRaceLost: a concurrent sign-in attempt changed a throttle row first
"""

from __future__ import annotations

__all__ = ["AuthError", "ConsoleError", "ThrottleRaceLost"]


class ConsoleError(Exception):
    """Root of the console's own exceptions."""


class AuthError(ConsoleError, ValueError):
    """A bad user name, role or password, or a change that would lock admins out."""


class ThrottleRaceLost(ConsoleError):
    """A concurrent attempt changed a throttle row first (rolls the reservation back)."""
