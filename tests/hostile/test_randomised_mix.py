"""A seeded random run of honest and hostile traffic from two merchants over real HTTP.

Both merchants use the same user names. Each keeps a model of its own users' balances
from its honest traffic; hostile requests (spending more than its own user holds,
hoping to reach the other merchant's user of that name, refunding more than was paid,
replaying a number with another body, faulty channel results) must all be refused or
recorded. Afterwards the ledger must agree with both models to the minor unit, the
trial balance must be zero, and no entry of one merchant may touch the other's users.
"""

from __future__ import annotations

import random
from collections import defaultdict

import sqlalchemy as sa
from hostile_stack import hostile  # noqa: F401 - the fixture

from paycore.db.schema import Account, JournalEntry, JournalLeg
from paycore.ledger import balance_of, trial_balance, user_balance

USERS = ("u1", "u2", "u3")
CNY = "CNY"


class Run:
    def __init__(self, stack, seed: int) -> None:
        self.stack = stack
        self.rnd = random.Random(seed)
        self.model: dict[tuple[str, str], int] = defaultdict(int)  # (merchant, user) -> minor
        self.paid: dict[str, tuple[object, str, int]] = {}  # trade no -> (merchant, no, left)
        self.n = 0
        self.refused = 0

    def no(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    # -- honest ----------------------------------------------------------------------------
    def fund(self, m) -> None:
        user, amount = self.rnd.choice(USERS), self.rnd.randint(100, 5_000)
        m.fund(user, amount, self.no("fund"))
        self.model[(m.mid, user)] += amount

    def spend(self, m) -> None:
        user = self.rnd.choice(USERS)
        have = self.model[(m.mid, user)]
        if have <= 0:
            return self.fund(m)
        amount, no = self.rnd.randint(1, have), self.no("buy")
        assert m.trade(no, amount, user=user).status_code == 200
        r = m.pay(no, [{"tool": "balance", "amount": amount}])
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        self.model[(m.mid, user)] -= amount
        self.paid[no] = (m, no, amount)

    def transfer(self, m) -> None:
        payer, payee = self.rnd.sample(USERS, 2)
        have = self.model[(m.mid, payer)]
        if have <= 0:
            return self.fund(m)
        amount, no = self.rnd.randint(1, have), self.no("tr")
        assert m.trade(no, amount, "transfer", user=payer, payee_user_id=payee).status_code == 200
        r = m.pay(no, [{"tool": "balance", "amount": amount}])
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        self.model[(m.mid, payer)] -= amount
        self.model[(m.mid, payee)] += amount

    def refund(self, m) -> None:
        mine = [p for p in self.paid.values() if p[0] is m and p[2] > 0]
        if not mine:
            return self.spend(m)
        _, no, left = self.rnd.choice(mine)
        amount = self.rnd.randint(1, left)
        user = m.detail(no)["trade"]["user_id"]
        r = m.refund(no, self.no("rf"), amount)
        assert r.status_code == 200 and r.json()["trade"]["status"] == "paid", r.text
        self.model[(m.mid, user)] += amount  # a balance payment's refund returns at once
        self.paid[no] = (m, no, left - amount)

    # -- hostile ---------------------------------------------------------------------------
    def overspend(self, m, other) -> None:
        """Spend more than m's own user holds, but no more than the other's user does."""
        user = self.rnd.choice(USERS)
        mine, theirs = self.model[(m.mid, user)], self.model[(other.mid, user)]
        amount, no = max(mine + 1, theirs), self.no("steal")
        assert m.trade(no, amount, user=user).status_code == 200
        r = m.pay(no, [{"tool": "balance", "amount": amount}])
        assert r.status_code == 409 and r.json()["error"]["code"] == "insufficient_balance", r.text
        self.refused += 1

    def over_refund(self, m) -> None:
        mine = [p for p in self.paid.values() if p[0] is m]
        if not mine:
            return
        _, no, left = self.rnd.choice(mine)
        r = m.refund(no, self.no("rf-over"), left + 1)
        assert r.status_code == 409, r.text
        self.refused += 1

    def replay_other_body(self, m) -> None:
        if not self.paid:
            return
        owner, no, _ = self.rnd.choice(list(self.paid.values()))
        r = m.trade(no, 1, user="u1")  # the number again, another body
        # the owner gets a conflict; the other merchant's numbers are its own namespace
        if owner is m:
            assert r.status_code == 409, r.text
            self.refused += 1
        else:
            assert r.status_code == 200, r.text

    def faulty_callback(self, m) -> None:
        """A channel result for a recharge at another amount: recorded, credits nothing."""
        self.stack.knobs("SANDBOX_A", callback_delay_ms=600_000)
        no = self.no("rc-bad")
        assert m.trade(no, 1_000, "recharge", user=self.rnd.choice(USERS)).status_code == 200
        item = m.pay(no, [{"tool": "channel", "amount": 1_000}]).json()["items"][0]
        r = self.stack.callback(
            "SANDBOX_A",
            {
                "pay_org_no": "SANDBOX_A",
                "channel_txn_no": item["channel_txn_no"],
                "status": "success",
                "amount": self.rnd.choice((0, 999, 10**12)),
                "currency": CNY,
            },
        )
        assert r.status_code < 500, r.text
        self.stack.knobs("SANDBOX_A", callback_delay_ms=50)
        self.refused += 1


def test_a_random_mix_of_honest_and_hostile_traffic_moves_only_honest_money(hostile):
    run = Run(hostile, seed=20261206)
    merchants = (hostile.a, hostile.b)
    for m in merchants:
        run.fund(m)
    for _ in range(70):
        m = run.rnd.choice(merchants)
        other = hostile.b if m is hostile.a else hostile.a
        action = run.rnd.choices(
            (
                "spend",
                "transfer",
                "refund",
                "fund",
                "overspend",
                "over_refund",
                "replay",
                "faulty_callback",
            ),
            weights=(5, 3, 3, 2, 4, 2, 2, 1),
        )[0]
        if action in ("overspend",):
            run.overspend(m, other)
        elif action == "over_refund":
            run.over_refund(m)
        elif action == "replay":
            run.replay_other_body(m)
        elif action == "faulty_callback":
            run.faulty_callback(m)
        else:
            getattr(run, action)(m)
    assert run.refused >= 10  # the hostile half really ran

    core = hostile.core
    assert trial_balance(core.db).ok
    with core.db.session() as s:
        for m in merchants:
            for user in USERS:
                got = balance_of(s, user_balance(m.mid, user, CNY))
                assert got == run.model[(m.mid, user)], (m.mid, user)
        # no entry of one merchant touches another merchant's user
        touched = s.execute(
            sa.select(JournalEntry.merchant_id, Account.owner_id)
            .join(JournalLeg, JournalLeg.entry_id == JournalEntry.id)
            .join(Account, Account.id == JournalLeg.account_id)
            .where(Account.owner_type == "user")
        ).all()
    assert touched
    assert all(owner.split(":", 1)[0] == mid for mid, owner in touched)
