"""Managers: the fund report (income, outgo, balances by business and subject), charts
and CSV exports. Managers and admins only.

Page convention: see :mod:`console.pages.ops_compensation`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import streamlit as st

from console.reports.charts import dimension_chart, subject_chart
from console.reports.context import page_context, table
from console.reports.funds import DIMENSIONS, SubjectRow, columns_of, fund_report, to_csv


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    if not c.can("mgr"):
        st.error("The fund report is for managers and admins.")
        return
    st.title("Fund report")
    today = c.now().date()
    p1, p2 = st.columns(2)
    first = p1.date_input("From (UTC, inclusive)", value=today - timedelta(days=30),
                          key="fr_start")  # fmt: skip
    last = p2.date_input("To (UTC, inclusive)", value=today, key="fr_end")
    if not isinstance(first, date) or not isinstance(last, date) or last < first:
        st.error("Pick a start day on or before the end day.")
        return
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    rep = fund_report(c.db, start, end)
    st.subheader("Totals")
    st.dataframe(table(rep.totals), hide_index=True)
    currencies = sorted({t.currency for t in rep.totals}) or ["CNY"]
    cur = st.selectbox("Currency", currencies, key="fr_cur")
    st.subheader("By subject")
    st.dataframe(table([r for r in rep.subjects if r.currency == cur]), hide_index=True)
    st.plotly_chart(subject_chart(rep, cur), key="fr_subject_chart")
    st.download_button("Download subjects CSV", to_csv(rep.subjects, columns_of(SubjectRow)),
                       file_name=f"funds_subjects_{first}_{last}.csv", mime="text/csv",
                       key="fr_dl_subjects")  # fmt: skip
    st.subheader("By business")
    dim = st.selectbox("Dimension", DIMENSIONS, key="fr_dim")
    groups = rep.by(dim)
    st.dataframe(table([g for g in groups if g.currency == cur]), hide_index=True)
    st.plotly_chart(dimension_chart(groups, cur), key="fr_dim_chart")
    st.download_button(f"Download by {dim} CSV", to_csv(groups) or "",
                       file_name=f"funds_by_{dim}_{first}_{last}.csv", mime="text/csv",
                       key="fr_dl_dim")  # fmt: skip
    st.download_button("Download full breakdown CSV", to_csv(rep.details) or "",
                       file_name=f"funds_detail_{first}_{last}.csv", mime="text/csv",
                       key="fr_dl_detail")  # fmt: skip


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("mgr")
    render(platform(), _user)
