"""The alert package's exceptions: one root, a few precise kinds.

::

    AlertsError
    ├── RuleError (also ValueError): an invalid rule definition
    ├── SilenceError (also ValueError): an invalid or unknown silence
    └── NotifyError: a notification could not be delivered (after its retries)
"""

from __future__ import annotations

__all__ = ["AlertsError", "NotifyError", "RuleError", "SilenceError"]


class AlertsError(Exception):
    """Root of every error raised by :mod:`alerts`."""


class RuleError(AlertsError, ValueError):
    """A rule definition is invalid (name, operator, windows, labels...)."""


class SilenceError(AlertsError, ValueError):
    """A silence is invalid (missing creator/comment/end, end in the past...) or unknown."""


class NotifyError(AlertsError):
    """A notification could not be delivered (after its retries)."""
