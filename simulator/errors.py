"""The simulator's exceptions.

::

    Exception
    └── SandboxReject      a request the sandbox channel refuses (answered as a 4xx)

Drills report failed checks in their report, not by raising.
"""

from __future__ import annotations

__all__ = ["SandboxReject"]


class SandboxReject(Exception):
    """A request the channel refuses (answered as a 4xx)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
