"""What a row written by the pay core is stamped with: a new id and the time.

:class:`Stamps` is all the outbox and the anomaly recorder ask of their caller: the pay
core's dependencies (:class:`paycore.deps.CoreDeps`) satisfy it, and so does anything
else with an id generator and a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from .ids import IdGenerator


class Stamps(Protocol):
    """An id generator and a clock."""

    @property
    def ids(self) -> IdGenerator: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...
