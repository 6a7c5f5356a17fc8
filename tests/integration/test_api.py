"""The pay core over real HTTP: API + sandbox channel on 127.0.0.1, PostgreSQL behind."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from conftest import LiveServer, free_port, table_counts

from paycore.channels.signing import signed_headers
from paycore.db.schema import JournalEntry, PayException, PayItem
from paycore.ledger import merchant_payable, trial_balance, user_balance

ORGS = ("SANDBOX_A", "SANDBOX_B")
ADMIN = "admin-token-for-tests"


class Stack:
    def __init__(self, db_url: str) -> None:
        from runtime.bootstrap import build_platform
        from runtime.settings import Settings
        from simulator.sandbox import create_sandbox_app
        from simulator.sandbox_config import SandboxConfig

        self.secrets = {o: secrets.token_urlsafe(24) for o in ORGS}
        self.sandbox = LiveServer(
            create_sandbox_app(SandboxConfig(secrets=dict(self.secrets), admin_token=ADMIN, seed=7))
        )
        api_port = free_port()
        settings = Settings(
            database_url=db_url,
            api_url=f"http://127.0.0.1:{api_port}",
            sandbox_url=self.sandbox.url,
            pay_orgs=ORGS,
            channel_secrets=dict(self.secrets),
        )
        self.platform = build_platform(settings)
        self.core = self.platform.paycore
        self.api = LiveServer(self.platform.api_app(), port=api_port)
        ob = self.core.merchants.onboard(
            "api shop", products=[("goods", "physical")], pay_orgs=list(ORGS), fee_bps=100
        )
        self.mid, self.token = ob.merchant.merchant_id, ob.token

    def __enter__(self) -> Stack:
        self.sandbox.__enter__()
        self.api.__enter__()
        self.http = httpx.Client(
            base_url=self.api.url, timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        )
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self.api.__exit__(*exc)
        self.sandbox.__exit__(*exc)
        self.platform.close()

    def knobs(self, org: str, **changes) -> None:
        r = httpx.put(
            f"{self.sandbox.url}/admin/knobs/{org}",
            json=changes,
            headers={"X-Sandbox-Admin": ADMIN},
        )
        assert r.status_code == 200, r.text

    def trade(self, no: str, amount: int = 1000, trade_type: str = "instant", **kw) -> dict:
        body = {
            "out_trade_no": no,
            "trade_type": trade_type,
            "amount": amount,
            "currency": "CNY",
            "user_id": "u1",
            "order_type": "goods",
            "sub_type": "physical",
            "pay_org_no": "SANDBOX_A",
            **kw,
        }
        r = self.http.post("/v1/trades", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, no: str, pred, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.http.get(f"/v1/trades/{no}").json()
            if pred(detail) or time.monotonic() > deadline:
                return detail
            time.sleep(0.05)

    def callback(self, org: str, body: dict, *, secret: str | None = None, now=None):
        raw = json.dumps(body).encode()
        headers = signed_headers(secret or self.secrets[org], raw, now=now)
        return httpx.post(
            f"{self.api.url}/v1/channels/{org}/callback",
            content=raw,
            headers=headers | {"content-type": "application/json"},
        )

    def snapshot(self) -> tuple:
        with self.core.db.session() as s:
            from paycore.ledger import balance_of

            bal = (
                balance_of(s, user_balance(self.mid, "u1", "CNY")),
                balance_of(s, merchant_payable(self.mid, "CNY")),
            )
        return table_counts(self.core.db), bal


@pytest.fixture
def stack(pg_url):
    with Stack(pg_url) as st:
        yield st


def test_pay_and_refund_flow_over_http(stack):
    t = stack.trade("flow-1", 10_000)
    assert t["status"] == "created" and isinstance(t["id"], str)
    started = time.perf_counter()
    r = stack.http.post(
        "/v1/trades/flow-1/pay", json={"tools": [{"tool": "channel", "amount": 10_000}]}
    )
    assert r.status_code == 200 and r.json()["status"] == "processing"
    assert time.perf_counter() - started < 2.0  # answered before the channel settled
    detail = stack.wait_for("flow-1", lambda d: d["trade"]["status"] == "paid")
    assert detail["trade"]["status"] == "paid" and detail["trade"]["paid_amount"] == 10_000
    assert stack.platform.front.bound_loop is not None  # the API sends on its event loop
    assert stack.platform.front.acked == 1 and stack.platform.front.failures == 0
    assert detail["pay_orders"][0]["status"] == "success"
    assert detail["pay_orders"][0]["items"][0]["status"] == "success"
    with stack.core.db.session() as s:
        kinds = (
            s.execute(sa.select(JournalEntry.biz_type).where(JournalEntry.trade_id == int(t["id"])))
            .scalars()
            .all()
        )
    assert sorted(kinds) == ["pay_complete", "pay_item"]
    assert stack.snapshot()[1] == (0, 9_900)

    r = stack.http.post(
        "/v1/trades/flow-1/refunds", json={"out_refund_no": "rf-1", "amount": 4_000}
    )
    assert r.status_code == 200 and r.json()["trade"]["trade_type"] == "refund"
    detail = stack.wait_for(
        "flow-1", lambda d: d["refunds"] and d["refunds"][0]["trade"]["status"] == "paid"
    )
    assert detail["trade"]["refunded_amount"] == 4_000
    refund = detail["refunds"][0]
    assert refund["pay_orders"][0]["status"] == "success"
    child = stack.http.get("/v1/trades/rf-1").json()
    assert [t["out_trade_no"] for t in child["origin_chain"]] == ["flow-1"]
    assert stack.snapshot()[1] == (0, 5_900)
    assert trial_balance(stack.core.db).ok


BAD_CASES = [
    # (name, method, path, body, headers, status, code)
    ("no token", "POST", "/v1/trades", {}, {"Authorization": ""}, 401, "unauthenticated"),
    (
        "wrong token",
        "POST",
        "/v1/trades",
        {},
        {"Authorization": "Bearer pwk_nope"},
        401,
        "unauthenticated",
    ),
    ("malformed json", "POST", "/v1/trades", b"{not json", {}, 400, "malformed_request"),
    ("float amount", "POST", "/v1/trades", {"amount": 10.5}, {}, 422, "invalid_request"),
    ("string amount", "POST", "/v1/trades", {"amount": "100"}, {}, 422, "invalid_request"),
    ("zero amount", "POST", "/v1/trades", {"amount": 0}, {}, 422, "invalid_amount"),
    ("negative amount", "POST", "/v1/trades", {"amount": -5}, {}, 422, "invalid_amount"),
    ("huge amount", "POST", "/v1/trades", {"amount": 10**30}, {}, 422, "invalid_amount"),
    ("unknown currency", "POST", "/v1/trades", {"currency": "XXX"}, {}, 422, "unknown_currency"),
    ("bad trade type", "POST", "/v1/trades", {"trade_type": "loan"}, {}, 422, "invalid_request"),
    ("extra field", "POST", "/v1/trades", {"admin": True}, {}, 422, "invalid_request"),
    (
        "context not granted",
        "POST",
        "/v1/trades",
        {"order_type": "loans"},
        {},
        403,
        "context_not_granted",
    ),
    (
        "pay org not granted",
        "POST",
        "/v1/trades",
        {"pay_org_no": "SANDBOX_Z"},
        {},
        403,
        "context_not_granted",
    ),
    ("bad context chars", "POST", "/v1/trades", {"sub_type": "a b"}, {}, 422, "invalid_context"),
    (
        "idempotency conflict",
        "POST",
        "/v1/trades",
        {"out_trade_no": "seed", "amount": 2},
        {},
        409,
        "idempotency_conflict",
    ),
    ("unknown trade", "GET", "/v1/trades/none", None, {}, 404, "trade_not_found"),
    (
        "pay unknown trade",
        "POST",
        "/v1/trades/none/pay",
        {"tools": [{"tool": "channel", "amount": 1}]},
        {},
        404,
        "trade_not_found",
    ),
    (
        "tools do not add up",
        "POST",
        "/v1/trades/seed/pay",
        {"tools": [{"tool": "channel", "amount": 1}]},
        {},
        422,
        "invalid_pay_tools",
    ),
    (
        "insufficient balance",
        "POST",
        "/v1/trades/seed/pay",
        {"tools": [{"tool": "balance", "amount": 1000}]},
        {},
        409,
        "insufficient_balance",
    ),
    (
        "refund unpaid trade",
        "POST",
        "/v1/trades/seed/refunds",
        {"out_refund_no": "r", "amount": 1},
        {},
        409,
        "wrong_state",
    ),
    ("confirm instant trade", "POST", "/v1/trades/seed/confirm", None, {}, 409, "wrong_state"),
    (
        "oversized body",
        "POST",
        "/v1/trades",
        {"subject": "x" * 70_000},
        {},
        413,
        "request_too_large",
    ),
    (
        "control character",
        "POST",
        "/v1/trades",
        {"subject": "a\x00"},
        {},
        400,
        "invalid_characters",
    ),
    (
        "number outside the alphabet",
        "POST",
        "/v1/trades",
        {"out_trade_no": "a/b"},
        {},
        422,
        "invalid_request",
    ),
    ("path number outside the alphabet", "GET", "/v1/trades/x:y", None, {}, 422, "invalid_request"),
]


def test_bad_input_gets_its_error_and_changes_nothing(stack):
    stack.trade("seed", 1000)
    good = {
        "out_trade_no": "new-1",
        "trade_type": "instant",
        "amount": 100,
        "currency": "CNY",
        "user_id": "u1",
        "order_type": "goods",
        "sub_type": "physical",
        "pay_org_no": "SANDBOX_A",
    }
    before = stack.snapshot()
    for name, method, path, body, headers, status, code in BAD_CASES:
        kwargs: dict = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["content"] = body
            kwargs["headers"] = headers | {"content-type": "application/json"}
        elif body is not None:
            kwargs["json"] = good | body if path == "/v1/trades" else body
        r = stack.http.request(method, path, **kwargs)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (name, r.text)
        err = r.json()["error"]
        assert err["request_id"] == r.headers["x-request-id"]
        assert "Traceback" not in r.text and "SELECT" not in r.text.upper().replace("SELECTED", "")
    assert stack.snapshot() == before


def test_signed_callbacks_settle_once_and_bad_ones_are_refused(stack):
    stack.knobs("SANDBOX_B", callback_delay_ms=600_000)  # we play the channel ourselves
    stack.trade("cb-1", 700, pay_org_no="SANDBOX_B")
    po = stack.http.post(
        "/v1/trades/cb-1/pay", json={"tools": [{"tool": "channel", "amount": 700}]}
    ).json()
    txn = po["items"][0]["channel_txn_no"]
    body = {
        "pay_org_no": "SANDBOX_B",
        "channel_txn_no": txn,
        "status": "success",
        "amount": 700,
        "currency": "CNY",
        "channel_ref": "ch-1",
    }
    # refused: bad signature, stale timestamp, unknown org, org mismatch, unknown order
    assert stack.callback("SANDBOX_B", body, secret="wrong").status_code == 401
    assert stack.callback("SANDBOX_B", body, now=time.time() - 3600).status_code == 401
    assert stack.callback("SANDBOX_A", body).status_code == 401  # signed for A, names B
    r = stack.callback("SANDBOX_B", body | {"channel_txn_no": "404"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "pay_order_not_found")
    assert stack.http.get("/v1/trades/cb-1").json()["trade"]["status"] == "paying"
    barrier = threading.Barrier(10)

    def send(_):
        barrier.wait()
        return stack.callback("SANDBOX_B", body)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert sorted(a.json()["result"] for a in answers) == ["duplicate"] * 9 + ["settled"]
    assert stack.snapshot()[1] == (0, 693)
    assert trial_balance(stack.core.db).ok


def test_amount_mismatch_callback_is_recorded_and_never_settles(stack):
    stack.knobs("SANDBOX_A", amount_mismatch_rate=1.0)
    stack.trade("mm-1", 500)
    stack.http.post("/v1/trades/mm-1/pay", json={"tools": [{"tool": "channel", "amount": 500}]})
    detail = stack.wait_for("mm-1", lambda d: d["pay_orders"][0]["status"] != "processing")
    assert detail["trade"]["status"] == "created" and detail["trade"]["paid_amount"] == 0
    with stack.core.db.session() as s:
        rows = s.execute(sa.select(PayException.kind, PayException.amount_taken)).all()
    assert rows == [("amount_mismatch", 501)]
    assert stack.snapshot()[1] == (0, 0)
    assert trial_balance(stack.core.db).ok


def test_channel_declines_and_outages_leave_orders_consistent(stack):
    stack.knobs("SANDBOX_A", fail_rate=1.0)
    stack.trade("fail-1", 300)
    stack.http.post("/v1/trades/fail-1/pay", json={"tools": [{"tool": "channel", "amount": 300}]})
    detail = stack.wait_for("fail-1", lambda d: d["pay_orders"][0]["status"] == "failed")
    assert detail["trade"]["status"] == "created"  # the payer may try again
    stack.knobs("SANDBOX_A", fail_rate=0.0, error_rate=1.0)
    stack.trade("down-1", 300)
    r = stack.http.post(
        "/v1/trades/down-1/pay", json={"tools": [{"tool": "channel", "amount": 300}]}
    )
    assert r.json()["status"] == "processing"  # the channel is down: active query settles later
    with stack.core.db.session() as s:
        assert (
            s.execute(
                sa.select(sa.func.count())
                .select_from(PayItem)
                .where(PayItem.status == "processing")
            ).scalar_one()
            == 1
        )


def test_health_ready_and_openapi(stack):
    assert httpx.get(f"{stack.api.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{stack.api.url}/readyz").json()["database"] == "ok"
    spec = httpx.get(f"{stack.api.url}/openapi.json").json()
    assert {
        "/v1/trades",
        "/v1/trades/{out_trade_no}/pay",
        "/v1/trades/{out_trade_no}/refunds",
        "/v1/trades/{out_trade_no}/confirm",
        "/v1/channels/{pay_org_no}/callback",
        "/readyz",
    } <= set(spec["paths"])


def test_readyz_and_requests_answer_503_when_the_database_is_down(tmp_path):
    from paycore import PayCore
    from paycore.api import create_app

    core = PayCore("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    with LiveServer(create_app(core)) as srv:
        r = httpx.get(f"{srv.url}/readyz")
        assert (r.status_code, r.json()["error"]["code"]) == (503, "database_unavailable")
        r = httpx.post(
            f"{srv.url}/v1/trades", json={}, headers={"Authorization": "Bearer pwk_" + "x" * 40}
        )
        assert r.status_code in (422, 503)
        r = httpx.get(f"{srv.url}/v1/trades/x", headers={"Authorization": "Bearer pwk_" + "x" * 40})
        assert (r.status_code, r.json()["error"]["code"]) == (503, "storage_unavailable")
        assert "127.0.0.1:1" not in r.text and "psycopg" not in r.text
    core.close()


def test_rate_limit_answers_429_with_retry_after(stack):
    from paycore.api import ApiConfig, create_app

    app = create_app(stack.core, ApiConfig(rate_per_s=1, burst=2))
    with LiveServer(app) as srv:
        h = {"Authorization": f"Bearer {stack.token}"}
        codes = [httpx.get(f"{srv.url}/v1/trades/x", headers=h) for _ in range(3)]
    assert [c.status_code for c in codes] == [404, 404, 429]
    assert codes[2].json()["error"]["code"] == "rate_limited"
    assert int(codes[2].headers["retry-after"]) >= 1


def test_strong_dependency_down_answers_503_naming_it_and_writes_nothing(stack):
    from datetime import timedelta

    runtime = stack.platform.stability
    sw = runtime.switches.propose(
        "force_breaker",
        "channel.SANDBOX_A",
        actor="alice",
        reason="channel incident",
        ttl=timedelta(minutes=5),
        params={"state": "forced_open"},
    )
    runtime.switches.approve(sw.id, approver="bob")
    runtime.watcher.refresh()
    stack.trade("dep-1", 300)
    before = stack.snapshot()
    r = stack.http.post(
        "/v1/trades/dep-1/pay", json={"tools": [{"tool": "channel", "amount": 300}]}
    )
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "dependency_unavailable:channel.SANDBOX_A"
    assert stack.snapshot() == before
    assert stack.http.get("/v1/trades/dep-1").json()["trade"]["status"] == "created"


def test_metrics_endpoint_counts_the_pay_link_and_passes_promtool(stack, tmp_path):
    import shutil
    import subprocess

    stack.trade("m-1", 500)
    stack.http.post("/v1/trades/m-1/pay", json={"tools": [{"tool": "channel", "amount": 500}]})
    stack.wait_for("m-1", lambda d: d["trade"]["status"] == "paid")
    stack.http.get("/v1/trades/nope")
    text = httpx.get(f"{stack.api.url}/metrics").text
    assert (
        'paywatch_link_requests_total{outcome="ok",pay_org="SANDBOX_A",reason="",step="trade_create"} 1.0'
        in text
    )
    assert 'step="pay"' in text and 'outcome="pending"' in text
    assert 'reason="settled",step="callback"' in text
    assert 'paywatch_guard_outcomes_total{outcome="pass",resource="risk"}' in text
    assert 'reason="",step="ledger_posting"' in text
    assert "m-1" not in text  # never order ids in labels
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing under CI")
        pytest.skip("promtool not installed")
    out = subprocess.run([promtool, "check", "metrics"], input=text, text=True, capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
