"""The worker's jobs run as the map's callers: their transactions are those jobs'
``database`` edges."""

from __future__ import annotations

from types import SimpleNamespace

from runtime.worker import as_caller, build_scheduler
from stability.guard import current_caller


def test_the_compensation_jobs_run_as_job_compensation():
    seen: list[str | None] = []
    worker = SimpleNamespace(
        tick=lambda: seen.append(current_caller()),
        handlers=SimpleNamespace(enqueue_open_exceptions=lambda: seen.append(current_caller())),
    )
    extra = [(as_caller("job.reconciliation", lambda: seen.append(current_caller())), 60, "r")]
    scheduler = build_scheduler(worker, extra)
    for name in ("compensation", "exception_scan", "r"):
        scheduler.get_job(name).func()
    assert seen == ["job.compensation", "job.compensation", "job.reconciliation"]
    assert current_caller() is None  # nothing leaks out of a run
