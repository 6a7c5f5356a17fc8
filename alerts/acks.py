"""Acknowledgements: someone has a firing alert in hand.

An acknowledged alert stays firing (and on every page that lists alerts), but the
dispatcher stops repeating its notification to humans: the repeat exists to reach
someone, and someone said they have it. An acknowledgement needs who (``creator``) and
why (``comment``), and covers the firing episode it was made in (it keeps the alert's
``fired_at``, so the acker's clock does not matter): when the alert resolves, the
resolved notice still goes out and the acknowledgement has ended; a new firing pages
again. An acknowledgement can be withdrawn (who and why required): from then on it
covers nothing and the alert is repeated again at its next due repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import AckError
from .model import FIRING, Alert
from .schema import AlertAck, AlertState

_T = cast(sa.Table, AlertAck.__table__)
_S = cast(sa.Table, AlertState.__table__)


@dataclass(frozen=True)
class Ack:
    """One acknowledgement of one alert instance (and its withdrawal, if any)."""

    id: int
    fingerprint: str
    rule: str
    creator: str
    comment: str
    at: float
    #: the alert's ``fired_at`` when acknowledged (None: made before migration 0018)
    fired_at: float | None = None
    withdrawn_at: float | None = None
    withdrawn_by: str = ""
    withdraw_comment: str = ""

    def covers(self, alert: Alert) -> bool:
        """Whether this acknowledgement applies to ``alert``'s current firing episode."""
        return self._covers(alert.fingerprint, alert.state, alert.fired_at)

    def _covers(self, fingerprint: str, state: str, fired_at: float | None) -> bool:
        if self.withdrawn_at is not None or fingerprint != self.fingerprint:
            return False
        if state != FIRING or fired_at is None:
            return False
        if self.fired_at is not None:
            return self.fired_at == fired_at
        return self.at >= fired_at

    def status(self, alert: Alert | None) -> str:
        """``withdrawn``, ``in force`` (covers ``alert``, the alert as it is now) or
        ``ended`` (the alert resolved, or fired again since)."""
        if self.withdrawn_at is not None:
            return "withdrawn"
        return "in force" if alert is not None and self.covers(alert) else "ended"


def _row(r: sa.Row) -> Ack:
    return Ack(
        r.id,
        r.fingerprint,
        r.rule,
        r.creator,
        r.comment,
        r.at,
        r.fired_at,
        r.withdrawn_at,
        r.withdrawn_by or "",
        r.withdraw_comment or "",
    )


def _who_why(who: object, why: object, what: str) -> tuple[str, str]:
    if not isinstance(who, str) or not who.strip():
        raise AckError(f"{what} needs its creator")
    if len(who.strip()) > 64:
        raise AckError("creator is limited to 64 characters")
    if not isinstance(why, str) or not why.strip():
        raise AckError(f"{what} needs a comment")
    return who.strip(), why.strip()


class AckStore:
    """Acknowledgements in ``alert_acks``; every method takes ``now`` (default: the clock)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def ack(self, fingerprint: str, creator: str, comment: str, now: float | None = None) -> Ack:
        """Acknowledge the firing alert ``fingerprint`` (a unique prefix of at least 8
        characters is enough); :class:`AckError` if it is unknown, not firing, or a field
        is missing."""
        now = self.clock() if now is None else now
        creator, comment = _who_why(creator, comment, "an acknowledgement")
        with self.engine.begin() as conn:
            row = self._alert(conn, fingerprint)
            if row.state != FIRING:
                raise AckError(f"alert {row.rule} is {row.state}, not firing")
            values = {
                "fingerprint": row.fingerprint,
                "rule": row.rule,
                "creator": creator,
                "comment": comment,
                "at": now,
                "fired_at": row.fired_at,
            }
            new_id = conn.execute(_T.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return Ack(int(new_id), row.fingerprint, row.rule, creator, comment, now, row.fired_at)

    def withdraw(
        self, fingerprint: str, by: str, comment: str, now: float | None = None
    ) -> list[Ack]:
        """Withdraw every acknowledgement covering the alert ``fingerprint`` (a unique
        prefix of 8+ characters) now: it is repeated again when its repeat is due. Who
        (``by``) and why (``comment``) are required; :class:`AckError` if the alert is
        unknown or no acknowledgement covers it. The withdrawn acknowledgements, oldest
        first."""
        now = self.clock() if now is None else now
        by, comment = _who_why(by, comment, "a withdrawal")
        with self.engine.begin() as conn:
            alert = self._alert(conn, fingerprint)
            rows = conn.execute(
                _T.select()
                .where(_T.c.fingerprint == alert.fingerprint, _T.c.withdrawn_at.is_(None))
                .order_by(_T.c.id)
            ).all()
            mine = [
                a
                for a in map(_row, rows)
                if a._covers(alert.fingerprint, alert.state, alert.fired_at)
            ]
            if not mine:
                why = "" if alert.state == FIRING else f" (it is {alert.state})"
                raise AckError(f"no acknowledgement of {alert.rule} is in force{why}")
            done = {"withdrawn_at": now, "withdrawn_by": by, "withdraw_comment": comment}
            # withdrawn_at IS NULL again: of two withdrawals at once, one wins each row
            q = _T.update().where(_T.c.id.in_([a.id for a in mine]), _T.c.withdrawn_at.is_(None))
            if conn.execute(q.values(**done)).rowcount == 0:
                raise AckError(f"the acknowledgement of {alert.rule} was withdrawn meanwhile")
        return [
            replace(a, withdrawn_at=now, withdrawn_by=by, withdraw_comment=comment) for a in mine
        ]

    @staticmethod
    def _alert(conn: sa.Connection, fingerprint: str) -> sa.Row:
        if not isinstance(fingerprint, str) or len(fingerprint) < 8:
            raise AckError("give the alert's fingerprint (at least 8 characters)")
        q = _S.select().where(_S.c.fingerprint.startswith(fingerprint, autoescape=True)).limit(2)
        rows = conn.execute(q).all()
        if not rows:
            raise AckError(f"no alert {fingerprint}")
        if len(rows) > 1:
            raise AckError(f"{fingerprint} names more than one alert: give more characters")
        return rows[0]

    def covering(self, alerts: Iterable[Alert]) -> dict[str, Ack]:
        """The newest acknowledgement covering each of ``alerts`` (by fingerprint)."""
        firing = {a.fingerprint: a for a in alerts if a.state == FIRING}
        if not firing:
            return {}
        q = (
            _T.select()
            .where(_T.c.fingerprint.in_(list(firing)), _T.c.withdrawn_at.is_(None))
            .order_by(_T.c.id)
        )
        out: dict[str, Ack] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                ack = _row(r)
                if ack.covers(firing[ack.fingerprint]):
                    out[ack.fingerprint] = ack
        return out

    def recent(self, limit: int = 100, fingerprint: str | None = None) -> list[Ack]:
        """The newest acknowledgements first (withdrawn and ended ones included)."""
        q = _T.select().order_by(_T.c.id.desc()).limit(limit)
        if fingerprint is not None:
            q = q.where(_T.c.fingerprint == fingerprint)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]
