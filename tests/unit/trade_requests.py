"""What the request-model tests share: a valid trade to vary and an exact-exception check."""

from __future__ import annotations

from typing import Any

import pytest

from paycore.models import CreateTrade

BASE: dict[str, Any] = {
    "out_trade_no": "T-0001",
    "trade_type": "instant",
    "amount": 1000,
    "currency": "CNY",
    "user_id": "u1",
    "order_type": "ecom",
    "sub_type": "std",
    "pay_org_no": "ORG1",
}


def trade(**overrides: Any) -> CreateTrade:
    return CreateTrade(**(BASE | overrides))


def raises_exactly(cls: type[BaseException], fn: Any, *args: Any, **kwargs: Any) -> Any:
    with pytest.raises(cls) as exc:
        fn(*args, **kwargs)
    assert type(exc.value) is cls, f"expected {cls.__name__}, got {type(exc.value).__name__}"
    return exc.value
