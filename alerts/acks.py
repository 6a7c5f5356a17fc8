"""Acknowledgements: someone has a firing alert in hand.

An acknowledged alert stays firing (and on every page that lists alerts), but the
dispatcher stops repeating its notification to humans: the repeat exists to reach
someone, and someone said they have it. An acknowledgement needs who (``creator``) and
why (``comment``), and covers the firing episode it was made in: an acknowledgement
made at ``at`` applies while the alert's ``fired_at <= at``; when the alert resolves,
the resolved notice still goes out, and a new firing pages again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
    """One acknowledgement of one alert instance."""

    id: int
    fingerprint: str
    rule: str
    creator: str
    comment: str
    at: float

    def covers(self, alert: Alert) -> bool:
        """Whether this acknowledgement applies to ``alert``'s current firing episode."""
        return (
            alert.fingerprint == self.fingerprint
            and alert.state == FIRING
            and alert.fired_at is not None
            and self.at >= alert.fired_at
        )


def _row(r: sa.Row) -> Ack:
    return Ack(r.id, r.fingerprint, r.rule, r.creator, r.comment, r.at)


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
        if not isinstance(creator, str) or not creator.strip():
            raise AckError("an acknowledgement needs its creator")
        if len(creator.strip()) > 64:
            raise AckError("creator is limited to 64 characters")
        if not isinstance(comment, str) or not comment.strip():
            raise AckError("an acknowledgement needs a comment")
        with self.engine.begin() as conn:
            row = self._alert(conn, fingerprint)
            if row.state != FIRING:
                raise AckError(f"alert {row.rule} is {row.state}, not firing")
            values = {
                "fingerprint": row.fingerprint,
                "rule": row.rule,
                "creator": creator.strip(),
                "comment": comment.strip(),
                "at": now,
            }
            new_id = conn.execute(_T.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return Ack(int(new_id), row.fingerprint, row.rule, creator.strip(), comment.strip(), now)

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
        q = _T.select().where(_T.c.fingerprint.in_(list(firing))).order_by(_T.c.id)
        out: dict[str, Ack] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                ack = _row(r)
                if ack.covers(firing[ack.fingerprint]):
                    out[ack.fingerprint] = ack
        return out

    def recent(self, limit: int = 100, fingerprint: str | None = None) -> list[Ack]:
        """The newest acknowledgements first."""
        q = _T.select().order_by(_T.c.id.desc()).limit(limit)
        if fingerprint is not None:
            q = q.where(_T.c.fingerprint == fingerprint)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]
