"""bench/sql/pay_one.sql stays the SQL the pay core really issues for one payment.

pgbench replays that file as the database's own limit for ``bench/pay_e2e.py``'s
ratio. If the application's statements change and the file does not, the ratio
compares against the wrong work. This counts, per step (create, pay, callback), the
statements and transactions the pay core sends to PostgreSQL in the steady state, and
compares them with the file's.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import event

from paycore import PayRequest, PayTool

PAY_ONE = Path(__file__).resolve().parents[2] / "bench" / "sql" / "pay_one.sql"
STEP = re.compile(r"^-- step: (\w+)", re.M)


def statement_count(body: str) -> int:
    """SQL commands in a pgbench script part: each ends with ``;`` or ``\\gset``."""
    lines = [ln.strip() for ln in body.splitlines() if not ln.lstrip().startswith("--")]
    return sum(
        1
        for ln in lines
        if ln not in ("BEGIN;", "COMMIT;") and (ln.endswith(";") or ln.endswith("\\gset"))
    )


def scripted() -> dict[str, tuple[int, int]]:
    """(statements, transactions) per step of pay_one.sql."""
    text = PAY_ONE.read_text()
    marks = list(STEP.finditer(text))
    steps = {}
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end() : after.start() if after else len(text)]
        steps[mark[1]] = (statement_count(body), body.count("\nBEGIN;"))
    return steps


def test_the_script_has_the_three_steps() -> None:
    steps = scripted()
    assert list(steps) == ["create", "pay", "callback"]
    assert all(n > 0 for n, _ in steps.values())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_pay_one_sql_matches_what_the_pay_core_issues(shop, core) -> None:
    for warm in range(2):  # account ids, merchant grant and prepared statements cached
        t = shop.trade(out_trade_no=f"warm{warm}")
        po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 1000),)))
        assert shop.settle(po.items[0]) == "settled"

    seen: Counter[tuple[str, str]] = Counter()
    step = [""]

    def on_statement(conn, cursor, statement, params, context, many) -> None:  # noqa: ANN001
        seen[(step[0], "statement")] += 1

    def on_commit(conn) -> None:  # noqa: ANN001
        if not conn.connection.dbapi_connection.autocommit:  # a COMMIT on the wire
            seen[(step[0], "commit")] += 1

    engine = core.db.engine
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        step[0] = "create"
        t = shop.trade(out_trade_no="measured")
        step[0] = "pay"
        po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 1000),)))
        step[0] = "callback"
        assert shop.settle(po.items[0]) == "settled"
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)

    issued = {s: (seen[(s, "statement")], seen[(s, "commit")]) for s in scripted()}
    assert issued == scripted(), "update bench/sql/pay_one.sql to the SQL the app now issues"
