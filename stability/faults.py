"""Fault injection at the guard's call boundary, for drills and tests only.

A :class:`FaultInjector` attached to a :class:`~stability.guard.Guard` makes every guarded
call to a faulted resource fail as the dependency itself would: the guard runs the call,
the call raises :class:`~stability.errors.DependencyFailed` (reason ``injected``), and the
guard counts an error, trips the breaker, serves a weak edge's fallback or fails a strong
one, exactly as for a real failure. Nothing is injected unless a drill attached an
injector (:meth:`FaultInjector.attach`) and named a resource.

The guard's hook, before each guarded call runs (``fault_injector`` is None unless a
drill attached one)::

    if self.fault_injector is not None:
        fn = self.fault_injector.wrap(resource, fn)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .errors import DependencyFailed

T = TypeVar("T")
ATTR = "fault_injector"  #: the guard attribute an attached injector lives in


class FaultInjector:
    """The resources whose guarded calls fail now; attach one per guard."""

    def __init__(self) -> None:
        self._faulted: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, guard: Any) -> FaultInjector:
        """The injector of ``guard``, attached now if it had none."""
        current = getattr(guard, ATTR, None)
        if isinstance(current, FaultInjector):
            return current
        injector = cls()
        setattr(guard, ATTR, injector)
        return injector

    @property
    def faulted(self) -> frozenset[str]:
        """The resources failing now."""
        return self._faulted

    def fail(self, resources: Iterable[str]) -> None:
        """Make every guarded call to ``resources`` fail from now on."""
        with self._lock:
            self._faulted = self._faulted | frozenset(resources)

    def heal(self, resources: Iterable[str] | None = None) -> None:
        """Stop failing ``resources`` (every resource when None)."""
        with self._lock:
            self._faulted = (
                frozenset() if resources is None else self._faulted - frozenset(resources)
            )

    def wrap(self, resource: str, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn``, or a call failing as ``resource`` would while it is faulted."""
        if resource not in self._faulted:
            return fn

        def failing() -> T:
            raise DependencyFailed(
                f"{resource} fails (injected by a drill)", resource=resource, reason="injected"
            )

        return failing
