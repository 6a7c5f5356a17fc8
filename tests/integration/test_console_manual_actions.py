"""The Compensation page's manual pay items (issue 21, point 5): an operator proposes
"settle as success" or "fail and refund" with a reason, a different operator approves or
rejects; the proposer cannot approve; viewers see no buttons; every step is audited.
AppTests over a migrated SQLite pay core."""

from __future__ import annotations

import pytest
from sqlalchemy import update

pytest.importorskip("streamlit.testing.v1")

from ops_page_app import (  # noqa: E402
    _app,
    _button,
    _has_button,
    _ok,
    platform,  # noqa: F401 - fixture
)

from console.audit import recent  # noqa: E402
from paycore import PayRequest, PayTool  # noqa: E402
from paycore.db.schema import PayItem  # noqa: E402

PAGE = "console.pages.ops_compensation"


def _stuck(core, shop, amount: int):
    """A channel pay the active query handed to a person (``manual``)."""
    t = shop.trade(amount=amount)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", amount),)))
    item = po.items[0]
    with core.db.session() as s:
        s.execute(update(PayItem).where(PayItem.id == item.id).values(manual=True))
    return t, item


def _offered(at) -> set[int]:
    """The item ids the propose picker offers (its labels start with the id)."""
    return {int(o.split(" · ")[0]) for o in at.selectbox(key="manual_item").options}


def test_manual_items_are_settled_by_a_second_operator(platform):
    from conftest import Shop

    core = platform.paycore
    shop = Shop(core)
    t1, item1 = _stuck(core, shop, 700)
    t2, item2 = _stuck(core, shop, 300)

    olga = _app(PAGE, platform, "olga", "operator")
    _ok(olga)
    assert _offered(olga) == {item1.id, item2.id}
    olga.selectbox(key="manual_item").select(item1.id)
    olga.radio(key="manual_action").set_value("settle_success")
    _button(olga, "manual_propose").click().run()  # no reason: refused, nothing proposed
    _ok(olga)
    assert any("A reason is required" in e.value for e in olga.error)
    assert not _has_button(olga, "manual_approve")
    olga.text_input(key="manual_reason").input("channel confirmed by phone, INC-9")
    _button(olga, "manual_propose").click().run()
    _ok(olga)
    assert any(f"for item {item1.id}" in s.value for s in olga.success)
    assert olga.text_input(key="manual_reason").value == ""  # the reason went with it
    assert _offered(olga) == {item2.id}  # one waiting each
    assert _button(olga, "manual_approve").disabled  # four eyes: not the proposer
    assert any("a second person approves it" in c.value for c in olga.caption)

    pete = _app(PAGE, platform, "pete", "operator")
    _ok(pete)
    assert not _button(pete, "manual_approve").disabled
    _button(pete, "manual_approve").click().run()
    _ok(pete)
    assert any("settled" in s.value for s in pete.success), [s.value for s in pete.success]
    assert core.trades.get(shop.mid, t1.out_trade_no).status == "paid"
    assert not _has_button(pete, "manual_approve")  # nothing waits any more

    # the second item: proposed to fail, rejected by the second operator
    pete.selectbox(key="manual_item").select(item2.id)
    pete.radio(key="manual_action").set_value("fail_refund")
    pete.text_input(key="manual_reason").input("channel says it never arrived")
    _button(pete, "manual_propose").click().run()
    _ok(pete)
    olga = _app(PAGE, platform, "olga", "operator")
    assert _button(olga, "manual_reject").label == "Reject"
    _button(olga, "manual_reject").click().run()
    _ok(olga)
    assert any("rejected" in s.value for s in olga.success)
    assert core.trades.get(shop.mid, t2.out_trade_no).status == "paying"  # still waiting

    audit = recent(
        core.db.engine, actions=("manual_item.propose", "manual_item.approve", "manual_item.reject")
    )
    assert [(r["action"], r["actor"], r["detail"]["ok"]) for r in reversed(audit)] == [
        ("manual_item.propose", "olga", True),
        ("manual_item.approve", "pete", True),
        ("manual_item.propose", "pete", True),
        ("manual_item.reject", "olga", True),
    ]
    assert audit[-1]["target"] == f"pay_item:{item1.id}"
    assert all(r["role"] == "operator" for r in audit)

    viewer = _app(PAGE, platform, "vic", "viewer")
    _ok(viewer)
    assert not [
        b for b in viewer.button if b.key in ("manual_propose", "manual_approve", "manual_reject")
    ]
