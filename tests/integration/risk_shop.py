"""What the risk-engine tests share: an engine with limits on a pay core at a settable epoch
clock, pays and paid trades through a shop, a window's usage, a closed port's URL."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from conftest import Shop

from paycore import PayCore, PayRequest, PayTool
from paycore.risk import RiskEngine, RiskPolicy, scope_key, windows_at

MIDNIGHT = datetime(2026, 12, 7, tzinfo=UTC).timestamp()


class EpochClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def pay(shop: Shop, trade_no: str, *tools: tuple[str, int], pay_no: str | None = None):
    request = PayRequest(trade_no, tuple(PayTool(t, a) for t, a in tools), out_pay_no=pay_no)
    return shop.core.payments.pay(shop.mid, request)


def new_paid(shop: Shop, user: str = "u1", amount: int = 1000):
    """Create a trade for ``user`` and pay it with the channel (answered *processing*)."""
    t = shop.trade("instant", amount, user)
    return pay(shop, t.out_trade_no, ("channel", amount))


def engine(core: PayCore, **limits: Any) -> RiskEngine:
    core.risk.policy = RiskPolicy(**limits)
    return core.risk


def usage(risk: RiskEngine, mid: str, user: str, kind: str = "day") -> tuple[int, int]:
    window = next(w for w in windows_at(risk.policy, risk.clock()) if w.kind == kind)
    return risk.counters.usage(scope_key(mid, user, "CNY"), window)
