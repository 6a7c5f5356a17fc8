"""Login throttling: failed sign-ins counted per user name and per client in
``console_login_throttle``, with growing waits shared by every session and console
process (see :mod:`console.auth`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .errors import ThrottleRaceLost as _Lost
from .schema import ConsoleLoginThrottle


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


# -- login throttling --------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    """Growing waits after failed sign-ins: ``free`` failures cost nothing, then each
    further attempt waits ``base_s``, doubling, up to ``cap_s``. A key's count is forgotten
    ``forget_after`` its last failure; a success clears the user's count."""

    free: int = 3
    base_s: float = 1.0
    cap_s: float = 30.0
    forget_after: timedelta = timedelta(minutes=15)

    def delay(self, failures: int) -> float:
        """Seconds the next attempt waits after ``failures`` failures."""
        if failures < self.free:
            return 0.0
        return float(min(self.cap_s, self.base_s * 2 ** (failures - self.free)))


def throttle_keys(username: str, client: str) -> tuple[str, str]:
    """The two throttle keys of an attempt: the typed user name and the client."""
    return f"user:{(username or '').strip()[:64]}", f"client:{(client or '-')[:64]}"


def _throttle_rows(conn: Connection, keys: Iterable[str]) -> dict[str, Any]:
    rows = conn.execute(
        sa.select(ConsoleLoginThrottle).where(ConsoleLoginThrottle.key.in_(list(keys)))
    ).all()
    return {r.key: r for r in rows}


def _live_failures(row: Any, now: datetime, throttle: Throttle) -> int:
    if row is None or now - row.last_at >= throttle.forget_after:
        return 0
    return int(row.failures)


def login_wait(
    engine: Engine,
    keys: Iterable[str],
    *,
    throttle: Throttle = Throttle(),
    now: datetime | None = None,
) -> float:
    """Seconds until an attempt on ``keys`` may be checked (0: now)."""
    now = _now(now)
    with engine.connect() as conn:
        rows = _throttle_rows(conn, keys)
    waits = [
        (r.next_at - now).total_seconds() for r in rows.values() if _live_failures(r, now, throttle)
    ]
    return max([0.0, *waits])


def reserve_attempt(
    engine: Engine,
    keys: Iterable[str],
    *,
    throttle: Throttle = Throttle(),
    now: datetime | None = None,
) -> bool:
    """Count an attempt as failed before its password is checked, on every key at once
    (compare-and-set): False when a key's wait is not over or a concurrent attempt took the
    turn. A success then gives the count back (:func:`_settle_success`), so concurrent
    attempts from any session or process cannot share one turn."""
    now, keys = _now(now), list(keys)
    try:
        with engine.begin() as conn:
            rows = _throttle_rows(conn, keys)
            for key in keys:
                if not _reserve_one(conn, key, rows.get(key), now, throttle):
                    raise _Lost
    except (_Lost, sa.exc.IntegrityError):
        return False
    return True


def _reserve_one(conn: Connection, key: str, row: Any, now: datetime, throttle: Throttle) -> bool:
    failures = _live_failures(row, now, throttle)
    if failures and row.next_at > now:
        return False
    values = {
        "failures": failures + 1,
        "next_at": now + timedelta(seconds=throttle.delay(failures + 1)),
        "last_at": now,
    }
    if row is None:
        conn.execute(sa.insert(ConsoleLoginThrottle).values(key=key, version=1, **values))
        return True
    done = conn.execute(
        sa.update(ConsoleLoginThrottle)
        .where(ConsoleLoginThrottle.key == key, ConsoleLoginThrottle.version == row.version)
        .values(version=row.version + 1, **values)
    )
    return bool(done.rowcount)


def _settle_success(
    engine: Engine, keys: tuple[str, str], now: datetime, throttle: Throttle
) -> None:
    """A right password: the user's count is cleared; the client's reservation is given
    back but its earlier failures stay (one good account does not reset a guessing
    client), so its next attempt waits what they call for."""
    user_key, client_key = keys
    with engine.begin() as conn:
        conn.execute(sa.delete(ConsoleLoginThrottle).where(ConsoleLoginThrottle.key == user_key))
        row = _throttle_rows(conn, [client_key]).get(client_key)
        if row is not None:
            left = max(0, int(row.failures) - 1)
            conn.execute(
                sa.update(ConsoleLoginThrottle)
                .where(ConsoleLoginThrottle.key == client_key)
                .values(
                    failures=left,
                    next_at=now + timedelta(seconds=throttle.delay(left)),
                    version=ConsoleLoginThrottle.version + 1,
                )
            )


def _forget_old(engine: Engine, now: datetime, throttle: Throttle) -> None:
    with engine.begin() as conn:
        stale = ConsoleLoginThrottle.last_at < now - throttle.forget_after
        conn.execute(sa.delete(ConsoleLoginThrottle).where(stale))
