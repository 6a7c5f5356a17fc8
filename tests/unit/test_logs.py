"""runtime.logs: JSON and text lines carry the context; repeated failures are summarised."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from paycore.context import BizContext, use_context
from paycore.tracing import use_request_id
from runtime import logs

FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "trace_id",
    "span_id",
    "merchant_id",
    "order_type",
    "sub_type",
    "pay_org_no",
}


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_json_lines_carry_time_level_logger_request_trace_and_business_context(root):
    from opentelemetry.sdk.trace import TracerProvider

    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    tracer = TracerProvider().get_tracer("test")
    ctx = BizContext("M1", "goods", "physical", "SANDBOX_A")
    with use_request_id("rid-1"), use_context(ctx), tracer.start_as_current_span("s") as span:
        logging.getLogger("paycore.test").warning("pay %s failed", "T1")
    logging.getLogger("paycore.test").info("outside")
    logging.getLogger("paycore.test").debug("below the level")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert set(first) == FIELDS and set(second) == FIELDS
    assert first["level"] == "warning" and first["logger"] == "paycore.test"
    assert first["message"] == "pay T1 failed"
    assert first["time"].endswith("Z") and first["time"][:4].isdigit()
    assert first["request_id"] == "rid-1"
    assert first["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert (first["merchant_id"], first["order_type"], first["sub_type"], first["pay_org_no"]) == (
        "M1",
        "goods",
        "physical",
        "SANDBOX_A",
    )
    assert second["request_id"] == second["trace_id"] == second["merchant_id"] == ""


def test_json_exception_lines_keep_the_traceback_in_one_line(root):
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    try:
        raise RuntimeError("db down")
    except RuntimeError:
        logging.getLogger("x").exception("job failed")
    (line,) = out.getvalue().splitlines()
    data = json.loads(line)
    assert data["exc_type"] == "RuntimeError" and "db down" in data["exc"]


def test_text_lines_name_time_level_logger_and_context(root):
    out = io.StringIO()
    logs.configure("text", "debug", stream=out)
    with use_request_id("rid-2"), use_context(BizContext("M1", "goods", "physical", "ORG")):
        logging.getLogger("paycore.x").debug("hello")
    (line,) = out.getvalue().splitlines()
    assert " DEBUG paycore.x [rid=rid-2 ctx=M1/goods/physical/ORG] hello" in line
    assert line[:4].isdigit()


def test_bad_format_or_level_is_a_readable_error(root):
    with pytest.raises(ValueError, match="--log-format must be one of text, json"):
        logs.configure("xml", "info")
    with pytest.raises(ValueError, match="--log-level must be one of"):
        logs.configure("json", "loud")


def test_every_command_takes_the_log_flags():
    from runtime.cli import parser

    for argv in (["serve"], ["worker"], ["up"], ["console"], ["simulate"], ["sandbox"]):
        args = parser().parse_args([argv[0], "--log-format", "json", "--log-level", "debug"])
        assert args.log_format == "json" and args.log_level == "debug", argv


def _summarised(clock: Clock) -> tuple[io.StringIO, logging.Logger, logs.RepeatSummarizer]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    summarizer = logs.RepeatSummarizer(handler, window=10.0, clock=clock)
    handler.addFilter(summarizer)
    log = logging.getLogger("test.summarizer")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return out, log, summarizer


def test_forty_identical_errors_in_ten_seconds_are_one_line_and_a_summary():
    clock = Clock()
    out, log, _ = _summarised(clock)
    for _ in range(40):  # a database outage: the same line, 4 a second
        log.error("database unreachable: %s", "OperationalError")
        clock.now += 0.24
    assert out.getvalue().splitlines() == ["ERROR database unreachable: OperationalError"]
    clock.now += 1.0  # the window closed; the next line of any kind brings the summary
    log.info("worker tick")
    assert out.getvalue().splitlines() == [
        "ERROR database unreachable: OperationalError",
        "ERROR database unreachable: OperationalError (repeated 39 times in the last 10 s)",
        "INFO worker tick",
    ]


def test_the_same_error_after_the_window_is_summarised_then_shown_again():
    clock = Clock()
    out, log, summarizer = _summarised(clock)
    for _ in range(3):
        log.warning("breaker open")
    log.warning("another thing")  # different messages are never held back
    clock.now += 10.0
    log.warning("breaker open")
    log.warning("breaker open")
    summarizer.flush()
    assert out.getvalue().splitlines() == [
        "WARNING breaker open",
        "WARNING another thing",
        "WARNING breaker open (repeated 2 times in the last 10 s)",
        "WARNING breaker open",
        "WARNING breaker open (repeated 1 times in the last 10 s)",
    ]


def test_info_lines_are_never_held_back():
    clock = Clock()
    out, log, _ = _summarised(clock)
    for _ in range(5):
        log.info("request served")
    assert len(out.getvalue().splitlines()) == 5


def test_the_edge_keeps_an_ascii_request_id_and_replaces_any_other():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from paycore.api import edge
    from paycore.tracing import current_request_id

    app = FastAPI()
    edge.install(app)

    @app.get("/rid")
    def rid() -> dict:
        return {"rid": current_request_id()}

    with TestClient(app) as http:
        kept = http.get("/rid", headers={"X-Request-Id": "merchant-1"})
        assert kept.json()["rid"] == kept.headers["x-request-id"] == "merchant-1"
        other = http.get("/rid", headers={"X-Request-Id": "r\xe9sum\xe9".encode("latin-1")})
        new = other.headers["x-request-id"]
        assert other.json()["rid"] == new and new.isascii() and len(new) == 32
        made = http.get("/rid")
        assert made.json()["rid"] == made.headers["x-request-id"] != new


def test_simulate_logs_warnings_only_unless_asked(root, monkeypatch):
    import argparse

    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    monkeypatch.delenv("PAYWATCH_OTEL_ENDPOINT", raising=False)
    quiet = argparse.Namespace(command="simulate", log_format=None, log_level=None)
    logs.configure_from_args(quiet)
    assert root.level == logging.WARNING
    asked = argparse.Namespace(command="simulate", log_format=None, log_level="debug")
    logs.configure_from_args(asked)
    assert root.level == logging.DEBUG
    logs.configure_from_args(argparse.Namespace(command="worker", log_level=None))
    assert root.level == logging.INFO


def test_child_env_passes_on_the_flags_given_only():
    import argparse

    both = argparse.Namespace(command="up", log_format="json", log_level="debug")
    assert logs.child_env(both) == {logs.FORMAT_ENV: "json", logs.LEVEL_ENV: "debug"}
    none = argparse.Namespace(command="console", log_format=None, log_level=None)
    assert logs.child_env(none) == {}


def test_the_environment_sets_the_level_of_serve_and_worker_unless_a_flag_does(root, monkeypatch):
    from runtime.cli import parser

    monkeypatch.setenv(logs.LEVEL_ENV, "warning")
    monkeypatch.delenv("PAYWATCH_OTEL_ENDPOINT", raising=False)
    for command in ("serve", "worker"):
        args = parser().parse_args([command])
        assert args.log_level is None, command  # no default of its own hiding the variable
        logs.configure_from_args(args)
        assert root.level == logging.WARNING, command
        logs.configure_from_args(parser().parse_args([command, "--log-level", "error"]))
        assert root.level == logging.ERROR, command
