"""``promtool check metrics`` accepts the /metrics exposition of a populated registry.

Skipped locally when promtool is absent; under ``CI=true`` a missing promtool fails
(Debian package ``prometheus``).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from collectors import STEPS, BusinessSnapshot, CoreMetrics, metrics_response

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        if IN_CI:
            pytest.fail("promtool not found (CI=true: install the Debian package 'prometheus')")
        pytest.skip("promtool not found (Debian package 'prometheus')")
    return exe


def populated() -> CollectorRegistry:
    reg = CollectorRegistry()
    snap = BusinessSnapshot(
        processing_orders=3,
        compensation_backlog={"pending": 2, "failed": 1},
        notification_backlog=4,
        pending_postings=5,
        recon_differences={"amount_mismatch": 1},
        trial_balance_ok=True,
    )
    m = CoreMetrics(reg, business=lambda: snap)
    for step in STEPS:
        m.observe(step, "ok", seconds=0.004)
        m.observe(step, "error", "timeout", "SANDBOX_A", seconds=1.5)
    with pytest.raises(ValueError), m.timed("pay"):
        raise ValueError("x")
    m.guard_outcome("channel.SANDBOX_A", "link.pay", "pass", 0.01)
    m.guard_outcome("risk", "link.pay", "fallback", 0.0)
    m.breaker_changed("channel.SANDBOX_A", "closed", "open", "5 of 10 failed")
    m.shadow("pay")
    m.observe("pay", "ok", "", "T20240501000000123", seconds=0.01)  # overflow counter too
    return reg


def test_promtool_check_metrics_passes(promtool: str) -> None:
    body, ctype = metrics_response(populated())
    assert b"paywatch_link_requests_total" in body and b"paywatch_trial_balance_ok" in body
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    assert not proc.stdout.strip() and not proc.stderr.strip()  # no lint findings either


def test_promtool_rejects_a_bad_exposition(promtool: str) -> None:
    """The check has teeth: a counter without HELP and with a bad name is reported."""
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=b"paywatch_bad 1\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
