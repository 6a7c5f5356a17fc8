"""Logging for every paywatch process: ``--log-format json|text`` and ``--log-level``.

Each line carries the time (UTC), level, logger, message, request id, trace id and the
four-element business context (:func:`paycore.context.current_context`), added by
:class:`ContextFilter`. :class:`RepeatSummarizer` lets the first of identical warnings
or errors through and then summarises the rest ("... repeated 39 times in the last
10 s"), so a database outage does not flood the log.

The flags default to ``PAYWATCH_LOG_FORMAT`` / ``PAYWATCH_LOG_LEVEL``; the processes a
command starts get the flags given in these variables (:func:`child_env`), so the console
of ``paywatch up`` and ``paywatch console`` logs the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from paycore.context import current_context
from paycore.tracing import current_request_id, current_span_id, current_trace_id

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMAT_ENV, LEVEL_ENV = "PAYWATCH_LOG_FORMAT", "PAYWATCH_LOG_LEVEL"
#: the fields every line carries (empty when unknown), in the text format's order
CONTEXT_FIELDS = (
    "request_id",
    "trace_id",
    "span_id",
    "merchant_id",
    "order_type",
    "sub_type",
    "pay_org_no",
)
_SUMMARY = "_paywatch_summary"
_OURS = "_paywatch_handler"
_NOISY = ("apscheduler", "alembic", "httpx", "httpcore", "urllib3")
#: commands whose own output is the point: only warnings and errors unless asked
_QUIET = frozenset({"simulate", "drill"})


class ContextFilter(logging.Filter):
    """Adds the request id, trace/span id and business context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = dict.fromkeys(CONTEXT_FIELDS, "")
        values["request_id"] = current_request_id() or ""
        values["trace_id"] = current_trace_id() or ""
        values["span_id"] = current_span_id() or ""
        ctx = current_context()
        if ctx is not None:
            values.update(ctx.as_labels())
        for name, value in values.items():
            if not getattr(record, name, ""):  # a value set by the caller wins
                setattr(record, name, value)
        return True


def _utc(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields and,
    for an exception, its class and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            line[name] = getattr(record, name, "")
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [rid=.. trace=.. ctx=m/o/s/p] message``."""

    def format(self, record: logging.LogRecord) -> str:
        tags = []
        rid, trace_id = getattr(record, "request_id", ""), getattr(record, "trace_id", "")
        if rid:
            tags.append(f"rid={rid}")
        if trace_id:
            tags.append(f"trace={trace_id}")
        if getattr(record, "merchant_id", ""):
            parts = ("merchant_id", "order_type", "sub_type", "pay_org_no")
            tags.append("ctx=" + "/".join(str(getattr(record, p, "")) for p in parts))
        tag = f" [{' '.join(tags)}]" if tags else ""
        text = f"{_utc(record)} {record.levelname} {record.name}{tag} {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


@dataclass(slots=True)
class _Seen:
    first: float
    suppressed: int
    record: logging.LogRecord


class RepeatSummarizer(logging.Filter):
    """Lets the first of identical records (same logger, level and message) at
    ``min_level`` or above through, drops the repeats for ``window`` seconds, then
    emits one summary ("<message> (repeated N times in the last 10 s)") through
    ``handler``: when the same message comes again after the window, when any record
    passes after the window closed, or on :meth:`flush`."""

    def __init__(
        self,
        handler: logging.Handler | None = None,
        *,
        window: float = 10.0,
        min_level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1000,
    ) -> None:
        super().__init__()
        self.handler, self.window, self.min_level = handler, window, min_level
        self.clock, self.max_keys = clock, max_keys
        self._seen: dict[tuple[str, int, str], _Seen] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False) or record.levelno < self.min_level:
            self._emit(self._expired())
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.first < self.window:
                seen.suppressed += 1
                seen.record = record
                return False
            due = self._expired_locked(now)
            if seen is not None and seen.suppressed and seen not in due:
                due.append(seen)
            self._seen[key] = _Seen(now, 0, record)
        self._emit(due)
        return True

    def flush(self) -> None:
        """Emit the summaries of every message repeated so far."""
        with self._lock:
            due = [s for s in self._seen.values() if s.suppressed]
            self._seen.clear()
        self._emit(due)

    def _expired(self) -> list[_Seen]:
        with self._lock:
            return self._expired_locked(self.clock())

    def _expired_locked(self, now: float) -> list[_Seen]:
        gone = [k for k, s in self._seen.items() if now - s.first >= self.window]
        if len(self._seen) - len(gone) > self.max_keys:  # a flood of distinct messages
            gone = list(self._seen)
        return [s for s in (self._seen.pop(k) for k in gone) if s.suppressed]

    def _emit(self, due: list[_Seen]) -> None:
        if self.handler is None:
            return
        for seen in due:
            self.handler.handle(self.summary(seen))

    def summary(self, seen: _Seen) -> logging.LogRecord:
        last = seen.record
        summary = logging.makeLogRecord(last.__dict__)
        summary.msg = "%s (repeated %d times in the last %g s)"
        summary.args = (last.getMessage(), seen.suppressed, self.window)
        summary.exc_info = summary.exc_text = None
        setattr(summary, _SUMMARY, True)
        return summary


def configure(
    fmt: str | None = None,
    level: str | None = None,
    *,
    stream: IO[str] | None = None,
    window: float = 10.0,
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) in ``fmt`` at ``level``
    (defaults: the environment's, else text and info), replacing its handlers; returns
    the handler. Raises ValueError naming a bad format or level."""
    fmt = (fmt or os.environ.get(FORMAT_ENV) or "text").lower()
    level = (level or os.environ.get(LEVEL_ENV) or "info").lower()
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if level not in LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RepeatSummarizer(handler, window=window))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in list(root.handlers):  # ours from an earlier call, and a basicConfig's
        if getattr(old, _OURS, False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level != "debug":  # one line per job run and per HTTP call drowns the rest
        for noisy in _NOISY:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def add_flags(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Give every command ``--log-format`` and ``--log-level`` (where it has none)."""
    for command in subparsers.choices.values():
        dests = {a.dest for a in command._actions}
        if "log_format" not in dests:
            command.add_argument("--log-format", choices=FORMATS, help="text (default) or json")
        if "log_level" not in dests:
            command.add_argument("--log-level", choices=LEVELS, help="default: info")


def child_env(args: argparse.Namespace) -> dict[str, str]:
    """``PAYWATCH_LOG_FORMAT`` / ``PAYWATCH_LOG_LEVEL`` for the processes a command starts:
    its ``--log-format`` / ``--log-level`` when given (else they read the environment)."""
    given = {
        FORMAT_ENV: getattr(args, "log_format", None),
        LEVEL_ENV: getattr(args, "log_level", None),
    }
    return {name: value for name, value in given.items() if value}


def configure_from_args(args: argparse.Namespace) -> None:
    """:func:`configure` from a parsed command line, then tracing (:mod:`runtime.otel`)."""
    from .otel import configure_tracing

    fmt, level = getattr(args, "log_format", None), getattr(args, "log_level", None)
    if level is None and not os.environ.get(LEVEL_ENV) and args.command in _QUIET:
        level = "warning"
    configure(fmt, level)
    if fmt:  # the processes this one starts (paywatch up) log alike
        os.environ[FORMAT_ENV] = fmt
    configure_tracing(f"paywatch-{getattr(args, 'command', 'cli')}")
