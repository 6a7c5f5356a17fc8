"""Managers: the fund report (income, outgo, balances by business and subject), charts
and CSV exports. Managers and admins only.

Page convention: see :mod:`console.pages.ops_compensation`. Amounts are shown as money
(``213,575.66 CNY``, the currency's exponent); the CSV exports keep exact minor units.
Period, currency and dimension live in the URL (``?from=…&to=…&currency=…&by=…``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import streamlit as st

from console.panel import panel
from console.reports.charts import NO_DATA, dimension_chart, subject_chart
from console.reports.context import page_context
from console.reports.funds import (
    DIMENSIONS,
    FundReport,
    SubjectRow,
    columns_of,
    format_money,
    fund_report,
    has_movement,
    money_table,
    to_csv,
)
from console.safe import md
from console.urlstate import url_date, url_select

DIMENSION_NAMES = {
    "merchant_id": "merchant",
    "order_type": "order type",
    "sub_type": "sub type",
    "pay_org_no": "pay org",
}


def _period(today: date) -> tuple[date, date] | None:
    p1, p2 = st.columns(2)
    with p1:
        first = url_date("From (UTC, inclusive)", key="from", default=today - timedelta(days=30))
    with p2:
        last = url_date("To (UTC, inclusive)", key="to", default=today)
    if last < first:
        st.error("Pick a start day on or before the end day.")
        return None
    return first, last


def _totals(rep: FundReport) -> None:
    st.subheader("Totals")
    if not rep.totals:
        st.info(NO_DATA)
        return
    cols = st.columns(min(len(rep.totals), 4))
    for col, t in zip(cols, rep.totals, strict=False):
        col.metric(
            f"Platform income ({md(t.currency)})",
            format_money(t.platform_income, t.currency),
            help=f"{t.entries:,} journal entries; debits = credits = "
            f"{format_money(t.debits, t.currency)}",
        )
    st.dataframe(money_table(rep.totals), hide_index=True)


def _subjects(rep: FundReport, cur: str, first: date, last: date) -> None:
    st.subheader("By subject")
    rows = [r for r in rep.subjects if r.currency == cur]
    st.dataframe(money_table(rows), hide_index=True)
    fig = subject_chart(rep, cur)
    if fig is None:
        st.info(NO_DATA)
    else:
        st.plotly_chart(fig, key="fr_subject_chart")
    st.download_button(
        "Download subjects CSV (minor units)",
        to_csv(rep.subjects, columns_of(SubjectRow)),
        file_name=f"funds_subjects_{first}_{last}.csv",
        mime="text/csv",
        key="fr_dl_subjects",
    )


def _dimension(rep: FundReport, cur: str, first: date, last: date) -> None:
    st.subheader("By business")
    dim = url_select("Dimension", DIMENSIONS, key="by", format_func=lambda d: DIMENSION_NAMES[d])
    groups = rep.by(dim)
    st.dataframe(
        money_table([g for g in groups if g.currency == cur], drop=("dimension",)), hide_index=True
    )
    fig = dimension_chart(groups, cur)
    if fig is None:
        st.info(NO_DATA)
    else:
        st.plotly_chart(fig, key="fr_dim_chart")
    st.download_button(
        f"Download by {DIMENSION_NAMES[dim]} CSV (minor units)",
        to_csv(groups) or "",
        file_name=f"funds_by_{dim}_{first}_{last}.csv",
        mime="text/csv",
        key="fr_dl_dim",
    )
    st.download_button(
        "Download full breakdown CSV (minor units)",
        to_csv(rep.details) or "",
        file_name=f"funds_detail_{first}_{last}.csv",
        mime="text/csv",
        key="fr_dl_detail",
    )


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    if not c.can("mgr"):
        st.error("The fund report is for managers and admins.")
        return
    st.title("Fund report")
    period = _period(c.now().date())
    if period is None:
        return
    first, last = period
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    with panel(None, "database"):
        rep = fund_report(c.db, start, end)
        _totals(rep)
        if not rep.subjects:
            return
        currencies = sorted({t.currency for t in rep.totals} | {r.currency for r in rep.subjects})
        cur = url_select("Currency", currencies, key="currency")
        if not has_movement(rep, cur):
            st.info(
                f"{NO_DATA}: nothing was posted in {md(cur)} from {first} to {last}; "
                "the balances below are as they stood."
            )
        _subjects(rep, cur, first, last)
        _dimension(rep, cur, first, last)


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("mgr")
    render(platform(), _user)
