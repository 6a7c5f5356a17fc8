"""The Drills page shows a stored grade audit: the verdict per edge, the tallies, the
faults' effect on the links against the impact query, and a warning for a contradiction.
"""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit.testing.v1")

from ops_page_app import _ok, _table, _texts  # noqa: E402
from test_console_drills_page import HOSTILE, _drills_app, drill_env  # noqa: E402, F401

from simulator.grade_audit_report import summary_lines  # noqa: E402
from simulator.report import save_report  # noqa: E402


def _edge(caller: str, callee: str, grade: str, observed: str, verdict: str, why: str) -> dict:
    return {
        "caller": caller,
        "callee": callee,
        "grade": grade,
        "fallback": "pay later" if grade == "weak" else "",
        "expected": "fails" if grade == "strong" else "degrades",
        "observed": observed,
        "predicted": "fails" if grade == "strong" else "degrades",
        "verdict": verdict,
        "why": why,
        "calls": {"error": 3},
    }


REPORT = {
    "drill": {"name": "grade-audit", "summary": "2 dependencies faulted in turn"},
    "status": "failed",
    "target": "every dependency",
    "reason": "",
    "time_factor": 0.1,
    "started_at": "2026-11-23T03:00:00+00:00",
    "finished_at": "2026-11-23T03:01:00+00:00",
    "traffic": {"pays_sent": 40, "paid": 30},
    "audit": {"lost": 0, "doubled": 0},
    "checks": {"no_payment_lost": True, "no_grade_contradicted": False},
    "grade_audit": {
        "seconds_per_fault": 6.0,
        "faults": [
            {
                "resource": "channel.SANDBOX_A",
                "how": "sandbox knobs: SANDBOX_A answers every call 503",
                "status": "applied",
                "links": {
                    "link.pay": {"observed": "fails", "predicted": "fails", "evidence": ""},
                    "link.notify": {"observed": "none", "predicted": "none", "evidence": ""},
                },
                "still_open": [],
            },
            {"resource": "ledger.hot_account", "status": "not_applicable", "reason": HOSTILE[2]},
        ],
        "edges": [
            _edge("link.pay", "channel.SANDBOX_A", "weak", "fails", "contradicted", HOSTILE[0])
            | {"predicted_in_traffic": "partial"},
            _edge("link.refund", "channel.SANDBOX_A", "strong", "fails", "confirmed", "2 failed"),
            _edge("ledger.posting", "ledger.hot_account", "weak", "", "not_applicable", "-"),
        ],
        "verdicts": {"confirmed": 1, "contradicted": 1, "unexercised": 0, "not_applicable": 1},
    },
}


def test_the_drills_page_shows_a_grade_audit_verdict_per_edge(drill_env):  # noqa: F811
    save_report(drill_env.engine, REPORT)
    at = _drills_app()
    _ok(at)
    edges = _table(at, "verdict")
    assert list(edges["edge"]) == [
        "link.pay -> channel.SANDBOX_A",
        "link.refund -> channel.SANDBOX_A",
        "ledger.posting -> ledger.hot_account",
    ]
    assert list(edges["verdict"]) == ["contradicted", "confirmed", "not_applicable"]
    assert list(edges["grade"]) == ["weak", "strong", "weak"]
    assert list(edges["observed"]) == ["fails", "fails", "-"]
    assert list(edges["impact query"]) == ["degrades", "fails", "degrades"]
    assert list(edges["in traffic"]) == ["partial", "-", "-"]
    faults = _table(at, "dependency")
    assert list(faults["status"]) == ["applied", "not_applicable"]
    assert list(faults["links (observed / impact query)"]) == ["pay fails/fails", "-"]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Confirmed"], metrics["Contradicted"], metrics["Not applicable"]) == (
        "1",
        "1",
        "1",
    )
    assert any("grade_contradicted fires" in e.value for e in at.error)
    assert "Traceback" not in "\n".join(_texts(at))
    # free text from a report reaches tables only (cells, never Markdown)
    assert edges["why"][0] == HOSTILE[0] and faults["fault"][1] == HOSTILE[2]
    assert not any(h in t for h in HOSTILE for t in _texts(at))


def test_a_drill_report_without_a_grade_audit_shows_no_grade_tables(drill_env):  # noqa: F811
    plain = {k: v for k, v in REPORT.items() if k != "grade_audit"}
    save_report(drill_env.engine, plain | {"drill": {"name": "channel-failure", "summary": ""}})
    at = _drills_app()
    _ok(at)
    assert not any("verdict" in d.value.columns for d in at.dataframe)
    assert not any("grade_contradicted" in e.value for e in at.error)


def test_the_terminal_summary_names_every_edge_and_the_tallies():
    lines = summary_lines(REPORT)
    assert lines[0] == "grade audit (6s per fault): FAILED"
    assert lines[1].startswith("  contradicted   link.pay -> channel.SANDBOX_A (weak): expected")
    assert "observed fails, impact query degrades" in lines[1]
    assert lines[2].split()[0] == "confirmed" and "[" not in lines[2]  # no why when confirmed
    assert lines[-2] == ("  verdicts: confirmed 1, contradicted 1, unexercised 0, not_applicable 1")
