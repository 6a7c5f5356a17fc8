"""Errors of the runtime package (settings and command line)."""

from __future__ import annotations


class SettingsError(ValueError):
    """A ``PAYWATCH_*`` variable or a command-line flag the system cannot run with.

    The message names the variable and what it must be, and never carries a secret:
    ``paywatch`` prints it as one line and exits with status 2.
    """
