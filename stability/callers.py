"""Who is calling: the caller and budget of the guarded call in progress.

One :class:`~contextvars.ContextVar` holds ``(caller, budget_s)``. While
:meth:`stability.guard.Guard.call` runs ``fn`` for ``resource``, the caller is
``resource`` itself, so a guarded call made inside ``fn`` (the ledger's database
transaction, say) is attributed to the edge ``resource -> callee``. Threads and asyncio
tasks copy the context where they start; a worker thread starts with no caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["call_budget", "calling_as", "current_caller"]

_frame: ContextVar[tuple[str | None, float | None]] = ContextVar(
    "paywatch_guard_frame", default=(None, None)
)


def call_budget(default: float) -> float:
    """Seconds the current guarded call may take (for a client's own timeout)."""
    value = _frame.get()[1]
    return default if value is None else value


def current_caller() -> str | None:
    """The caller guarded calls made here are attributed to (``None``: nobody set one)."""
    return _frame.get()[0]


@contextmanager
def calling_as(caller: str) -> Iterator[None]:
    """Run the block as ``caller`` (a link or a job of the map); the budget is kept."""
    token = _frame.set((caller, _frame.get()[1]))
    try:
        yield
    finally:
        _frame.reset(token)


def need_caller(resource: str) -> str:
    """The current caller, for a guarded call of ``resource`` that named none."""
    caller = _frame.get()[0]
    if caller is None:
        raise ValueError(
            f"a guarded call of {resource} needs a caller: pass caller= or run it "
            "inside calling_as(caller)"
        )
    return caller
