"""CreateTrade validates at construction; its fingerprint covers every field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from trade_requests import BASE, raises_exactly, trade

from paycore.errors import (
    InvalidAmount,
    InvalidCharacters,
    InvalidContext,
    InvalidRequest,
    UnknownCurrency,
    UnsupportedTradeType,
)
from paycore.models import CreateTrade, RefundRequest
from paycore.status import TRADE_TYPES


@pytest.mark.parametrize("trade_type", [t for t in TRADE_TYPES if t not in {"transfer", "refund"}])
def test_create_trade_accepts_plain_types(trade_type: str) -> None:
    assert trade(trade_type=trade_type).trade_type == trade_type


def test_create_trade_accepts_transfer_and_refund() -> None:
    assert trade(trade_type="transfer", payee_user_id="u2").payee_user_id == "u2"
    assert trade(trade_type="refund", origin_out_trade_no="T-0000").origin_out_trade_no == "T-0000"
    assert trade(out_trade_no="x" * 64).out_trade_no == "x" * 64
    assert trade(subject="s" * 256).subject == "s" * 256


def test_trade_types() -> None:
    assert set(TRADE_TYPES) == {
        "instant",
        "guaranteed",
        "recharge",
        "withdraw",
        "refund",
        "transfer",
    }


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"trade_type": "lottery"}, UnsupportedTradeType, None),
        ({"trade_type": "INSTANT"}, UnsupportedTradeType, None),
        ({"trade_type": None}, UnsupportedTradeType, None),
        ({"amount": 0}, InvalidAmount, "amount"),
        ({"amount": -5}, InvalidAmount, "amount"),
        ({"amount": 10.0}, InvalidAmount, "amount"),
        ({"amount": "1000"}, InvalidAmount, "amount"),
        ({"amount": True}, InvalidAmount, "amount"),
        ({"currency": "XYZ"}, UnknownCurrency, None),
        ({"currency": "cny"}, UnknownCurrency, None),
        ({"order_type": ""}, InvalidContext, "order_type"),
        ({"sub_type": "bad type"}, InvalidContext, "sub_type"),
        ({"pay_org_no": "x" * 33}, InvalidContext, "pay_org_no"),
        ({"pay_org_no": None}, InvalidContext, "pay_org_no"),
        ({"out_trade_no": ""}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "x" * 65}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "a\nb"}, InvalidCharacters, "out_trade_no"),
        ({"out_trade_no": "a/b"}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": ".."}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "refund:R1"}, InvalidRequest, "out_trade_no"),
        ({"user_id": "m1:u1"}, InvalidRequest, "user_id"),
        ({"user_id": "u\x00"}, InvalidCharacters, "user_id"),
        ({"payee_user_id": "u\x00"}, InvalidCharacters, "payee_user_id"),
        ({"payee_user_id": ""}, InvalidRequest, "payee_user_id"),
        ({"origin_out_trade_no": "a b"}, InvalidRequest, "origin_out_trade_no"),
        ({"subject": "pen\x00"}, InvalidCharacters, "subject"),
        ({"subject": "abc\u202etxt"}, InvalidCharacters, "subject"),
        ({"subject": "line\u2028break"}, InvalidCharacters, "subject"),
        ({"out_trade_no": 17}, InvalidRequest, "out_trade_no"),
        ({"user_id": ""}, InvalidRequest, "user_id"),
        ({"user_id": None}, InvalidRequest, "user_id"),
        ({"origin_out_trade_no": "x" * 65}, InvalidRequest, "origin_out_trade_no"),
        ({"origin_out_trade_no": ""}, InvalidRequest, "origin_out_trade_no"),
        ({"trade_type": "transfer"}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "transfer", "payee_user_id": ""}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "transfer", "payee_user_id": "u1"}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "transfer", "payee_user_id": "x" * 65}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "refund"}, InvalidRequest, "origin_out_trade_no"),
        ({"subject": "s" * 257}, InvalidRequest, "subject"),
        ({"subject": None}, InvalidRequest, "subject"),
    ],
)
def test_create_trade_rejects(overrides: dict[str, Any], error: type, field: str | None) -> None:
    exc = raises_exactly(error, trade, **overrides)
    if field is not None:
        assert exc.details.get("field") == field


def test_create_trade_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        trade().amount = 1  # type: ignore[misc]


#: a trade that sets every field, and for each field a different valid value
FULL: dict[str, Any] = BASE | {
    "trade_type": "transfer",
    "payee_user_id": "u2",
    "subject": "rent",
    "origin_out_trade_no": "T-0000",
}
VARIANTS: dict[str, Any] = {
    "out_trade_no": "T-0002",
    "trade_type": "instant",
    "amount": 1001,
    "currency": "USD",
    "user_id": "u3",
    "order_type": "ecom2",
    "sub_type": "std2",
    "pay_org_no": "ORG2",
    "payee_user_id": "u4",
    "subject": "rent!",
    "origin_out_trade_no": "T-9999",
}


def test_fingerprint_is_stable_for_equal_requests() -> None:
    a, b = CreateTrade(**FULL), CreateTrade(**dict(FULL))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() == a.fingerprint()
    assert len(a.fingerprint()) == 64


def test_fingerprint_variants_cover_every_field() -> None:
    assert set(VARIANTS) == {f.name for f in dataclasses.fields(CreateTrade)}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fingerprint_differs_when_a_field_differs(name: str) -> None:
    base = CreateTrade(**FULL)
    other = CreateTrade(**(FULL | {name: VARIANTS[name]}))
    assert base.fingerprint() != other.fingerprint()


def test_fingerprint_distinguishes_absent_from_given() -> None:
    assert trade(payee_user_id=None).fingerprint() != trade(payee_user_id="u9").fingerprint()


def test_free_text_allows_spaces_and_any_visible_script() -> None:
    subject = "Café\u3000订单 №7 \u00a0😀"
    assert trade(subject=subject).subject == subject
    assert RefundRequest("T-1", "R-1", 5, reason=subject).reason == subject


@pytest.mark.parametrize("no", ["a", "0", "A.b_c-9", "x" * 64, "1..2"])
def test_numbers_in_the_alphabet_are_accepted(no: str) -> None:
    assert trade(out_trade_no=no, user_id=no).out_trade_no == no
