"""The routing rules in the database: versioned, whole rule sets as JSON.

A publish never changes a row: it inserts the next version, so the history is the table
and a rollback is a publish of an older version's rules. ``expected_version`` makes an
edit a compare-and-set: the console publishes against the version it showed, and a
publish made meanwhile turns the second one into :class:`~.errors.StaleRuleSet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db.engine import Database
from ..db.routing_tables import RoutingRuleSet
from ..errors import DuplicateKey
from .errors import RoutingError, StaleRuleSet, UnknownRuleSet
from .model import RoutingRule, RuleSet, check_rules, rules_from_json, rules_to_json

_MAX_REASON = 512
_MAX_AUTHOR = 64
_CURRENT = select(RoutingRuleSet).order_by(RoutingRuleSet.version.desc()).limit(1)
EMPTY = RuleSet(version=0, rules=(), author="", reason="", created_at=None)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rule_set(row: RoutingRuleSet) -> RuleSet:
    return RuleSet(
        version=row.version,
        rules=rules_from_json(row.rules),
        author=row.author,
        reason=row.reason,
        created_at=row.created_at,
    )


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise RoutingError(f"{field} is required (1-{limit} characters)", field=field)
    if any(not ch.isprintable() for ch in value):
        raise RoutingError(f"{field} holds control characters", field=field)
    return value.strip()


class RoutingStore:
    """Reads and publishes rule sets in ``routing_rule_sets``."""

    rules_from_json = staticmethod(rules_from_json)
    rules_to_json = staticmethod(rules_to_json)

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.db = db
        self.clock = clock

    def current(self) -> RuleSet:
        """The newest rule set (version 0 with no rules when none was published)."""
        with self.db.reading() as s:
            row = s.execute(_CURRENT).scalar_one_or_none()
            return EMPTY if row is None else _rule_set(row)

    def current_version(self) -> int:
        """The newest version's number alone (0: none), a cheap freshness check."""
        with self.db.reading() as s:
            return int(s.execute(select(func.max(RoutingRuleSet.version))).scalar() or 0)

    def history(self, limit: int = 20) -> list[RuleSet]:
        """The newest ``limit`` rule sets, newest first."""
        limit = max(1, min(int(limit), 500))
        q = select(RoutingRuleSet).order_by(RoutingRuleSet.version.desc()).limit(limit)
        with self.db.reading() as s:
            return [_rule_set(r) for r in s.execute(q).scalars()]

    def get(self, version: int) -> RuleSet:
        """One version (:class:`UnknownRuleSet` when there is none; 0 is the empty set)."""
        if version == 0:
            return EMPTY
        with self.db.reading() as s:
            row = s.get(RoutingRuleSet, version)
            if row is None:
                raise UnknownRuleSet(f"no routing rule set version {version}", version=version)
            return _rule_set(row)

    def publish(
        self,
        rules: Iterable[RoutingRule],
        *,
        author: str,
        reason: str,
        expected_version: int | None = None,
    ) -> RuleSet:
        """Store ``rules`` as the next version and return it. ``expected_version``: the
        version the change was made against; another version current by now is
        :class:`StaleRuleSet` (409), nothing written. Invalid rules, or an empty
        author or reason, are a :class:`RoutingError` (400)."""
        rules = check_rules(rules)
        author = _text(author, "author", _MAX_AUTHOR)
        reason = _text(reason, "reason", _MAX_REASON)
        text = rules_to_json(rules)

        def write(s: Session) -> RuleSet:
            current = int(s.execute(select(func.max(RoutingRuleSet.version))).scalar() or 0)
            if expected_version is not None and expected_version != current:
                raise StaleRuleSet(
                    f"the rules changed meanwhile: version {current} is current, "
                    f"the change was made against {expected_version}",
                    current=current,
                )
            row = RoutingRuleSet(
                version=current + 1,
                rules=text,
                author=author,
                reason=reason,
                created_at=self.clock(),
            )
            s.add(row)
            s.flush()
            return RuleSet(row.version, rules, author, reason, row.created_at)

        try:
            return self.db.run(write)
        except DuplicateKey as exc:  # a concurrent publish took this version
            raise StaleRuleSet("the rules changed meanwhile: publish again") from exc
