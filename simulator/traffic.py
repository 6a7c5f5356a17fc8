"""What the simulated merchants do and when: Poisson arrivals and a realistic mix.

Pure functions over a seeded :class:`random.Random`, so a seed gives the same
traffic shape (arrival times, actions, amounts, pay orgs) on every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

#: action → weight. Channel pays dominate; balance pays need a funded user; refunds
#: need a paid trade; ``abandon`` creates a trade and closes it unpaid.
DEFAULT_MIX: Mapping[str, float] = {
    "instant_channel": 0.32,
    "guaranteed_channel": 0.12,
    "instant_balance": 0.07,
    "instant_combo": 0.04,
    "instant_coupon": 0.02,
    "instant_points": 0.02,
    "recharge": 0.12,
    "withdraw": 0.03,
    "transfer": 0.05,
    "refund": 0.09,
    "abandon": 0.05,
}
#: action → (trade type, tools) ; tools "channel", "balance", "combo" (balance + channel),
#: "coupon" (a coupon issued for the pay + channel) or "points" (the user's points + channel)
ACTIONS: Mapping[str, tuple[str, str]] = {
    "instant_channel": ("instant", "channel"),
    "guaranteed_channel": ("guaranteed", "channel"),
    "instant_balance": ("instant", "balance"),
    "instant_combo": ("instant", "combo"),
    "instant_coupon": ("instant", "coupon"),
    "instant_points": ("instant", "points"),
    "recharge": ("recharge", "channel"),
    "withdraw": ("withdraw", "channel"),
    "transfer": ("transfer", "balance"),
    "refund": ("refund", ""),
    "abandon": ("instant", ""),
}
#: pay org weights: the first org carries the most traffic, as a main channel does
ORG_WEIGHTS = (0.5, 0.3, 0.2)


def interarrival(rng: random.Random, rate: float) -> float:
    """Seconds to the next arrival of a Poisson process with ``rate`` per second."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return rng.expovariate(rate)


def arrivals(rng: random.Random, rate: float, start: float = 0.0) -> Iterator[float]:
    """The arrival times of a Poisson process from ``start`` (an endless iterator)."""
    t = start
    while True:
        t += interarrival(rng, rate)
        yield t


@dataclass(frozen=True)
class Mix:
    """Weighted choice of actions; weights need not sum to 1."""

    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions in the mix: {sorted(unknown)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("mix weights must be >= 0 with a positive sum")

    def choose(self, rng: random.Random, allowed: Sequence[str] | None = None) -> str:
        """One action (among ``allowed`` ones when given)."""
        names = [a for a in self.weights if allowed is None or a in allowed]
        weights = [self.weights[a] for a in names]
        if not names or sum(weights) <= 0:
            raise ValueError("no allowed action has a positive weight")
        return rng.choices(names, weights)[0]

    def share(self, action: str) -> float:
        """The expected fraction of ``action`` in the traffic."""
        return self.weights.get(action, 0.0) / sum(self.weights.values())


def choose_org(rng: random.Random, orgs: Sequence[str]) -> str:
    """A pay org, the first ones more often (weights :data:`ORG_WEIGHTS`, then equal)."""
    if not orgs:
        raise ValueError("no pay org to choose from")
    weights = [
        ORG_WEIGHTS[i] if i < len(ORG_WEIGHTS) else ORG_WEIGHTS[-1] for i in range(len(orgs))
    ]
    return rng.choices(list(orgs), weights)[0]


def amount(
    rng: random.Random, median: int = 5_000, sigma: float = 0.9, low: int = 100, high: int = 500_000
) -> int:
    """A basket amount in minor units: lognormal around ``median``, clamped."""
    value = int(round(median * math.exp(rng.gauss(0.0, sigma))))
    return max(low, min(high, value))


def combo_split(total: int, balance_available: int, ratio: float) -> tuple[int, int]:
    """(balance part, channel part) of a combined payment, both positive: about
    10-60 % (by ``ratio`` in [0, 1)) from the balance, at most what is available."""
    if total < 2:
        raise ValueError("a combined payment needs at least 2 minor units")
    part = min(balance_available, max(1, int(total * (0.1 + 0.5 * ratio))))
    part = max(1, min(part, total - 1))
    return part, total - part


def marketing_part(total: int, ratio: float, cap: int | None = None) -> int:
    """A coupon's or points' share of a ``total`` paid with the channel: about 5-30 % (by
    ``ratio`` in [0, 1)), at most ``cap`` and always leaving the channel 1 minor unit;
    0 when nothing fits."""
    part = max(1, int(total * (0.05 + 0.25 * ratio)))
    if cap is not None:
        part = min(part, cap)
    return max(0, min(part, total - 1))
