"""Ledger jobs: hot-account summary posting and the periodic trial balance.

* :func:`summary_posting_job` folds the buffered hot-account deltas into their
  balance rows (:func:`paycore.ledger.drain_pending`); safe on several workers at
  once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
* :func:`trial_balance_job` proves the ledger balances and hands ``ok`` to
  ``on_result``, which the worker wires to the gauge ``paywatch_trial_balance_ok``
  (1 = balanced, 0 = not: alert on 0). An unbalanced ledger is also logged as an
  error with what is off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from stability.guard import calling_as

from ..ledger import TrialBalance, drain_pending, trial_balance

if TYPE_CHECKING:
    from ..core import PayCore

log = logging.getLogger(__name__)


def summary_posting_job(core: PayCore, *, batch: int = 5000) -> int:
    """Apply every queued hot-account delta; returns how many postings were folded in.

    Runs as the map's ``ledger.hot_account``: its transactions are that edge's database
    calls (degraded ``database`` stops it; the deltas wait in the queue)."""
    with calling_as("ledger.hot_account"):
        folded = drain_pending(core.db, core.ids, batch=batch)
    if folded:
        log.debug("summary posting folded %d buffered postings", folded)
    return folded


def trial_balance_job(
    core: PayCore, on_result: Callable[[bool], None] | None = None
) -> TrialBalance:
    """Run the trial balance; report ``ok`` to ``on_result`` and return the full result."""
    tb = trial_balance(core.db)
    if not tb.ok:
        log.error(
            "trial balance NOT ok: legs per currency %s, %d unbalanced entries (first %s), "
            "%d account mismatches (first %s)",
            tb.legs_total,
            len(tb.unbalanced_entries),
            tb.unbalanced_entries[:5],
            len(tb.account_mismatches),
            tb.account_mismatches[:5],
        )
    if on_result is not None:
        on_result(tb.ok)
    return tb
