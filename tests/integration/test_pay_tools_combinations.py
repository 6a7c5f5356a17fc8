"""Pay tools as plug-ins, on SQLite and PostgreSQL: every combination of balance, points
and channel pays, fails part-way (compensation returns each part to its source) and
refunds in full; a tool registered by this test pays and refunds without service code."""

from __future__ import annotations

from itertools import combinations
from typing import ClassVar

import pytest
from sqlalchemy import select
from test_jobs_handlers import jobs

from paycore import PayRequest, PayTool, RefundRequest
from paycore.db.schema import PayException
from paycore.errors import InsufficientBalance, InvalidPayTools
from paycore.ledger import (
    AccountRef,
    channel_clearing,
    coupon_funding,
    merchant_payable,
    platform_transit,
    points_issued,
    trial_balance,
    user_points,
)
from paycore.ledger.subjects import COUPON_FUNDING
from paycore.models import TradeView
from paycore.tools import ToolEnv, ToolPlugin, ToolSkipped, default_registry
from stability.errors import DependencyFailed

AMOUNT = 1_000
TOOLS = ("balance", "points", "channel")
COMBOS = [c for n in (1, 2, 3) for c in combinations(TOOLS, n)]


def split(tools: tuple[str, ...]) -> dict[str, int]:
    """The trade's amount over ``tools``: the last takes the rest."""
    share = {t: 100 * (i + 2) for i, t in enumerate(tools[:-1])}
    share[tools[-1]] = AMOUNT - sum(share.values())
    return share


def funded(shop, core, share: dict[str, int], user: str = "u1") -> None:
    """Give ``user`` exactly what ``share`` takes from balance and points."""
    if share.get("balance"):
        shop.fund(user, share["balance"])
    if share.get("points"):
        g = core.points.grant(shop.mid, user, share["points"], "CNY", "test grant")
        assert g.posted and g.balance == share["points"]


def points(shop, user: str = "u1") -> int:
    return shop.account(user_points(shop.mid, user, "CNY"))


def pay(shop, core, share: dict[str, int], **kw):
    t = shop.trade(amount=AMOUNT)
    tools = tuple(PayTool(tool, amount) for tool, amount in share.items())
    return t, core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools, **kw))


def channel_item(po):
    return next(i for i in po.items if i.tool == "channel")


@pytest.mark.parametrize("tools", COMBOS, ids="+".join)
def test_every_combination_pays_and_refunds_in_full(shop, core, tools):
    share = split(tools)
    funded(shop, core, share)
    t, po = pay(shop, core, share)
    assert [(i.tool, i.amount) for i in po.items] == list(share.items())
    if "channel" in share:
        assert po.status == "processing"
        assert shop.settle(channel_item(po)) == "settled"
    trade = core.trades.get(shop.mid, t.out_trade_no)
    assert (trade.status, trade.paid_amount) == ("paid", AMOUNT)
    assert (shop.balance("u1"), points(shop)) == (0, 0)
    assert shop.account(merchant_payable(shop.mid, "CNY")) == AMOUNT - AMOUNT * 60 // 10_000
    assert shop.account(platform_transit("CNY")) == 0
    assert trial_balance(core.db).ok

    refund = core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r1", AMOUNT))
    (rpo,) = refund.pay_orders
    if "channel" in share:  # all or nothing: the instant parts wait for the channel's
        assert rpo.status == "processing"
        assert (shop.balance("u1"), points(shop)) == (0, 0)
        assert shop.settle(channel_item(rpo)) == "settled"
    detail = core.trades.detail(shop.mid, t.out_trade_no)
    assert detail.trade.refunded_amount == AMOUNT
    assert detail.refunds[0].trade.status == "paid"
    assert shop.balance("u1") == share.get("balance", 0)
    assert points(shop) == share.get("points", 0)
    assert shop.account(platform_transit("CNY")) == 0
    # the channel holds what funded the balance only: the pay's part went back
    assert shop.account(channel_clearing("SANDBOX_A", "CNY")) == share.get("balance", 0)
    assert trial_balance(core.db).ok


@pytest.mark.parametrize(
    "tools", [c for c in COMBOS if "channel" in c and len(c) > 1], ids="+".join
)
def test_channel_failing_after_instant_parts_is_refunded_to_each_source(shop, core, tools):
    share = split(tools)
    funded(shop, core, share)
    t, po = pay(shop, core, share)
    taken = AMOUNT - share["channel"]
    assert (shop.balance("u1"), points(shop)) == (0, 0)
    assert shop.settle(channel_item(po), "failed") == "failed"
    assert core.trades.get(shop.mid, t.out_trade_no).status == "created"
    with core.db.session() as s:
        row = s.execute(select(PayException)).scalar_one()
    assert (row.kind, row.amount_taken, row.resolution) == ("partial_payment", taken, "full_refund")
    assert shop.account(platform_transit("CNY")) == taken

    _, handlers, worker = jobs(core)
    assert handlers.enqueue_open_exceptions() == 1
    assert worker.run_once() == 1 and worker.counts["done"] == 1
    assert shop.balance("u1") == share.get("balance", 0)
    assert points(shop) == share.get("points", 0)
    assert shop.account(platform_transit("CNY")) == 0
    assert trial_balance(core.db).ok


def test_points_are_granted_idempotently_and_spent_no_further_than_held(shop, core, counts):
    first = core.points.grant(shop.mid, "u1", 300, "CNY", "welcome", grant_no="g1")
    again = core.points.grant(shop.mid, "u1", 300, "CNY", "welcome", grant_no="g1")
    assert (first.posted, again.posted, again.balance) == (True, False, 300)
    assert core.points.balance(shop.mid, "u1") == 300
    assert shop.account(points_issued("CNY")) == 300  # the marketing side of the grant
    t = shop.trade(amount=AMOUNT)
    before = counts(core.db)
    with pytest.raises(InsufficientBalance):
        core.payments.pay(
            shop.mid,
            PayRequest(t.out_trade_no, (PayTool("points", 400), PayTool("channel", 600))),
        )
    assert counts(core.db) == before  # nothing written
    assert points(shop) == 300


@pytest.mark.parametrize(
    ("trade_type", "pairs", "match"),
    [
        ("instant", [("gift_card", AMOUNT)], "unknown pay tool"),
        ("recharge", [("points", AMOUNT)], "at most once"),
        ("instant", [("points", 300), ("channel", 600)], "add up"),
    ],
)
def test_bad_tools_are_refused_and_write_nothing(shop, core, counts, trade_type, pairs, match):
    t = shop.trade(trade_type, AMOUNT)
    before = counts(core.db)
    tools = tuple(PayTool(*p) for p in pairs)
    with pytest.raises(InvalidPayTools, match=match) as e:
        core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools))
    assert e.value.code == "invalid_pay_tools"
    assert counts(core.db) == before


# -- a tool registered by the test --------------------------------------------------------
def gift_cards(currency: str) -> AccountRef:
    return AccountRef("platform", "gift_cards", COUPON_FUNDING, currency)


class GiftCard(ToolPlugin):
    """Gift cards held at an outside service, paid from the platform's gift card pot."""

    name: ClassVar[str] = "gift_card"
    trade_types: ClassVar[frozenset[str]] = frozenset({"instant"})

    def __init__(self) -> None:
        self.down = False
        self.reserved: list[str] = []
        self.released: list[tuple[int | None, str | None, int]] = []

    def resource(self, pay_org_no: str | None) -> str | None:
        return "gift_cards"

    def validate(self, trade: TradeView, part: PayTool) -> None:
        if part.ref is None:
            raise InvalidPayTools("a gift card part needs its card number")

    def prepare(self, env: ToolEnv, trade: TradeView, part: PayTool, key: str) -> PayTool:
        if self.down:
            raise ToolSkipped("gift card service down", resource="gift_cards")
        self.reserved.append(key)
        return part

    def source(self, merchant_id, user_id, currency, item) -> AccountRef:
        return gift_cards(currency)

    def release(self, env: ToolEnv, item) -> None:
        self.released.append((item.id, item.tool_ref, item.amount))


@pytest.fixture
def card(core) -> GiftCard:
    tool = GiftCard()
    tools = default_registry()
    tools.register(tool)
    core.tools = tools  # the core rewires its services: no service code changes
    return tool


def card_pay(shop, core, card_amount: int = 400, **kw):
    t = shop.trade(amount=AMOUNT)
    tools = (PayTool("gift_card", card_amount, "GC-1"), PayTool("channel", AMOUNT - card_amount))
    return t, core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools, **kw))


def test_a_registered_tool_pays_and_refunds(shop, core, card):
    t, po = card_pay(shop, core, out_pay_no="p1")
    assert card.reserved == [f"{shop.mid}:p1:0"]
    gift = next(i for i in po.items if i.tool == "gift_card")
    assert (gift.status, gift.tool_ref) == ("success", "GC-1")
    assert shop.account(gift_cards("CNY")) == 400  # debit-normal: 400 spent from the pot
    assert shop.settle(channel_item(po)) == "settled"
    assert core.trades.get(shop.mid, t.out_trade_no).status == "paid"

    refund = core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r1", AMOUNT))
    assert card.released == []  # held until the channel's part is back
    assert shop.settle(channel_item(refund.pay_orders[0])) == "settled"
    (released,) = card.released
    assert released[1:] == ("GC-1", 400) and released[0] is not None
    assert shop.account(gift_cards("CNY")) == 0
    assert shop.account(platform_transit("CNY")) == 0
    assert trial_balance(core.db).ok


def test_a_registered_tool_failed_part_way_is_refunded_and_released(shop, core, card):
    _, po = card_pay(shop, core)
    shop.settle(channel_item(po), "failed")
    assert card.released == []
    _, handlers, worker = jobs(core)
    assert handlers.enqueue_open_exceptions() == 1
    assert worker.run_once() == 1 and worker.counts["done"] == 1
    gift = next(i for i in po.items if i.tool == "gift_card")
    assert card.released == [(gift.id, "GC-1", 400)]
    assert shop.account(gift_cards("CNY")) == 0
    assert shop.account(platform_transit("CNY")) == 0
    assert trial_balance(core.db).ok


def test_a_pay_not_begun_gives_back_what_was_reserved(shop, core, card, counts):
    t = shop.trade(amount=AMOUNT)
    before = counts(core.db)
    tools = (PayTool("gift_card", 400, "GC-1"), PayTool("balance", 600))  # no balance
    with pytest.raises(InsufficientBalance):
        core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools, out_pay_no="p1"))
    assert card.reserved == [f"{shop.mid}:p1:0"]
    assert card.released == [(None, "GC-1", 400)]  # never stored: no id
    assert counts(core.db) == before


def test_a_replayed_pay_keeps_its_reservation(shop, core, card):
    t, first = card_pay(shop, core, out_pay_no="p1")
    again = core.payments.pay(
        shop.mid,
        PayRequest(
            t.out_trade_no,
            (PayTool("gift_card", 400, "GC-1"), PayTool("channel", 600)),
            out_pay_no="p1",
        ),
    )
    assert again.id == first.id and card.released == []


def test_a_weak_outage_is_a_503_unless_the_merchant_pays_without_it(shop, core, card, counts):
    card.down = True
    t = shop.trade(amount=AMOUNT)
    before = counts(core.db)
    tools = (PayTool("gift_card", 400, "GC-1"), PayTool("channel", 600))
    with pytest.raises(DependencyFailed) as e:
        core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools))
    assert (e.value.resource, e.value.http_status) == ("gift_cards", 503)
    assert counts(core.db) == before

    core.merchants.configure(shop.mid, pay_without_coupon=True)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools))
    assert po.skipped_tools == ("gift_card",)
    assert [(i.tool, i.amount) for i in po.items] == [("channel", AMOUNT)]  # not more
    assert shop.account(coupon_funding("CNY")) == 0


def test_cli_grants_points_once_per_grant_no_and_audits(sqlite_url, monkeypatch, capsys):
    from conftest import Shop

    from console.audit import recent
    from paycore import PayCore
    from runtime.cli import main

    monkeypatch.setenv("PAYWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PAYWATCH_ACTOR", "ops-olga")
    core = PayCore(sqlite_url)
    shop = Shop(core)
    try:
        grant = ["points", "grant", "--merchant", shop.mid, "--user", "u9", "--amount", "250"]
        assert main([*grant, "--grant-no", "g1", "--reason", "welcome"]) == 0
        assert "granted: 250 CNY points" in capsys.readouterr().out
        assert main([*grant, "--grant-no", "g1"]) == 0
        assert "already granted" in capsys.readouterr().out
        assert main(["points", "show", "--merchant", shop.mid, "--user", "u9"]) == 0
        assert "250 CNY points" in capsys.readouterr().out
        bad = ["points", "grant", "--merchant", "NOPE", "--user", "u9", "--amount", "5"]
        assert main(bad) == 2 and "unknown_merchant" in capsys.readouterr().err
        assert main([*grant[:-1], "0"]) == 2 and "invalid_amount" in capsys.readouterr().err
        assert core.points.balance(shop.mid, "u9") == 250
        audited = recent(core.db.engine, action="points.grant")
        assert [(e["actor"], e["target"]) for e in audited] == [("ops-olga", f"{shop.mid}/u9")]
    finally:
        core.close()
