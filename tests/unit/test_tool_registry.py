"""The pay tool registry: which tools may pay what, and weak tools' preparation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import pytest

from paycore.errors import InvalidPayTools, PayCoreError, WrongState
from paycore.ledger import AccountRef, user_balance
from paycore.models import PayTool, TradeView
from paycore.tools import (
    ToolEnv,
    ToolPlugin,
    ToolRegistry,
    ToolSkipped,
    UnknownTool,
    default_registry,
)
from stability.errors import DependencyFailed

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def trade(trade_type: str = "instant", amount: int = 1_000) -> TradeView:
    return TradeView(
        1,
        "m1",
        "t1",
        trade_type,
        "created",
        amount,
        "CNY",
        0,
        0,
        "u1",
        None,
        "goods",
        "physical",
        "SANDBOX_A",
        None,
        1,
        "",
        NOW,
        NOW,
    )


ENV = ToolEnv(db=None, ledger=None, guard=None, merchants=None)  # type: ignore[arg-type]


class Voucher(ToolPlugin):
    """A weak tool reserving at an outside service: records prepares and releases."""

    name: ClassVar[str] = "voucher"
    trade_types: ClassVar[frozenset[str]] = frozenset({"instant"})

    def __init__(self, outage: bool = False, refuse: bool = False) -> None:
        self.outage, self.refuse = outage, refuse
        self.prepared: list[str] = []
        self.released: list[tuple[str | None, int]] = []

    def resource(self, pay_org_no: str | None) -> str | None:
        return "voucher_service"

    def validate(self, trade: TradeView, part: PayTool) -> None:
        if part.ref is None:
            raise InvalidPayTools("a voucher part needs its code", field="tools.ref")

    def prepare(self, env: ToolEnv, trade: TradeView, part: PayTool, key: str) -> PayTool:
        if self.outage:
            raise ToolSkipped("voucher service down", resource="voucher_service")
        if self.refuse:
            raise PayCoreError("voucher used")
        self.prepared.append(key)
        return part

    def source(self, merchant_id, user_id, currency, item) -> AccountRef:
        return user_balance(merchant_id, "vouchers", currency)

    def release(self, env: ToolEnv, item) -> None:
        self.released.append((item.tool_ref, item.amount))
        raise RuntimeError("release must never raise out of the registry")


def registry(*extra: ToolPlugin) -> ToolRegistry:
    r = default_registry()
    for tool in extra:
        r.register(tool)
    return r


def parts(*pairs) -> list[PayTool]:
    return [PayTool(*p) for p in pairs]


def test_default_tools_and_their_trade_types() -> None:
    r = default_registry()
    assert {"balance", "channel", "points"} <= set(r.names())
    allowed = r.allowed()
    assert {"balance", "channel", "points"} <= allowed["instant"]
    assert allowed["recharge"] == allowed["withdraw"] == frozenset({"channel"})
    assert allowed["transfer"] == frozenset({"balance"})
    assert r.get("channel").settles_by_channel and not r.get("points").settles_by_channel
    assert [t.name for t in r] == sorted(r.names())


def test_unknown_tool_is_invalid_pay_tools() -> None:
    r = default_registry()
    with pytest.raises(UnknownTool) as e:
        r.get("gift_card")
    assert isinstance(e.value, InvalidPayTools) and e.value.code == "invalid_pay_tools"
    with pytest.raises(InvalidPayTools):
        r.check("instant", parts(("gift_card", 1_000)), 1_000)


@pytest.mark.parametrize(
    ("trade_type", "pairs"),
    [
        ("instant", [("balance", 300), ("points", 200), ("channel", 500)]),
        ("guaranteed", [("points", 1_000)]),
        ("recharge", [("channel", 1_000)]),
        ("withdraw", [("channel", 1_000)]),
        ("transfer", [("balance", 1_000)]),
    ],
)
def test_allowed_parts_that_add_up_pass(trade_type: str, pairs: list) -> None:
    default_registry().check(trade_type, parts(*pairs), 1_000, trade=trade(trade_type))


@pytest.mark.parametrize(
    ("trade_type", "pairs", "error"),
    [
        ("refund", [("balance", 1_000)], WrongState),
        ("recharge", [("points", 1_000)], InvalidPayTools),
        ("transfer", [("points", 1_000)], InvalidPayTools),
        ("instant", [("points", 500), ("points", 500)], InvalidPayTools),
        ("instant", [("points", 300), ("channel", 600)], InvalidPayTools),
        ("instant", [("balance", 1_001)], InvalidPayTools),
    ],
)
def test_wrong_parts_are_refused(trade_type: str, pairs: list, error: type) -> None:
    with pytest.raises(error):
        default_registry().check(trade_type, parts(*pairs), 1_000)


def test_a_registered_tool_is_allowed_where_it_says_and_validates_its_parts() -> None:
    r = registry(Voucher())
    assert "voucher" in r.allowed()["instant"] and "voucher" not in r.allowed()["guaranteed"]
    r.check("instant", [PayTool("voucher", 1_000, "V1")], 1_000, trade=trade())
    with pytest.raises(InvalidPayTools, match="needs its code"):
        r.check("instant", [PayTool("voucher", 1_000)], 1_000, trade=trade())
    with pytest.raises(InvalidPayTools):
        r.check("guaranteed", [PayTool("voucher", 1_000, "V1")], 1_000)


def test_a_tool_name_a_pay_item_cannot_hold_is_refused() -> None:
    class Bad(Voucher):
        name: ClassVar[str] = "Gift Card"

    with pytest.raises(InvalidPayTools):
        ToolRegistry([Bad()])


def test_prepare_keys_each_part_by_pay_and_seq() -> None:
    v = Voucher()
    got, skipped = registry(v).prepare_parts(
        ENV,
        trade(),
        [PayTool("channel", 600), PayTool("voucher", 400, "V1")],
        "m1:p1",
        allow_skip=False,
    )
    assert v.prepared == ["m1:p1:1"] and skipped == []
    assert got == [PayTool("channel", 600), PayTool("voucher", 400, "V1")]


def test_a_skipped_weak_part_folds_into_the_channel_part_first() -> None:
    r = registry(Voucher(outage=True))
    given = parts(("balance", 300), ("voucher", 200), ("channel", 500))
    given[1] = PayTool("voucher", 200, "V1")
    got, skipped = r.prepare_parts(ENV, trade(), given, "m1:p1", allow_skip=True)
    assert skipped == ["voucher"]
    assert got == [PayTool("balance", 300), PayTool("channel", 700)]
    assert sum(p.amount for p in got) == 1_000  # never more than the trade, never less


def test_without_a_channel_part_the_balance_takes_it() -> None:
    r = registry(Voucher(outage=True))
    got, skipped = r.prepare_parts(
        ENV,
        trade(),
        [PayTool("voucher", 200, "V1"), PayTool("balance", 800)],
        "k",
        allow_skip=True,
    )
    assert (got, skipped) == ([PayTool("balance", 1_000)], ["voucher"])


@pytest.mark.parametrize(
    ("allow_skip", "others"),
    [(False, [("channel", 800)]), (True, [("points", 800)])],
)
def test_a_weak_outage_that_cannot_be_skipped_is_a_503_naming_its_resource(
    allow_skip: bool, others: list
) -> None:
    r = registry(Voucher(outage=True))
    with pytest.raises(DependencyFailed) as e:
        r.prepare_parts(
            ENV,
            trade(),
            [PayTool("voucher", 200, "V1"), *parts(*others)],
            "k",
            allow_skip=allow_skip,
        )
    assert e.value.resource == "voucher_service" and e.value.http_status == 503


def test_a_client_error_releases_what_was_prepared_before_it() -> None:
    ok, refusing = Voucher(), Voucher(refuse=True)
    refusing_tool = type("Voucher2", (Voucher,), {"name": "voucher2"})(refuse=True)
    r = registry(ok, refusing_tool)
    with pytest.raises(PayCoreError, match="voucher used"):
        r.prepare_parts(
            ENV,
            trade(),
            [PayTool("voucher", 400, "V1"), PayTool("voucher2", 600, "V2")],
            "k",
            allow_skip=True,
        )
    assert ok.released == [("V1", 400)]  # given back (its RuntimeError is logged, not raised)
    assert refusing.released == []


def test_release_of_an_unknown_tool_is_a_no_op() -> None:
    from paycore.db.schema import PayItem

    default_registry().release(ENV, PayItem(tool="gone", amount=1))
