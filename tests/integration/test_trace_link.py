"""One request id and one trace from the merchant's pay request through the channel front,
the sandbox, its callback and the merchant's notification (real servers on 127.0.0.1,
SQLite and PostgreSQL), spans caught by the SDK's in-memory exporter."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from api_stack import Stack
from conftest import LiveServer
from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from paycore.db.schema import Merchant
from paycore.notify.delivery import NotificationDelivery

pytestmark = pytest.mark.slow


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process ends, while the test runs (the global provider is set once
    per process: a later test adds its own exporter to it)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later spans are dropped, not kept


class Recorder:
    """An ASGI wrapper keeping the headers of every request that reaches ``app``."""

    def __init__(self, app) -> None:
        self.app, self.seen = app, []
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            with self._lock:
                self.seen.append((scope["path"], headers))
        await self.app(scope, receive, send)

    def to(self, suffix: str) -> list[dict[str, str]]:
        with self._lock:
            return [h for path, h in self.seen if path.endswith(suffix)]


def merchant_receiver() -> tuple[FastAPI, list[tuple[dict[str, str], bytes]]]:
    got: list[tuple[dict[str, str], bytes]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        got.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    return app, got


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def test_one_request_id_and_one_trace_from_pay_to_notification(db_url, spans):
    rid = "merchant-rid-42"
    receiver_app, received = merchant_receiver()
    stack = Stack(db_url)
    sandbox = Recorder(stack.sandbox.server.config.app)
    stack.sandbox.server.config.app = sandbox
    with LiveServer(receiver_app) as receiver, stack:
        stack.core.db.run(
            lambda s: s.execute(
                sa.update(Merchant)
                .where(Merchant.merchant_id == stack.mid)
                .values(notify_url=f"{receiver.url}/hook")
            )
        )
        stack.trade("tr-1", 1_000)
        spans.clear()
        r = stack.http.post(
            "/v1/trades/tr-1/pay",
            json={"tools": [{"tool": "channel", "amount": 1_000}]},
            headers={"X-Request-Id": rid},
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == rid
        detail = stack.wait_for("tr-1", lambda d: d["trade"]["status"] == "paid")
        assert detail["trade"]["status"] == "paid"

        # the channel front's request to the sandbox carried the request id and the trace
        (sent,) = sandbox.to("/gateway/SANDBOX_A/pay")
        assert sent["x-request-id"] == rid and sent["traceparent"].startswith("00-")

        delivery = NotificationDelivery(stack.core.db, secret="shared-notify-key")
        try:
            assert delivery.deliver_due() == 1
        finally:
            delivery.close()
    (headers, body) = received[0]
    assert headers["x-request-id"] == rid
    assert "_trace" not in json.loads(body) and json.loads(body)["event_type"] == "trade.paid"

    done = list(spans.get_finished_spans())
    pay = one(done, "POST /v1/trades/tr-1/pay")
    send = one(done, "channel pay")
    at_sandbox = one(done, "sandbox pay")
    callback = one(done, "POST /v1/channels/SANDBOX_A/callback")
    notify = one(done, "notify deliver")
    trace_id = pay.context.trace_id
    assert pay.parent is None and pay.kind == SpanKind.SERVER
    assert pay.attributes["paywatch.request_id"] == rid
    assert pay.attributes["http.response.status_code"] == 200
    # each hop is the child of the one before it, all in the merchant request's trace
    chain = [pay, send, at_sandbox, callback, notify]
    for parent, child in zip(chain, chain[1:], strict=False):
        assert child.context.trace_id == trace_id, child.name
        assert child.parent is not None and child.parent.span_id == parent.context.span_id, (
            child.name
        )
    assert send.kind == SpanKind.CLIENT and at_sandbox.kind == SpanKind.SERVER
    assert callback.attributes["paywatch.request_id"] == rid  # the sandbox passed it on
    assert notify.attributes["http.response.status_code"] == 204
    assert sent["traceparent"].split("-")[2] == format(send.context.span_id, "016x")
    assert headers["traceparent"].split("-")[1] == format(trace_id, "032x")


def test_the_front_s_pool_threads_send_with_the_caller_s_request_id_and_trace(spans):
    from paycore.channels.client import HttpChannelClient
    from paycore.channels.front import ChannelFront
    from paycore.channels.port import ChannelRequest
    from paycore.tracing import tracer, use_request_id

    seen: list[dict[str, str]] = []
    app = FastAPI()

    @app.post("/gateway/{org}/pay")
    async def pay(org: str, request: Request) -> dict:
        seen.append(dict(request.headers))
        return {"accepted": True, "channel_ref": "ref-1"}

    with LiveServer(app) as channel:

        class Gateway:
            def __init__(self) -> None:
                self.one = HttpChannelClient(channel.url, "ORG_A", "s3cret")

            def client(self, org: str) -> HttpChannelClient:
                return self.one

            def close(self) -> None:
                self.one.close()

        gateway = Gateway()
        front = ChannelFront(gateway, lambda org: "http://127.0.0.1:9/cb")
        try:
            assert front.bound_loop is None  # sends go through the org's thread pool
            with use_request_id("pool-rid"), tracer().start_as_current_span("caller") as caller:
                front.submit(ChannelRequest("pay", "ORG_A", "txn-1", 100, "CNY", "M1", 1, 1))
            assert front.wait_idle(30) and front.acked == 1
        finally:
            front.close()
            gateway.close()
    (headers,) = seen
    assert headers["x-request-id"] == "pool-rid"
    send = one(list(spans.get_finished_spans()), "channel pay")
    assert send.parent is not None and send.parent.span_id == caller.get_span_context().span_id
    assert headers["traceparent"].split("-")[2] == format(send.context.span_id, "016x")
