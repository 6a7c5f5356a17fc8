"""The ledger's dependencies through the guard.

* ``ledger.posting`` (strong for the links): :meth:`paycore.ledger.Ledger.post` of a
  caller with that edge runs as ``guard.call("ledger.posting", caller=<link>)``; a
  degraded ``ledger.posting`` or its open breaker fails the posting, and with it the
  link's transaction, fast, naming ``ledger.posting``.
* ``ledger.hot_account`` (weak, called by ``ledger.posting``): whether a posting may
  update a hot account's balance rows (its sub-accounts) in its own transaction.
  Degraded, or with its breaker open, the fallback is the declared one: the posting
  buffers the hot legs (``pending_postings``) and summary posting
  (:func:`paycore.ledger.drain_pending`) folds them in later. How long the hot rows took
  to update at commit is recorded as the edge's outcome, so hot rows that stay slow
  (lock waits) open the breaker and postings buffer until they recover.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc
from sqlalchemy.orm import Session

from stability.errors import StabilityError

from ..db.engine import is_retryable
from ..errors import PayCoreError

POSTING, HOT = "ledger.posting", "ledger.hot_account"
_HOT_GUARD = "paywatch_hot_guard"


def posting_failure(error: BaseException) -> bool:
    """A posting's failure that counts against ``ledger.posting``: a driver error the
    Database will not retry. Business errors (insufficient balance, a duplicate),
    serialisation conflicts and failures of other dependencies are not."""
    if isinstance(error, PayCoreError | StabilityError | exc.IntegrityError):
        return False
    return not (isinstance(error, exc.DBAPIError) and is_retryable(error))


def _direct() -> bool:
    return False


def _buffer() -> bool:
    return True


def buffer_hot(guard: Any, session: Session) -> bool:
    """True when this posting's hot legs must be buffered (``ledger.hot_account``
    degraded or its breaker open); False: update the hot rows now, the call's outcome
    recorded at commit when their update is timed (:func:`timed_hot_apply`)."""
    if guard is None or guard.map.edge(POSTING, HOT) is None:
        return False
    _, refusal = guard.admit(HOT, caller=POSTING)
    if refusal is not None or guard.injected(HOT):
        # through call(): the refusal (or the drill's injected failure) is recorded and
        # the fallback taken
        buffered: bool = guard.call(HOT, _direct, caller=POSTING, fallback=_buffer)
        if buffered:
            return True
    session.info[_HOT_GUARD] = guard
    return False


def timed_hot_apply(session: Session, apply: Callable[[], None]) -> None:
    """``apply()`` (the transaction's balance changes), its duration recorded as a
    ``ledger.hot_account`` outcome when this transaction updates hot rows directly."""
    guard = session.info.pop(_HOT_GUARD, None)
    if guard is None:
        apply()
        return
    start, ok = time.perf_counter(), True
    try:
        apply()
    except Exception as e:
        ok = not posting_failure(e)
        raise
    finally:
        guard.record(HOT, POSTING, ok, time.perf_counter() - start, guard.timeout_s(POSTING, HOT))
