"""Silences: suppress notifications for alerts whose labels match, for a bounded time.

As in Alertmanager, a silence must say who made it (``creator``), why (``comment``)
and until when (``ends_at``); an open-ended or anonymous silence is refused. Matchers
are label equalities (``matchers``), optionally with Alertmanager's other operators
(``extra``: ``!=``, ``=~``, ``!~``, regexes anchored); at least one matcher must not
match an absent label (a silence matching everything would hide every page).
Evaluation and notification keep running under a silence: only the notification is
suppressed, and recorded as ``silenced``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import RuleError, SilenceError
from .inhibit import Matcher, parse_matcher
from .model import LABEL_NAME
from .schema import Silence as SilenceRow

_T = cast(sa.Table, SilenceRow.__table__)


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: dict[str, str]
    creator: str
    comment: str
    starts_at: float
    ends_at: float
    created_at: float
    #: matchers other than equality (``!=``, ``=~``, ``!~``)
    extra: tuple[Matcher, ...] = ()

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if every matcher holds for the alert's labels (labels only; not time)."""
        return all(labels.get(k) == v for k, v in self.matchers.items()) and all(
            m.matches(labels) for m in self.extra
        )

    def matchers_text(self) -> list[str]:
        """Every matcher as written: ``name=value``, ``name=~regex``..."""
        return [f"{k}={v}" for k, v in self.matchers.items()] + [str(m) for m in self.extra]


def first_match(silences: Iterable[Silence], labels: Mapping[str, str]) -> Silence | None:
    return next((s for s in silences if s.matches(labels)), None)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*")
_UNIT = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_matchers(items: Iterable[str]) -> dict[str, str]:
    """``["alertname=breaker_open", "resource=redis"]`` → matchers; :class:`SilenceError`
    for anything but ``name=value`` (a silence's matchers are label equalities)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name, value = name.strip(), value.strip().strip("\"'")
        if not sep or name.endswith(("!", "~")) or value.startswith("~"):
            raise SilenceError(f"matcher {item!r}: write name=value (equality only)")
        if not LABEL_NAME.fullmatch(name):
            raise SilenceError(f"invalid matcher label {name!r}")
        if not value:
            raise SilenceError(f"matcher {name!r} needs a non-empty string value")
        out[name] = value
    if not out:
        raise SilenceError("a silence needs at least one matcher")
    return out


def parse_silence_matchers(items: Iterable[str]) -> tuple[dict[str, str], tuple[Matcher, ...]]:
    """``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex`` → (equalities,
    the others); :class:`SilenceError` for anything else."""
    eq: dict[str, str] = {}
    extra: list[Matcher] = []
    for item in items:
        try:
            m = parse_matcher(str(item))
        except RuleError as exc:
            raise SilenceError(str(exc)) from None
        if m.op == "=" and m.value:
            eq[m.name] = m.value
        elif m.op == "=":
            raise SilenceError(f"matcher {m.name!r} needs a non-empty string value")
        else:
            extra.append(m)
    return eq, tuple(extra)


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` (a bare number is seconds) → seconds > 0."""
    m = _DURATION.fullmatch(str(text or ""))
    if m is None or float(m.group(1)) <= 0:
        raise SilenceError(f"not a duration: {text!r} (e.g. 30m, 2h, 1d)")
    return float(m.group(1)) * _UNIT[m.group(2) or "s"]


def _stored(matchers: Mapping[str, str], extra: tuple[Matcher, ...]) -> str:
    """Equality-only silences keep the ``{label: value}`` form; others a list of
    ``[name, op, value]``."""
    if not extra:
        return json.dumps(dict(sorted(matchers.items())), ensure_ascii=False)
    rows = [[k, "=", v] for k, v in sorted(matchers.items())]
    return json.dumps(rows + [[m.name, m.op, m.value] for m in extra], ensure_ascii=False)


def _loaded(text: str) -> tuple[dict[str, str], tuple[Matcher, ...]]:
    data: Any = json.loads(text)
    if isinstance(data, dict):
        return data, ()
    eq = {n: v for n, op, v in data if op == "="}
    return eq, tuple(Matcher(n, op, v) for n, op, v in data if op != "=")


def _row(r: sa.Row) -> Silence:
    eq, extra = _loaded(r.matchers)
    return Silence(r.id, eq, r.creator, r.comment, r.starts_at, r.ends_at, r.created_at, extra)


def _finite(x: object, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise SilenceError(f"{what} must be a finite epoch-seconds number")
    return float(x)


class SilenceStore:
    """Silences in ``alert_silences``; every method takes ``now`` (default: the clock)."""

    def __init__(self, engine: Engine, *, clock=time.time) -> None:
        self.engine = engine
        self.clock = clock

    def create(
        self,
        matchers: Mapping[str, str],
        creator: str,
        comment: str,
        ends_at: float | None,
        starts_at: float | None = None,
        now: float | None = None,
        extra: Iterable[Matcher] = (),
    ) -> Silence:
        """Create a silence; :class:`SilenceError` if a field is missing or inconsistent.
        ``extra`` are matchers other than equality (see :func:`parse_silence_matchers`)."""
        now = self.clock() if now is None else now
        ops = tuple(extra)
        if not isinstance(matchers, Mapping) or not (matchers or ops):
            raise SilenceError("a silence needs at least one matcher")
        if any(not isinstance(m, Matcher) or m.op == "=" for m in ops):
            raise SilenceError("extra matchers are !=, =~ or !~ matchers")
        if not matchers and all(m.matches({}) for m in ops):
            raise SilenceError("a silence needs a matcher that an absent label does not match")
        for k, v in matchers.items():
            if not isinstance(k, str) or not LABEL_NAME.fullmatch(k):
                raise SilenceError(f"invalid matcher label {k!r}")
            if not isinstance(v, str) or not v:
                raise SilenceError(f"matcher {k!r} needs a non-empty string value")
        if not isinstance(creator, str) or not creator.strip():
            raise SilenceError("a silence needs its creator")
        if len(creator) > 64:
            raise SilenceError("creator is limited to 64 characters")
        if not isinstance(comment, str) or not comment.strip():
            raise SilenceError("a silence needs a comment saying why")
        if ends_at is None:
            raise SilenceError("a silence needs an end time")
        end = _finite(ends_at, "ends_at")
        start = now if starts_at is None else _finite(starts_at, "starts_at")
        if end <= start:
            raise SilenceError("a silence must end after it starts")
        if end <= now:
            raise SilenceError("a silence must end in the future")
        values: dict[str, object] = {
            "matchers": _stored(matchers, ops),
            "creator": creator.strip(),
            "comment": comment.strip(),
            "starts_at": start,
            "ends_at": end,
            "created_at": now,
        }
        with self.engine.begin() as conn:
            new_id = conn.execute(_T.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return Silence(
            int(new_id),
            dict(sorted(matchers.items())),
            creator.strip(),
            comment.strip(),
            start,
            end,
            now,
            ops,
        )

    def get(self, silence_id: int) -> Silence:
        with self.engine.connect() as conn:
            row = conn.execute(_T.select().where(_T.c.id == silence_id)).first()
        if row is None:
            raise SilenceError(f"no silence {silence_id}")
        return _row(row)

    def expire(self, silence_id: int, now: float | None = None) -> Silence:
        """End a silence now (a silence that has not started yet ends before it starts)."""
        now = self.clock() if now is None else now
        with self.engine.begin() as conn:
            row = conn.execute(_T.select().where(_T.c.id == silence_id)).first()
            if row is None:
                raise SilenceError(f"no silence {silence_id}")
            if row.ends_at > now:
                values = {"ends_at": now, "starts_at": min(row.starts_at, now)}
                conn.execute(_T.update().where(_T.c.id == silence_id).values(**values))
        return self.get(silence_id)

    def active(self, now: float | None = None) -> list[Silence]:
        now = self.clock() if now is None else now
        q = _T.select().where(_T.c.starts_at <= now, _T.c.ends_at > now).order_by(_T.c.id)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def all(self, limit: int = 100) -> list[Silence]:
        """The newest silences, expired ones included."""
        with self.engine.connect() as conn:
            rows = conn.execute(_T.select().order_by(_T.c.id.desc()).limit(limit))
            return [_row(r) for r in rows]

    def matches(self, labels: Mapping[str, str], now: float | None = None) -> Silence | None:
        """The first active silence matching ``labels``, if any."""
        return first_match(self.active(now), labels)
