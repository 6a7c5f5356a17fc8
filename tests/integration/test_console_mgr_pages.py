"""AppTest tests of the operations and manager pages: each page's ``render(ctx)`` over a
seeded platform on a tmp SQLite database, role gating and one action each."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, select

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console.audit import recent  # noqa: E402
from paycore.db.schema import CompensationTask, Notification, ReconDifference  # noqa: E402
from paycore.jobs.tasks import TaskQueue  # noqa: E402


def _page(module: str, platform, user: str, role: str) -> None:
    import importlib

    from console.reports.context import PageContext

    importlib.import_module(module).render(PageContext(platform, user, role))


def _app(module: str, platform, user: str, role: str) -> AppTest:
    at = AppTest.from_function(_page, args=(module, platform, user, role), default_timeout=60)
    return at.run()


@pytest.fixture
def platform(sqlite_url):
    from paycore import Database, PayCore

    db = Database(sqlite_url)
    core = PayCore(db)
    yield SimpleNamespace(paycore=core)
    core.lock.close()
    db.dispose()


class _FakeQuery:
    """100 ok pay requests and a p99 of 0.2 s; nothing else."""

    def count(self, metric, *, window, at, match=None, by=()):
        from collectors.query import Series

        if metric != "paywatch_link_requests_total":
            return []
        return [Series({"step": "pay", "outcome": "ok"}, 100.0)]

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        from collectors.query import Series

        return [Series({"step": "pay"}, 0.2)]


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def test_compensation_resolve_needs_a_note_and_is_audited(platform):
    core = platform.paycore
    q = TaskQueue(core.db, core.ids, clock=core.clock)
    q.enqueue(None, "refund_retry", "k1", {"x": 1}, merchant_id="m1")
    task_id = q.list()[0].id
    at = _app("console.pages.ops_compensation", platform, "olga", "operator")
    _ok(at)
    _button(at, "comp_resolve").click().run()
    _ok(at)
    assert any("note is required" in e.value for e in at.error)
    assert q.get(task_id).status == "pending"
    at.text_input(key="comp_note").input("refunded at the bank by hand")
    _button(at, "comp_resolve").click().run()
    _ok(at)
    task = q.get(task_id)
    assert task.status == "done" and "resolved by olga: refunded at the bank" in task.note
    rows = recent(core.db.engine, action="compensation.resolve")
    assert rows and rows[0]["actor"] == "olga" and rows[0]["role"] == "operator"
    assert rows[0]["target"] == f"task:{task_id}" and rows[0]["detail"]["ok"] is True


def test_compensation_viewer_cannot_act(platform):
    core = platform.paycore
    TaskQueue(core.db, core.ids, clock=core.clock).enqueue(None, "notify", "k1", {})
    at = _app("console.pages.ops_compensation", platform, "vic", "viewer")
    _ok(at)
    assert not [b for b in at.button if b.key in ("comp_resolve", "comp_retry")]
    assert any("Read-only" in i.value for i in at.info)
    with core.db.session() as s:
        assert s.execute(select(CompensationTask.status)).scalar_one() == "pending"


def test_notification_resend(platform):
    core = platform.paycore
    now = datetime.now(UTC)
    with core.db.session() as s:
        s.execute(
            insert(Notification).values(
                id=7,
                event_id="e7",
                merchant_id="m",
                event_type="trade.paid",
                trade_id=None,
                payload="{}",
                url="http://x",
                status="gave_up",
                attempts=8,
                next_attempt_at=now,
                last_error="boom",
                created_at=now,
            )
        )
    at = _app("console.pages.ops_notifications", platform, "olga", "operator")
    _ok(at)
    _button(at, "nt_resend").click().run()
    _ok(at)
    with core.db.session() as s:
        row = s.get(Notification, 7)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
    rows = recent(core.db.engine, action="notification.resend")
    assert rows and rows[0]["target"] == "notification:7"
    viewer = _app("console.pages.ops_notifications", platform, "vic", "viewer")
    _ok(viewer)
    assert not [b for b in viewer.button if b.key == "nt_resend"]


def test_reconciliation_resolve_difference(platform):
    core = platform.paycore
    with core.db.session() as s:
        s.execute(
            insert(ReconDifference).values(
                id=5,
                run_id=1,
                kind="amount_mismatch",
                pay_org_no="SANDBOX_A",
                day="2026-01-01",
                ref="X1",
                our_amount=100,
                channel_amount=90,
                our_status="success",
                channel_status="success",
                resolution="manual",
                status="open",
                note="",
                created_at=datetime.now(UTC),
            )
        )
    at = _app("console.pages.ops_reconciliation", platform, "olga", "operator")
    _ok(at)
    at.selectbox(key="url_days").select("all days").run()  # the day filter starts at yesterday
    at.text_input(key="rc_note").input("channel fee withheld, booked")
    _button(at, "rc_resolve").click().run()
    _ok(at)
    with core.db.session() as s:
        row = s.get(ReconDifference, 5)
        assert row is not None and row.status == "resolved" and "channel fee" in row.note
    assert recent(core.db.engine, action="recon.resolve_difference")[0]["target"] == "difference:5"


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


class _Counts:
    """Counts per (step, outcome), recording the windows asked; ``rate`` must not be used."""

    def __init__(
        self,
        counts: dict[tuple[str, str], float],
        guard: dict[tuple[str, str], float] | None = None,
    ) -> None:
        self.counts, self.guard, self.windows = counts, guard or {}, []

    def count(self, metric, *, window, at, match=None, by=()):
        from collectors.query import Series

        self.windows.append(window)
        if metric == "paywatch_guard_outcomes_total":
            return [Series({"resource": r, "outcome": o}, v) for (r, o), v in self.guard.items()]
        return [Series({"step": s, "outcome": o}, v) for (s, o), v in self.counts.items()]

    def rate(self, *a, **kw):
        raise AssertionError("rate x window")

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        return []


def _sla_platform(platform, query, dmap=None):
    platform.observability = SimpleNamespace(query=query)
    platform.stability = SimpleNamespace(map_store=SimpleNamespace(load=lambda: dmap))
    return platform


def test_sla_page(platform):
    _sla_platform(platform, _FakeQuery())
    at = _app("console.pages.mgr_sla", platform, "ann", "admin")
    _ok(at)
    table = at.dataframe[0].value
    assert "pay" in set(table["name"])
    viewer = _app("console.pages.mgr_sla", platform, "vic", "operator")
    _ok(viewer)
    assert viewer.error and not viewer.dataframe


def test_sla_page_window_from_the_url_and_met_missed_visible(platform):
    q = _Counts({("pay", "ok"): 990, ("pay", "error"): 10, ("refund", "ok"): 40})
    _sla_platform(platform, q)
    at = AppTest.from_function(
        _page, args=("console.pages.mgr_sla", platform, "maria", "manager"), default_timeout=60
    )
    at.query_params["window"] = "7d"
    at.run()
    _ok(at)
    assert q.windows and set(q.windows) == {7 * 86400.0}
    assert at.selectbox(key="url_window").value == "7d"
    rows = {r["name"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows["pay"]["status"] == "missed" and rows["refund"]["status"] == "met"
    assert rows["pay"]["error budget"] == "exhausted by 900.0 %"
    assert (rows["pay"]["good"], rows["pay"]["bad"]) == (990, 10)
    assert rows["trade_create"]["status"] == "no traffic"
    assert any("1 of 2 targets missed" in e.value for e in at.error)
    chart = at.get("plotly_chart")[0].proto.spec
    assert '"name":"missed"' in chart.replace(" ", "") and "#c62828" in chart
    at.selectbox(key="url_window").select("1h").run()
    _ok(at)
    assert q.windows[-1] == 3600.0


def test_sla_page_empty_window_says_no_data(platform):
    _sla_platform(platform, _Counts({}))
    at = _app("console.pages.mgr_sla", platform, "maria", "manager")
    _ok(at)
    assert any("No data for this period" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_sla_page_metrics_down_fails_alone(platform):
    class Down(_Counts):
        def count(self, *a, **kw):
            from collectors import QueryError

            raise QueryError("metrics query failed: OperationalError /srv/secret/path")

    _sla_platform(platform, Down({}))
    at = _app("console.pages.mgr_sla", platform, "maria", "manager")
    _ok(at)
    assert any("metrics source is unavailable" in w.value for w in at.warning)
    assert "/srv/secret" not in str([w.value for w in at.warning])


HOSTILE = ["![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>"]


def test_sla_page_renders_hostile_resource_names_inert(platform):
    from stability.depmap import DependencyMap, ResourceSpec

    dmap = DependencyMap([ResourceSpec(h, "service", sla_target=0.99) for h in HOSTILE])
    q = _Counts({}, guard={(h, "pass"): 5 for h in HOSTILE} | {(HOSTILE[0], "error"): 5})
    _sla_platform(platform, q, dmap)
    at = _app("console.pages.mgr_sla", platform, "maria", "manager")
    _ok(at)
    assert set(HOSTILE) <= set(at.dataframe[0].value["name"])  # tables show text as text
    texts = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error", "success")
        for e in at.get(kind)
    ]
    for h in HOSTILE:
        assert not [t for t in texts if h in t], h
    spec = at.get("plotly_chart")[0].proto.spec
    assert "<img" not in spec and "&lt;img src=x onerror=alert(1)&gt;" in spec


def _upload_page(platform, data: bytes) -> None:
    """The reconciliation page with ``st.file_uploader`` answering ``data`` (AppTest has
    no file uploader element)."""
    import io

    import streamlit as st

    from console.pages.ops_reconciliation import render
    from console.reports.context import PageContext

    class Upload(io.BytesIO):
        name = "statement.csv"

    original = st.file_uploader
    st.file_uploader = lambda *a, **k: Upload(data)  # type: ignore[assignment]
    try:
        render(PageContext(platform, "olga", "operator"))
    finally:
        st.file_uploader = original  # type: ignore[assignment]


def test_reconciliation_upload_runs_the_statement(platform):
    from datetime import date

    csv_text = (
        "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"
        "Z1,,pay,700,CNY,success,2026-01-01T10:00:00+00:00\n"
    )
    at = AppTest.from_function(
        _upload_page, args=(platform, csv_text.encode()), default_timeout=60
    ).run()
    _ok(at)
    at.selectbox(key="rc_up_org").select("SANDBOX_A")
    at.date_input(key="rc_up_day").set_value(date(2026, 1, 1))
    _button(at, "rc_run").click().run()
    _ok(at)
    assert any("1 lines checked" in s.value for s in at.success)
    with platform.paycore.db.session() as s:
        diff = s.execute(select(ReconDifference)).scalar_one()
        assert (diff.kind, diff.ref, diff.day) == ("missing_ours", "Z1", "2026-01-01")
    audit = recent(platform.paycore.db.engine, action="recon.upload")
    assert audit and audit[0]["target"] == "recon:SANDBOX_A:2026-01-01"
