"""Issue #22 proof: a hard channel outage pages in a REAL Alertmanager (0.25), and the
page resolves once the channel is back.

The embedded platform (sandbox, API, worker on threads over PostgreSQL) with Poisson
merchant traffic; Alertmanager started by the test; the alert engine posts to it through
the platform's own setting (``Settings.alertmanager_url``, ``PAYWATCH_ALERTMANAGER_URL``).
Two engines judge the same outage:

* the worker's own alert job, as shipped (the default rules unscaled, every 30 s over
  the store sampled every 5 s): ``channel_down`` for SANDBOX_A must page within 60 s;
* the drill-speed rules (``runtime.drill_speed``, a tenth of their windows: the SLO page
  pair 1h/5m becomes 6m/30s, every 2 s): the channel SLO's burn-rate page.

Both resolve after the knob is reset (the breaker closes on good probes).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, wait_http
from test_alertmanager import CONFIG, alertmanager_binary

from alerts import AlertEngine, AlertmanagerNotifier
from alerts import default_rules as alert_rules
from runtime.drill_speed import scaled_rule
from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
from runtime.settings import Settings
from simulator import SimConfig, Simulator, ensure_demo_merchants

FACTOR = 0.1
ORG = "SANDBOX_A"
PAGE = "slo_channel_call_success_sandbox_a_fast"
PAGE_WITHIN_S = 120.0
DOWN = "channel_down"  # the shipped rule, unscaled
DOWN_WITHIN_S = 60.0
RESOLVE_WITHIN_S = 180.0


@pytest.fixture
def am_url(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "am.yml").write_text(CONFIG)
    (tmp_path / "am-data").mkdir()
    port = free_port()
    with (tmp_path / "am.log").open("w") as log:
        proc = subprocess.Popen(
            [
                alertmanager_binary(),
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", proc, timeout=60)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)


def fast_paging_jobs(
    settings: Settings,
) -> Callable[[Any], list[tuple[Callable[[], Any], float, str]]]:
    """The default rules at drill speed, their engine notifying the Alertmanager the
    settings name (as ``runtime.observability.build_alert_engine`` builds its notifier)."""

    def build(platform: Any) -> list[tuple[Callable[[], Any], float, str]]:
        assert settings.alertmanager_url
        notifier = AlertmanagerNotifier(
            settings.alertmanager_url,
            console_url=settings.console_url,
            service=settings.service,
            env=settings.env,
            resend_interval=settings.alertmanager_resend_s,
        )
        rules = [scaled_rule(r, FACTOR) for r in alert_rules(settings.pay_orgs)]
        obs = platform.observability
        engine = AlertEngine(platform.paycore.db.engine, obs.query, rules, notifier=notifier)
        return [(engine.evaluate, 2.0, "alerts_fast")]

    return build


def pages(am_url: str, name: str = PAGE) -> list[dict]:
    """The active page-severity ``name`` alerts in Alertmanager."""
    resp = httpx.get(am_url + "/api/v2/alerts", params={"active": "true"}, timeout=5)
    resp.raise_for_status()
    return [
        a
        for a in resp.json()
        if a["labels"].get("alertname") == name and a["labels"].get("severity") == "page"
    ]


def until(check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s")


def test_a_hard_channel_outage_pages_within_a_minute_in_alertmanager_and_resolves(
    pg_url, am_url, tmp_path
):
    settings = Settings(
        database_url=pg_url,
        alertmanager_url=am_url,
        alertmanager_resend_s=5,
        env="e2e",
        var_dir=str(tmp_path / "var"),
        notify_secret_value="outage-notify-secret",
    )
    stack = EmbeddedPlatform(
        settings, EmbeddedOptions(jobs=fast_paging_jobs(settings), sample_interval_s=1.0)
    ).start()
    sim: Simulator | None = None
    try:
        port = free_port()
        merchants = ensure_demo_merchants(
            stack.platform.paycore, settings.var_dir, f"http://127.0.0.1:{port}", settings.pay_orgs
        )
        config = SimConfig(
            api_url=stack.settings.api_url,
            rate=6.0,
            seed=22,
            receiver_port=port,
            notify_secret=settings.notify_secret(),
        )
        sim = Simulator(config, merchants).start()
        sandbox = stack.targets(settings).sandbox
        assert sandbox is not None
        # healthy traffic first: the windows fill with successes and nothing pages
        time.sleep(20)
        assert pages(am_url) == []

        sandbox.put(ORG, {"error_rate": 1.0})
        down_after = until(lambda: bool(pages(am_url, DOWN)), DOWN_WITHIN_S)
        (down,) = pages(am_url, DOWN)
        assert down["labels"]["pay_org"] == ORG
        assert down["labels"]["resource"] == f"channel.{ORG}"
        assert down["annotations"]["plan"] == f"channel {ORG} outage"
        assert down["annotations"]["runbook_url"].endswith("docs/runbook.md#channel_down")
        paged = until(lambda: bool(pages(am_url)), PAGE_WITHIN_S)
        (page,) = pages(am_url)
        labels = page["labels"]
        assert (labels["pay_org"], labels["service"], labels["env"]) == (ORG, "paywatch", "e2e")
        assert page["status"]["state"] == "active"
        assert page["generatorURL"].startswith(settings.console_url)
        assert page["annotations"]["runbook_url"].split("#")[1]
        # the other orgs' channels kept working: no page for them
        others = httpx.get(am_url + "/api/v2/alerts", timeout=5).json()
        assert not [
            a
            for a in others
            if a["labels"].get("pay_org") in ("SANDBOX_B", "SANDBOX_C")
            and a["labels"]["alertname"].startswith(("slo_channel_call_success", DOWN))
        ]

        sandbox.put(ORG, {"error_rate": 0.0})
        resolved = until(lambda: not pages(am_url) and not pages(am_url, DOWN), RESOLVE_WITHIN_S)
        print(
            f"channel_down paged after {down_after:.1f} s, the drill-speed SLO page after "
            f"{paged:.1f} s; both resolved {resolved:.1f} s after the reset"
        )
    finally:
        if sim is not None:
            sim.stop()
        stack.stop()
