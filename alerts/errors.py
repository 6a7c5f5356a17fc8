"""The alert package's exceptions: one root, a few precise kinds.

::

    AlertsError
    ├── RuleError (also ValueError): an invalid rule definition
    ├── SilenceError (also ValueError): an invalid or unknown silence
    ├── AckError (also ValueError): an invalid acknowledgement or an unknown alert
    └── NotifyError: a notification could not be delivered (after its retries)
"""

from __future__ import annotations

__all__ = ["AckError", "AlertsError", "NotifyError", "RuleError", "SilenceError"]


class AlertsError(Exception):
    """Root of every error raised by :mod:`alerts`."""


class RuleError(AlertsError, ValueError):
    """A rule definition is invalid (name, operator, windows, labels...)."""


class SilenceError(AlertsError, ValueError):
    """A silence is invalid (missing creator/comment/end, end in the past...) or unknown."""


class AckError(AlertsError, ValueError):
    """An acknowledgement is invalid (missing creator/comment) or its alert unknown or
    not firing."""


class NotifyError(AlertsError):
    """A notification could not be delivered (after its retries)."""
