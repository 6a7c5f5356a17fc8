"""Best-effort delivery of the notification outbox to merchants, by signed HTTP POST.

Each call of :meth:`NotificationDelivery.deliver_due` claims up to ``batch`` due rows,
newest first (``ORDER BY created_at DESC``: when backlogged, fresh events go out
before stale ones), with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and a lease
(``lease_until``), so several workers can run it side by side. The claimed rows are
POSTed concurrently, then every outcome is written in one transaction.

The request body is JSON ``{"event_id", "event_type", "created_at", "data"}``; the
headers carry ``X-Paywatch-Event-Id``, ``X-Paywatch-Timestamp`` (Unix seconds, wall
clock) and ``X-Paywatch-Signature``: hex HMAC-SHA256 of ``timestamp + "." + body``
(:func:`paycore.channels.signing.sign`) keyed with the merchant's own notification
secret (:mod:`paycore.merchants`), one comma-separated value per secret while a
rotation's overlap runs (:mod:`.signing`). The keys are read in the claim's
transaction, so a rotation applies from the next batch. Only a merchant that has no
secret of its own (onboarded before per-merchant secrets) is signed with the
platform's shared key, ``secret``. A merchant verifies with
:func:`paycore.notify.verify_notification` and dedupes on the event id: delivery is at
least once.

A 2xx answer is delivery. Anything else (another status, a redirect, a timeout, a
connection error) is a retry at ``now + schedule[attempts - 1]``; after the last
interval the row is ``gave_up``. :meth:`resend` puts any row back to ``pending``,
due at once, with a fresh schedule.

Outcomes are written fenced by the claim's ``lease_until`` (a row whose lease ran out
and that another worker claimed is left to that worker); the lease is stretched to
outlast a batch of slow answers (``ceil(batch / concurrency) * timeout * 2``).
``worker_id`` names this worker in logs (the table has no holder column).

With ``guard`` each POST goes through the map's ``link.notify -> notification`` edge
(:mod:`.guarded`): the edge's timeout is the HTTP timeout, and a POST the guard refuses
(``notification`` degraded, its breaker open) is not made: its row is released still
``pending`` with its attempts untouched, and goes out on a later run.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from opentelemetry.trace import SpanKind
from sqlalchemy import Table, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from backends.errors import HttpUnavailable
from backends.http import JsonHttp
from stability.guard import calling_as

from ..channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from ..db.engine import Database
from ..db.schema import Notification, NotificationAttempt
from ..ids import IdGenerator
from ..instrument import NULL_METRICS, Metrics
from ..merchants import notify_keys
from ..tracing import outgoing_headers, resumed, split_kept, tracer
from .guarded import CALLER, DEFERRED, guarded_post, notify_timeout
from .signing import notification_signature
from .wire import EVENT_ID_HEADER, envelope, failure_reason

log = logging.getLogger(__name__)

#: seconds to wait after the 1st, 2nd, ... failed attempt: ~1m 5m 10m 30m 1h 2h 6h 15h
DEFAULT_SCHEDULE: tuple[int, ...] = (60, 300, 600, 1800, 3600, 7200, 21600, 54000)
PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "gave_up"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    event_id: str
    merchant_id: str
    event_type: str
    url: str
    payload: str
    attempts: int
    created_at: datetime
    keys: tuple[str, ...] = ()  #: the merchant's signing keys at the claim (newest first)


@dataclass(frozen=True, slots=True)
class _Outcome:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def step_outcome(self) -> str:
        """The notification step's outcome: ``ok``; ``rejected`` when the merchant's
        endpoint answered with an error (the merchant's, as a 4xx pay is: it burns no
        error budget of ours); ``error`` when nothing answered (an egress outage of ours
        looks the same) or nothing could be sent."""
        if self.ok:
            return "ok"
        return "rejected" if self.status_code is not None else "error"


class NotificationDelivery:
    """Delivers due notifications; see the module docstring for the protocol."""

    def __init__(
        self,
        db: Database,
        *,
        secret: str,
        schedule: Sequence[int] = DEFAULT_SCHEDULE,
        clock: Callable[[], datetime] = _utcnow,
        client: JsonHttp | None = None,
        worker_id: str | None = None,
        batch: int = 50,
        lease_s: float = 30.0,
        timeout: float = 3.0,
        concurrency: int = 8,
        ids: IdGenerator | None = None,
        metrics: Metrics | None = None,
        guard: Any = None,
    ) -> None:
        if not secret:
            raise ValueError("the platform's shared notification key is required")
        if not schedule or any(s <= 0 for s in schedule):
            raise ValueError("schedule must be a non-empty list of positive seconds")
        self.db = db
        self.schedule = tuple(int(s) for s in schedule)
        self.clock = clock
        self.worker_id = worker_id or f"{socket.gethostname()}:{id(self):x}"
        workers = max(1, concurrency)
        self.guard = guard  # stability.Guard: POSTs through link.notify -> notification
        timeout = notify_timeout(guard, timeout)
        # the lease must outlast a whole batch of slow answers, or another worker re-sends
        self.batch, self.timeout = batch, timeout
        self.lease_s = max(lease_s, math.ceil(batch / workers) * timeout * 2)
        self.ids = ids or IdGenerator()
        self._shared_key = secret  # for merchants without a secret of their own
        self._owns_client = client is None
        self._client = client or JsonHttp(timeout=timeout, maxsize=workers)  # never redirects
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="notify")
        self.delivered = self.failed = self.gave_up = 0  # counters since start
        self.metrics: Metrics = metrics or NULL_METRICS

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._owns_client:
            self._client.close()

    # -- delivery --------------------------------------------------------------------------
    def deliver_due(self, now: datetime | None = None) -> int:
        """Attempt every due notification (one batch); returns how many were attempted.

        Runs as the map's ``link.notify``: its transactions are that link's database
        calls."""
        with calling_as(CALLER):
            return self._deliver_due(now or self.clock())

    def _deliver_due(self, now: datetime) -> int:
        lease_until = now + timedelta(seconds=self.lease_s)
        claimed = self.db.run(lambda s: self._claim(s, now, lease_until))
        if not claimed:
            return 0
        timeout = notify_timeout(self.guard, self.timeout)  # the map may have changed
        outcomes = list(self._pool.map(lambda row: self._send(row, timeout), claimed))
        deferred = [r.id for r, o in zip(claimed, outcomes, strict=True) if o is DEFERRED]
        sent = [(r, o) for r, o in zip(claimed, outcomes, strict=True) if o is not DEFERRED]
        updates, attempts = self._outcomes(now, [r for r, _ in sent], [o for _, o in sent])
        self.db.run(lambda s: self._record(s, lease_until, updates, attempts, deferred))
        return len(sent)

    def _send(self, row: _Claimed, timeout: float) -> _Outcome:
        """One POST through the guard; :data:`DEFERRED` when the guard refused it."""
        return guarded_post(
            self.guard, lambda: self._post(row, timeout), lambda o: o.status_code is not None
        )

    def _claim(self, s: Session, now: datetime, lease_until: datetime) -> list[_Claimed]:
        n = Notification
        stmt = (
            select(n.id, n.event_id, n.merchant_id, n.event_type, n.url, n.payload)
            .add_columns(n.attempts, n.created_at)
            .where(
                n.status == PENDING,
                n.next_attempt_at <= now,
                or_(n.lease_until.is_(None), n.lease_until <= now),
            )
            .order_by(n.created_at.desc(), n.id.desc())
            .limit(self.batch)
        )
        if self.db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = [_Claimed(*r) for r in s.execute(stmt).all()]
        keys = notify_keys(s, {r.merchant_id for r in rows}, now)
        rows = [replace(r, keys=self._keys(keys.get(r.merchant_id))) for r in rows]
        if rows:
            s.execute(
                update(n)
                .where(n.id.in_([r.id for r in rows]))
                .values(lease_until=lease_until)
                .execution_options(synchronize_session=False)
            )
        return rows

    def _keys(self, own: list[str | None] | None) -> tuple[str, ...]:
        """A merchant's signing keys: its own (None in them is the shared key during a
        first rotation's overlap); the shared key only for a merchant with none at all."""
        if own is None:
            return (self._shared_key,)
        return tuple(self._shared_key if k is None else k for k in own)

    def _post(self, row: _Claimed, timeout: float | None = None) -> _Outcome:
        """One POST, in the request id and trace of the event's cause (the callback
        that settled the payment): both reach the merchant's headers."""
        kept = split_kept(json.loads(row.payload))[1]
        attributes = {"paywatch.event_id": row.event_id, "paywatch.merchant_id": row.merchant_id}
        with (
            resumed(kept),
            tracer().start_as_current_span(
                "notify deliver", kind=SpanKind.CLIENT, attributes=attributes
            ) as span,
        ):
            outcome = self._post_now(row, timeout)
            if outcome.status_code is not None:
                span.set_attribute("http.response.status_code", outcome.status_code)
            return outcome

    def _post_now(self, row: _Claimed, timeout: float | None) -> _Outcome:
        if not row.keys:  # its secrets all ran out: never fall back to the shared key
            return _Outcome(None, "no_signing_key", 0)
        body = envelope(row.event_id, row.event_type, row.created_at, row.payload)
        ts = str(int(time.time()))  # the signature's freshness is wall-clock time
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: row.event_id,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: notification_signature(row.keys, ts, body),
        }
        outgoing_headers(headers)  # X-Request-Id and traceparent
        start = time.perf_counter()
        code: int | None = None
        error = ""
        try:
            code = self._client.post(
                row.url, content=body, headers=headers, timeout=timeout or self.timeout, read=False
            ).status  # the answer's body is not read
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except HttpUnavailable as exc:  # refused, timed out, bad URL, ...
            error = "timeout" if exc.timed_out else type(exc.__cause__ or exc).__name__
        return _Outcome(code, error, int((time.perf_counter() - start) * 1000))

    def _outcomes(
        self, now: datetime, rows: list[_Claimed], outcomes: list[_Outcome]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The row updates and the attempt rows for one batch's outcomes."""
        updates: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        for row, out in zip(rows, outcomes, strict=True):
            tried = row.attempts + 1
            status, due, delivered_at = PENDING, now, None
            self.metrics.observe(
                "notification",
                out.step_outcome,
                "" if out.ok else failure_reason(out.error),
                seconds=out.duration_ms / 1000,
            )
            if out.ok:
                status, delivered_at = DELIVERED, now
                self.delivered += 1
            elif tried <= len(self.schedule):
                due = now + timedelta(seconds=self.schedule[tried - 1])
                self.failed += 1
            else:
                status = GAVE_UP
                self.gave_up += 1
                log.warning(
                    "%s: notification %s to merchant %s gave up after %d attempts (%s)",
                    self.worker_id,
                    row.event_id,
                    row.merchant_id,
                    tried,
                    out.error,
                )
            updates.append(
                {
                    "b_id": row.id,
                    "b_status": status,
                    "b_attempts": tried,
                    "b_due": due,
                    "b_delivered_at": delivered_at,
                    "b_code": out.status_code,
                    "b_error": out.error[:500],
                }
            )
            attempts.append(
                {
                    "id": self.ids.next_id(),
                    "notification_id": row.id,
                    "at": now,
                    "status_code": out.status_code,
                    "error": out.error[:500],
                    "duration_ms": out.duration_ms,
                }
            )
        return updates, attempts

    def _record(
        self,
        s: Session,
        lease_until: datetime,
        updates: list[dict[str, Any]],
        attempts: list[dict[str, Any]],
        deferred: Sequence[int] = (),
    ) -> None:
        """Write a batch's outcomes: one executemany UPDATE, one multi-row INSERT; the
        deferred rows only lose our lease (still pending, due, attempts untouched)."""
        table = cast(Table, Notification.__table__)
        n = table.c
        if deferred:
            s.execute(
                update(table)
                .where(n.id.in_(deferred), n.status == PENDING, n.lease_until == lease_until)
                .values(lease_until=None)
            )
        if not updates:
            return
        # fenced by our lease: a row re-claimed after the lease ran out is not ours
        stmt = (
            update(table)
            .where(
                n.id == bindparam("b_id"),
                n.status == PENDING,
                n.lease_until == lease_until,
            )
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_due", type_=Notification.next_attempt_at.type),
                delivered_at=func.coalesce(
                    bindparam("b_delivered_at", type_=Notification.delivered_at.type),
                    n.delivered_at,
                ),
                lease_until=None,
                last_status_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
            )
        )
        s.execute(stmt, updates)
        s.execute(insert(NotificationAttempt), attempts)

    # -- operations ------------------------------------------------------------------------
    def resend(self, notification_id: int, actor: str, now: datetime | None = None) -> bool:
        """Manual resend: back to ``pending``, due now, with the whole schedule again.

        Works for delivered and given-up rows alike; False if there is no such row.
        """
        now = now or self.clock()

        def work(s: Session) -> bool:
            done = s.execute(
                update(Notification)
                .where(Notification.id == notification_id)
                .values(
                    status=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    last_error=f"manual resend by {actor}"[:500],
                )
                .execution_options(synchronize_session=False)
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

        resent = self.db.run(work)
        if resent:
            log.info("notification %s resent by %s", notification_id, actor)
        return resent

    def backlog(self) -> int:
        """Notifications still pending (due now or waiting for their next attempt)."""
        with self.db.session() as s:
            count = s.execute(
                select(func.count()).select_from(Notification).where(Notification.status == PENDING)
            ).scalar_one()
        return int(count)
