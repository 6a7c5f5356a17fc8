"""The alert for a dependency grade the grade audit contradicted.

``paywatch drill grade-audit`` writes one sample of :data:`METRIC` per edge it judged
(``caller``, ``callee`` labels): 1 when the edge's declared grade was contradicted, 0 when
it was confirmed. :func:`grade_contradicted_rule` fires while an edge's newest sample
within :data:`WINDOW_S` is 1; the next audit that confirms the edge resolves it (an edge
the audit could not exercise keeps its previous sample).
"""

from __future__ import annotations

from .rules import ThresholdRule
from .spec import QuerySpec

METRIC = "paywatch_grade_audit_contradicted"
NAME = "grade_contradicted"
WINDOW_S = 86400.0  #: a day: the audit is meant to run daily (its newest samples count)


def grade_contradicted_rule() -> ThresholdRule:
    """Fires per ``caller -> callee`` edge whose grade the newest audit contradicted."""
    return ThresholdRule(
        NAME,
        QuerySpec("latest", METRIC, by=("caller", "callee"), window=WINDOW_S, agg="max"),
        ">",
        0,
        for_s=0,
        severity="ticket",
        annotations={
            "summary": "the grade audit contradicted the declared grade of "
            "{{ $labels.caller }} -> {{ $labels.callee }}",
            "runbook": f"docs/runbook.md#{NAME}",
        },
    )
