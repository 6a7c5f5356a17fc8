"""runtime.otel: tracing is off without PAYWATCH_OTEL_ENDPOINT; with one, spans go out
over OTLP/HTTP to <endpoint>/v1/traces (a real HTTP receiver on 127.0.0.1)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from runtime import otel


def test_tracing_is_off_without_an_endpoint(monkeypatch):
    monkeypatch.delenv(otel.ENDPOINT_ENV, raising=False)
    assert otel.configure_tracing("paywatch-test") is None


def test_traces_url():
    assert otel.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert otel.traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert otel.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_spans_reach_an_otlp_http_receiver():
    got: list[tuple[str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = otel.traces_url(f"http://127.0.0.1:{server.server_address[1]}")
        provider = otel.tracer_provider(
            "paywatch-test", SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10))
        )
        with provider.get_tracer("paywatch").start_as_current_span("channel pay"):
            pass
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    assert [path for path, _ in got] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(got[0][1])
    (resource_spans,) = request.resource_spans
    attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attrs["service.name"] == "paywatch-test"
    names = [s.name for ss in resource_spans.scope_spans for s in ss.spans]
    assert names == ["channel pay"]
