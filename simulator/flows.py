"""One simulated merchant action, end to end through the HTTP API.

The arrival thread draws every random choice into a :class:`Plan` (so a seed fixes
the traffic shape); :class:`Flows` then runs it on a worker thread and writes what
happened into the :class:`~.ledger.ClientLedger` and the :class:`~.stats.SimStats`.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .client import ApiAnswer, MerchantClient
from .ledger import ClientLedger, TradeRecord
from .marketing import CouponIssuer
from .merchants import SimMerchant
from .stats import SimStats
from .traffic import ACTIONS, amount, choose_org, combo_split, marketing_part

DEPENDENCY = "dependency_unavailable:channel."


@dataclass(frozen=True)
class Plan:
    """Everything random about one arrival, drawn on the arrival thread."""

    action: str
    merchant: SimMerchant
    product: tuple[str, str]
    org: str
    user: str
    other_user: str
    amount: int
    pick: float  #: which paid trade a refund takes, as a fraction of the candidates
    share: float  #: refund share of the refundable amount; combo split ratio


def draw_plan(
    rng: random.Random, action: str, merchants: Sequence[SimMerchant], users: Sequence[str]
) -> Plan | None:
    """The plan of one ``action``; None when no merchant serves its trade type."""
    trade_type = ACTIONS[action][0]
    wanted = "instant" if action in ("refund", "abandon") else trade_type
    able = [m for m in merchants if wanted in m.trade_types or action == "refund"]
    if not able:
        return None
    m = rng.choice(able)
    user, other = rng.sample(list(users), 2)
    return Plan(
        action,
        m,
        rng.choice(m.products),
        choose_org(rng, m.pay_orgs),
        user,
        other,
        amount(rng),
        rng.random(),
        rng.random(),
    )


class Flows:
    """Runs plans through the API as the plan's merchant."""

    def __init__(
        self,
        clients: dict[str, MerchantClient],
        ledger: ClientLedger,
        stats: SimStats,
        run_id: str,
        coupons: CouponIssuer | None = None,
    ) -> None:
        self.clients, self.ledger, self.stats, self.run_id = clients, ledger, stats, run_id
        self.coupons = coupons  #: None or disabled: coupon actions pay by channel only
        self._n = itertools.count(1)  # next() is atomic: pool threads share it
        self._lock = threading.Lock()  # state changes: answers, polls, notifications race

    def _no(self, prefix: str) -> str:
        return f"{prefix}{self.run_id}-{next(self._n):06d}"

    def run(self, plan: Plan) -> None:
        """Execute one plan (called on a pool thread)."""
        self.stats.add("arrivals")
        if plan.action == "refund":
            self._refund(plan)
            return
        trade_type, tools = ACTIONS[plan.action]
        if tools in ("balance", "combo") or trade_type == "withdraw":
            need = 1 if tools == "combo" else plan.amount
            if self.ledger.balance(plan.user) < need:  # not funded (as far as we know)
                if trade_type in ("withdraw", "transfer"):
                    trade_type, tools = "recharge", "channel"  # top up first
                else:
                    tools = "channel"
        rec = self._create(plan, trade_type)
        if rec is None or plan.action == "abandon":
            if rec is not None:
                self.close(rec)
            return
        self._pay(plan, rec, tools)

    def _create(self, plan: Plan, trade_type: str) -> TradeRecord | None:
        m = plan.merchant
        product = plan.product
        if trade_type in ("recharge", "withdraw", "transfer"):  # wallet sub types if granted
            wanted = {"recharge": "topup", "withdraw": "cashout", "transfer": "p2p"}[trade_type]
            product = next((p for p in m.products if p[1] == wanted), product)
            if trade_type not in m.trade_types:
                return None
        no = self._no("s")
        rec = TradeRecord(
            m.merchant_id,
            no,
            trade_type,
            plan.amount,
            plan.org,
            plan.user,
            plan.other_user if trade_type == "transfer" else None,
        )
        body: dict[str, Any] = {
            "out_trade_no": no,
            "trade_type": trade_type,
            "amount": plan.amount,
            "currency": "CNY",
            "user_id": plan.user,
            "order_type": product[0],
            "sub_type": product[1],
            "pay_org_no": plan.org,
            "subject": f"simulated {plan.action}",
        }
        if rec.payee_user_id:
            body["payee_user_id"] = rec.payee_user_id
        self.ledger.add(rec)
        got = self.clients[m.merchant_id].create_trade(**body)
        if not got.ok:
            rec.move("refused")
            self.stats.add("trades_refused")
            self.stats.refused(f"create:{got.code}")
            return None
        rec.move("created")
        self.stats.add("trades_created")
        return rec

    def _pay(self, plan: Plan, rec: TradeRecord, tools: str) -> None:
        body: list[dict[str, Any]]
        if tools == "combo":
            bal, chan = combo_split(rec.amount, self.ledger.balance(rec.user_id), plan.share)
            body = [{"tool": "balance", "amount": bal}, {"tool": "channel", "amount": chan}]
            rec.balance_part = bal
        elif tools == "balance" or rec.trade_type == "withdraw":
            rec.balance_part = rec.amount
            body = [{"tool": tools if tools == "balance" else "channel", "amount": rec.amount}]
        elif tools in ("coupon", "points"):
            body = self._marketing(plan, rec, tools)
        else:
            body = [{"tool": "channel", "amount": rec.amount}]
        if rec.balance_part and not self.ledger.reserve(rec.user_id, rec.balance_part):
            rec.balance_part = 0
            self.close(rec)  # spent meanwhile by another arrival of the same user
            return
        got = self._send_pay(rec, body, None)
        code = got.code
        if not got.ok and code.startswith(DEPENDENCY) and tools != "balance":
            others = [o for o in plan.merchant.pay_orgs if o != rec.pay_org]
            if others:  # the merchant routes around a failing channel, as cashiers do
                self.stats.add("rerouted")
                got = self._send_pay(rec, body, others[0])
        if not got.ok and got.status != 0:
            self.ledger.credit(rec.user_id, rec.balance_part)  # nothing was taken
            rec.balance_part = 0
            self.close(rec)

    def _marketing(self, plan: Plan, rec: TradeRecord, tool: str) -> list[dict[str, Any]]:
        """A coupon (issued for this pay) or the user's points, the rest by channel; the
        channel alone when there is no coupon to issue or no points to spend."""
        channel = {"tool": "channel", "amount": rec.amount}
        if tool == "coupon":
            part = marketing_part(rec.amount, plan.share)
            code = None
            if part and self.coupons is not None:
                code = self.coupons.issue(rec.merchant_id, rec.user_id, part)
            if code is None:
                return [channel]
            rec.parts["coupon"] = part
            self.stats.add("coupon_pays")
            return [
                {"tool": "coupon", "amount": part, "ref": code},
                {"tool": "channel", "amount": rec.amount - part},
            ]
        got = self.clients[rec.merchant_id].cashier(rec.out_trade_no)
        offers = got.body.get("methods", []) if got.ok else []
        held = next((int(o.get("max_amount", 0)) for o in offers if o.get("tool") == "points"), 0)
        part = marketing_part(rec.amount, plan.share, held)
        if part <= 0:
            return [channel]
        rec.parts["points"] = part
        self.stats.add("points_pays")
        return [
            {"tool": "points", "amount": part},
            {"tool": "channel", "amount": rec.amount - part},
        ]

    def _send_pay(
        self, rec: TradeRecord, tools: list[dict[str, Any]], org: str | None
    ) -> ApiAnswer:
        pay_no = rec.out_trade_no if org is None else f"{rec.out_trade_no}-{org}"[:64]
        rec.pay_nos.append(pay_no)
        self.stats.add("pays_sent")
        got = self.clients[rec.merchant_id].pay(
            rec.out_trade_no, tools, out_pay_no=pay_no, pay_org_no=org
        )
        if got.status == 0:  # no answer: unknown, the follow-up finds out
            rec.move("paying")
            return got
        if not got.ok:
            self.stats.add("pays_refused")
            self.stats.refused(f"pay:{got.code}")
            return got
        self.stats.add("pays_accepted")
        if org is not None:
            rec.pay_org = org
        rec.move("paying")
        if got.body.get("status") == "success":
            self.paid(rec)
        return got

    def paid(self, rec: TradeRecord) -> None:
        """The trade is paid (an answer, a poll or a notification said so); once."""
        with self._lock:
            rec.told_paid = True
            if rec.state in ("paid", "confirmed"):
                return
            rec.move("paid")
        self.stats.add("paid")
        if rec.trade_type == "recharge":
            self.ledger.credit(rec.user_id, rec.amount)
        elif rec.trade_type == "transfer" and rec.payee_user_id:
            self.ledger.credit(rec.payee_user_id, rec.amount)

    def failed(self, rec: TradeRecord) -> None:
        """The pay order failed (the trade is open again): close it."""
        with self._lock:
            if rec.state != "paying":
                return
            rec.move("closing")
        self.stats.add("pay_failed")
        if rec.trade_type == "withdraw":  # the hold is released at once
            self.ledger.credit(rec.user_id, rec.balance_part)
        rec.balance_part = 0  # a combo's balance part comes back later, by compensation
        self.close(rec)

    def close(self, rec: TradeRecord) -> bool:
        got = self.clients[rec.merchant_id].close_trade(rec.out_trade_no)
        if got.ok:
            rec.move("closed")
            self.stats.add("closed")
            return True
        self.stats.refused(f"close:{got.code}")
        return False

    def confirm(self, rec: TradeRecord) -> None:
        """Confirm a paid guaranteed trade (release its escrow to the merchant)."""
        if self.clients[rec.merchant_id].confirm(rec.out_trade_no).ok:
            rec.move("confirmed")
            self.stats.add("confirms")

    def _refund(self, plan: Plan) -> None:
        able = self.ledger.records(
            lambda r: r.trade_type in ("instant", "guaranteed") and r.refundable > 0
        )
        if not able:
            return
        able.sort(key=lambda r: r.out_trade_no)
        rec = able[min(len(able) - 1, int(plan.pick * len(able)))]
        left = rec.refundable
        amount_ = left if plan.share < 0.6 else max(1, int(left * plan.share / 2))
        no = self._no("r")
        rec.refunds[no] = (amount_, "sent")
        self.stats.add("refunds_sent")
        got = self.clients[rec.merchant_id].refund(rec.out_trade_no, no, amount_)
        if got.status == 0:  # no answer: the follow-up asks for the refund trade
            rec.refunds[no] = (amount_, "pending")
            return
        if not got.ok:
            rec.refunds[no] = (amount_, "refused")
            self.stats.add("refunds_refused")
            self.stats.refused(f"refund:{got.code}")
            return
        self.stats.add("refunds_accepted")
        rec.refunds[no] = (amount_, "pending")
        if got.body.get("trade", {}).get("status") in ("paid", "confirmed"):
            self.refund_done(rec, no, True)

    def refund_done(self, rec: TradeRecord, no: str, ok: bool) -> None:
        with self._lock:
            amount_, state = rec.refunds.get(no, (0, ""))
            if state != "pending":
                return
            rec.refunds[no] = (amount_, "succeeded" if ok else "failed")
        self.stats.add("refunds_succeeded" if ok else "refunds_failed")
