"""The risk policy: limits per merchant and user, and the counting windows they use.

Every limit is per *merchant, user and currency*: merchant B's traffic for its user
``u1`` never counts against merchant A's user ``u1`` (user ids are each merchant's own
namespace, as balances are). Daily limits run by calendar day in UTC (they reset at
00:00 UTC, which a merchant can state to its users; a rolling 24 h would need every
attempt's time kept); the velocity limit by calendar minute.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

#: largest value a count or amount limit may take (minor units fit easily below 2^53,
#: where the Redis script's Lua numbers stay exact)
LIMIT_MAX = 10**15


@dataclass(frozen=True)
class RiskPolicy:
    """Limits of the risk check; amounts in minor units. Validated on construction."""

    #: single-payment ceiling
    max_amount: int = 50_000_000
    #: payments one merchant's user may begin per calendar minute (velocity)
    max_per_user_per_minute: int = 600
    #: payments one merchant's user may begin per UTC day
    daily_max_count: int = 20_000
    #: sum of the payments one merchant's user may begin per UTC day, per currency
    daily_max_amount: int = 2_000_000_000
    #: while the check is unavailable, payments up to this amount go ahead unchecked
    #: (each recorded for review); larger ones are refused
    fallback_max_amount: int = 500_000
    #: seconds between reloads of the blocklist from the database (per process)
    blocklist_refresh_s: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "blocklist_refresh_s":
                if not _number(value, float) or not 0 < value <= 3600:
                    raise ValueError("blocklist_refresh_s must be a number of seconds in (0, 3600]")
            elif not _number(value, int) or not 1 <= value <= LIMIT_MAX:
                raise ValueError(f"{f.name} must be a whole number from 1 to {LIMIT_MAX}")
        if self.fallback_max_amount > self.max_amount:
            raise ValueError("fallback_max_amount must not exceed max_amount")


def _number(value: object, kind: type) -> bool:
    """An int (or, for ``float``, an int or float), never a bool."""
    allowed = (int, float) if kind is float else (int,)
    return isinstance(value, allowed) and not isinstance(value, bool)


@dataclass(frozen=True)
class Window:
    """One counting window of a scope: at most ``max_count`` attempts and (when
    ``max_amount`` is not 0) at most ``max_amount`` in sum; kept ``ttl_s`` seconds."""

    kind: str  #: ``minute`` or ``day``
    suffix: str  #: names the window: ``m<epoch minute>`` or ``d<YYYYMMDD>``
    ttl_s: int
    max_count: int
    max_amount: int = 0


def windows_at(policy: RiskPolicy, now: float) -> tuple[Window, ...]:
    """The windows an attempt at ``now`` (seconds since the epoch) counts in."""
    minute = int(now // 60)
    day_start = int(now // 86_400) * 86_400
    day = datetime.fromtimestamp(day_start, UTC).strftime("%Y%m%d")
    # kept an hour past the day's end: replicas whose clocks differ a little agree
    day_ttl = day_start + 86_400 + 3_600 - int(now)
    return (
        Window("minute", f"m{minute}", 120, policy.max_per_user_per_minute),
        Window("day", f"d{day}", day_ttl, policy.daily_max_count, policy.daily_max_amount),
    )


def scope_key(merchant_id: str, user_id: str, currency: str) -> str:
    """The counters' scope of one merchant's user in one currency. Merchant ids and
    currency codes never hold ``|``, so the user id last keeps the key unambiguous."""
    return f"{merchant_id}|{currency}|{user_id}"
