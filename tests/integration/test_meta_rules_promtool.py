"""The exported meta-monitoring rules behave in Prometheus' own rule engine (``promtool
test rules``) as in ours: target_down, job_not_succeeding, business_snapshot_stale, and
slo_pay_success_absent on a zero-initialised counter. A missing promtool fails under CI."""

from __future__ import annotations

from test_alerts_promtool import promtool, run_promtool_test  # noqa: F401 - fixture

from alerts import default_rules
from alerts.meta_rules import meta_rules


def rules_named(*names: str):
    # annotations reduced to the anchor: the test checks labels and timing, not wording
    every = meta_rules(lambda anchor, summary, plan="": {"summary": anchor})
    return [r for r in every if r.name in names]


def alert(name: str, **labels: str) -> dict:
    return {"exp_labels": labels, "exp_annotations": {"summary": name}}


def test_target_down_job_not_succeeding_and_stale_snapshot_in_prometheus(
    promtool,  # noqa: F811
    tmp_path,
) -> None:
    rules = rules_named("target_down", "job_not_succeeding", "business_snapshot_stale")
    tests = [
        {
            "interval": "1m",
            "input_series": [
                # api exports for 10 minutes, then dies; the worker keeps exporting
                {"series": 'paywatch_build_info{instance="api"}', "values": "1x10"},
                {"series": 'paywatch_build_info{instance="worker"}', "values": "1x40"},
                # job a succeeds every minute until 10m; job b all along
                {
                    "series": 'paywatch_job_last_success_timestamp_seconds{job="a"}',
                    "values": "0+60x10 600x30",
                },
                {
                    "series": 'paywatch_job_last_success_timestamp_seconds{job="b"}',
                    "values": "0+60x40",
                },
                {"series": 'paywatch_job_interval_seconds{job="a"}', "values": "60x40"},
                {"series": 'paywatch_job_interval_seconds{job="b"}', "values": "60x40"},
                # the worker's business snapshot fails from 10m
                {"series": 'paywatch_business_snapshot_ok{instance="w"}', "values": "1x10 0x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "11m", "alertname": "target_down", "exp_alerts": []},
                {
                    "eval_time": "13m",
                    "alertname": "target_down",
                    "exp_alerts": [alert("target_down", instance="api", severity="page")],
                },
                # last success at 600 s: stale once older than max(3 x 60 s, 300 s)
                {"eval_time": "15m", "alertname": "job_not_succeeding", "exp_alerts": []},
                {
                    "eval_time": "16m",
                    "alertname": "job_not_succeeding",
                    "exp_alerts": [alert("job_not_succeeding", job="a", severity="ticket")],
                },
                {"eval_time": "14m", "alertname": "business_snapshot_stale", "exp_alerts": []},
                {
                    "eval_time": "16m",
                    "alertname": "business_snapshot_stale",
                    "exp_alerts": [alert("business_snapshot_stale", instance="w", severity="page")],
                },
            ],
        }
    ]
    run_promtool_test(promtool, tmp_path, rules, tests)


def test_slo_pay_success_absent_fires_on_a_zero_series_in_prometheus(
    promtool,  # noqa: F811
    tmp_path,
) -> None:
    pay = next(r for r in default_rules() if r.name == "slo_pay_success")
    absent = next(a for a in pay.to_prometheus() if a["alert"] == "slo_pay_success_absent")
    m = "paywatch_link_requests_total"
    fired = [{"exp_labels": absent["labels"], "exp_annotations": absent["annotations"]}]
    tests = [
        {  # every process exports the zero-initialised series: no pay for 40 minutes
            "interval": "1m",
            "input_series": [
                {"series": f'{m}{{step="pay",outcome="ok",reason="",pay_org=""}}', "values": "0x40"}
            ],
            "alert_rule_test": [
                {"eval_time": "35m", "alertname": "slo_pay_success_absent", "exp_alerts": fired}
            ],
        },
        {  # pays flowing: not absent
            "interval": "1m",
            "input_series": [
                {
                    "series": f'{m}{{step="pay",outcome="ok",reason="",pay_org="A"}}',
                    "values": "0+5x40",
                }
            ],
            "alert_rule_test": [
                {"eval_time": "35m", "alertname": "slo_pay_success_absent", "exp_alerts": []}
            ],
        },
    ]
    run_promtool_test(promtool, tmp_path, [pay], tests)
