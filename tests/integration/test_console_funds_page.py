"""AppTest tests of the manager's fund report page over a seeded platform on a tmp SQLite
database: for managers only, money with currency and separators, an empty period, the
period in the URL."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

pytest.importorskip("streamlit.testing.v1")
from mgr_page_app import (
    _app,
    _ok,
    _page,
    platform,  # noqa: F401 - fixture
)
from streamlit.testing.v1 import AppTest  # noqa: E402


def _seed_payment(core, amount: int = 1_000) -> None:
    """A merchant and one settled channel pay (fee 60 bps) through the pay core."""
    from paycore import ChannelResult, CreateTrade, PayRequest, PayTool

    mid = core.merchants.onboard(
        "page shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"], fee_bps=60
    ).merchant.merchant_id
    core.trades.create(
        mid,
        CreateTrade(
            trade_type="instant",
            amount=amount,
            currency="CNY",
            user_id="u1",
            order_type="goods",
            sub_type="physical",
            pay_org_no="SANDBOX_A",
            out_trade_no="p1",
        ),
    )
    po = core.payments.pay(mid, PayRequest("p1", (PayTool("channel", amount),)))
    item = po.items[0]
    assert (
        core.payments.on_channel_result(
            ChannelResult("SANDBOX_A", item.channel_txn_no, "success", amount, "CNY")
        )
        == "settled"
    )


def test_fund_report_page_is_for_managers(platform):
    _seed_payment(platform.paycore)
    for role in ("viewer", "operator"):
        at = _app("console.pages.mgr_funds", platform, "x", role)
        _ok(at)
        assert at.error and not at.dataframe
    at = _app("console.pages.mgr_funds", platform, "maria", "manager")
    _ok(at)
    assert at.title[0].value == "Fund report" and len(at.dataframe) >= 3
    subjects = at.dataframe[1].value
    assert "6001" in set(subjects["subject_code"])
    at.selectbox(key="url_by").select("pay_org_no").run()
    _ok(at)
    assert at.query_params["by"] == ["pay_org_no"] or at.query_params["by"] == "pay_org_no"


def _cells(frame) -> list[str]:
    return [str(v) for row in frame.itertuples(index=False) for v in row]


def test_fund_report_shows_money_with_currency_and_separators(platform):
    """213,575.66 CNY paid at 60 bps: amounts read as money, never as bare minor units."""
    from paycore.money import fee_for

    amount = 21_357_566
    fee = fee_for(amount, 60)
    _seed_payment(platform.paycore, amount)
    at = _app("console.pages.mgr_funds", platform, "maria", "manager")
    _ok(at)
    totals, subjects = at.dataframe[0].value, at.dataframe[1].value
    fee_row = subjects[subjects["subject_code"] == "6001"].iloc[0]
    fee_text = f"{fee // 100:,}.{fee % 100:02d} CNY"
    assert fee_row["income"] == fee_text == fee_row["net"]
    assert totals.iloc[0]["platform_income"] == fee_text
    assert set(subjects[subjects["subject_code"] == "2002"].iloc[0][["income"]]) == {
        f"{(amount - fee) // 100:,}.{(amount - fee) % 100:02d} CNY"
    }
    cells = [c for frame in at.dataframe for c in _cells(frame.value)]
    assert "213,575.66 CNY" in cells
    assert str(amount) not in cells and str(fee) not in cells
    assert at.metric[0].value == fee_text
    assert at.get("plotly_chart")  # charts drawn: there was movement
    # the exports keep exact minor units
    from console.reports.funds import SubjectRow, columns_of, fund_report, to_csv

    rep = fund_report(
        platform.paycore.db, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    )
    assert f",{fee},0,{fee}," in to_csv(rep.subjects, columns_of(SubjectRow))


def test_fund_report_empty_period_says_no_data(platform):
    _seed_payment(platform.paycore)
    at = AppTest.from_function(
        _page, args=("console.pages.mgr_funds", platform, "maria", "manager"), default_timeout=60
    )
    at.query_params["from"] = "2020-01-01"
    at.query_params["to"] = "2020-01-31"
    at.run()
    _ok(at)
    assert any("No data for this period" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    empty = _app(
        "console.pages.mgr_funds",
        SimpleNamespace(paycore=_empty_core(platform)),
        "maria",
        "manager",
    )
    _ok(empty)
    assert any("No data for this period" in i.value for i in empty.info)
    assert not empty.get("plotly_chart")


def _empty_core(platform):
    """The platform's pay core with the journal emptied (an empty database)."""
    from sqlalchemy import delete

    from paycore.db.schema import JournalEntry, JournalLeg

    core = platform.paycore
    with core.db.session() as s:
        s.execute(delete(JournalLeg))
        s.execute(delete(JournalEntry))
    return core


def test_fund_report_period_lives_in_the_url(platform):
    _seed_payment(platform.paycore)
    at = AppTest.from_function(
        _page, args=("console.pages.mgr_funds", platform, "maria", "manager"), default_timeout=60
    )
    at.query_params["from"] = "2026-01-02"
    at.query_params["to"] = "2026-01-01"
    at.run()
    _ok(at)
    assert any("start day on or before" in e.value for e in at.error)
    assert str(at.date_input(key="url_from").value) == "2026-01-02"
