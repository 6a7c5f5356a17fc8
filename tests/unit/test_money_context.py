"""Money is integer minor units with a known currency; the business context is validated."""

from __future__ import annotations

import threading

import pytest

from paycore.context import BizContext, check_code, current_context, use_context
from paycore.errors import InvalidAmount, InvalidContext, UnknownCurrency
from paycore.money import CURRENCIES, MAX_AMOUNT, check_amount, check_currency, fee_for

# -- amounts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [True, False, 1.0, 0.1, 100.0, "100", "1", None, b"1", 0, -1, -(10**6), MAX_AMOUNT + 1, 10**30],
)
def test_check_amount_rejects(amount: object) -> None:
    with pytest.raises(InvalidAmount) as exc:
        check_amount(amount)
    assert exc.value.code == "invalid_amount"


@pytest.mark.parametrize("amount", [1, 2, 12_345, MAX_AMOUNT])
def test_check_amount_accepts(amount: int) -> None:
    assert check_amount(amount) == amount
    assert type(check_amount(amount)) is int


def test_check_amount_names_the_field() -> None:
    with pytest.raises(InvalidAmount) as exc:
        check_amount(0, field="tools.amount")
    assert exc.value.details == {"field": "tools.amount"}
    assert "tools.amount" in exc.value.message


# -- currencies ----------------------------------------------------------------------------


@pytest.mark.parametrize("currency", sorted(CURRENCIES))
def test_check_currency_accepts_known(currency: str) -> None:
    assert check_currency(currency) == currency


def test_known_currencies_include_cny_and_zero_decimal_jpy() -> None:
    assert CURRENCIES["CNY"] == 2
    assert CURRENCIES["JPY"] == 0


@pytest.mark.parametrize(
    "currency", ["XXX", "cny", "Cny", "usd", "", " CNY", "CNY ", None, 156, b"CNY", ["CNY"]]
)
def test_check_currency_rejects(currency: object) -> None:
    with pytest.raises(UnknownCurrency) as exc:
        check_currency(currency)
    assert exc.value.code == "unknown_currency"


# -- fees ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "bps", "fee"),
    [
        (10_000, 60, 60),  # 0.6% of 100.00
        (9_999, 60, 59),  # 59.994 -> 59
        (166, 60, 0),  # 0.996 -> 0
        (167, 60, 1),  # 1.002 -> 1
        (1, 9_999, 0),
        (12_345, 0, 0),
        (12_345, 10_000, 12_345),
        (MAX_AMOUNT, 38, MAX_AMOUNT * 38 // 10_000),
    ],
)
def test_fee_for_floors(amount: int, bps: int, fee: int) -> None:
    result = fee_for(amount, bps)
    assert result == fee
    assert type(result) is int


# -- context -------------------------------------------------------------------------------

GOOD = {"merchant_id": "m_001", "order_type": "ecom", "sub_type": "std.v1", "pay_org_no": "ORG-9"}


def _ctx(**overrides: object) -> BizContext:
    return BizContext(**(GOOD | overrides))  # type: ignore[arg-type]


def test_valid_context_and_labels() -> None:
    ctx = _ctx()
    assert ctx.as_labels() == GOOD
    assert _ctx(merchant_id="a" * 32).merchant_id == "a" * 32
    assert _ctx(sub_type="7").sub_type == "7"


def test_context_is_immutable() -> None:
    ctx = _ctx()
    with pytest.raises(AttributeError):
        ctx.merchant_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("field", sorted(GOOD))
@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 33,
        "has space",
        "semi;colon",
        "slash/x",
        "quote'",
        "_leading",
        ".leading",
        "-leading",
        "ümlaut",
        "tab\tx",
        "new\nline",
        None,
        5,
        b"bytes",
    ],
)
def test_context_rejects_bad_fields(field: str, value: object) -> None:
    with pytest.raises(InvalidContext) as exc:
        _ctx(**{field: value})
    assert exc.value.details == {"field": field}


@pytest.mark.parametrize("field", sorted(GOOD))
def test_context_rejects_trailing_newline(field: str) -> None:
    with pytest.raises(InvalidContext):
        _ctx(**{field: GOOD[field] + "\n"})


def test_check_code_returns_value() -> None:
    assert check_code("abc-1", "f") == "abc-1"


def test_no_context_by_default_and_use_context_binds() -> None:
    assert current_context() is None
    ctx = _ctx()
    with use_context(ctx) as bound:
        assert bound is ctx
        assert current_context() is ctx
    assert current_context() is None


def test_use_context_nests_and_restores() -> None:
    outer, inner = _ctx(), _ctx(merchant_id="m_002")
    with use_context(outer):
        with use_context(inner):
            assert current_context() is inner
        assert current_context() is outer
    assert current_context() is None


def test_use_context_restores_on_exception() -> None:
    outer, inner = _ctx(), _ctx(merchant_id="m_002")
    with use_context(outer):
        with pytest.raises(RuntimeError), use_context(inner):
            assert current_context() is inner
            raise RuntimeError("boom")
        assert current_context() is outer
    assert current_context() is None


def test_context_does_not_leak_into_other_threads() -> None:
    seen: list[object] = []
    with use_context(_ctx()):
        t = threading.Thread(target=lambda: seen.append(current_context()))
        t.start()
        t.join()
    assert seen == [None]
