"""``paywatch alerts``: alert operations from a shell, as the console's On-call → Alerts
page does them.

``list`` prints the pending and firing alerts (with their fingerprints and whether a
silence, an acknowledgement covers them); ``silence`` needs matchers, a comment and an
end (``--for 2h`` or ``--until`` an ISO time); ``unsilence`` ends one; ``silences``
lists the active ones; ``ack`` acknowledges a firing alert (it stays firing, humans are
not paged again); ``unack`` withdraws the acknowledgements in force of an alert (a
comment saying why is required; it pages again when its repeat is due); ``history``
prints the transitions, the acknowledgements made and withdrawn, and the notification
log. The
creator is ``--actor``, $PAYWATCH_ACTOR or the login name; every change is written to
the console's audit log (role ``cli``) like the console's own. Errors print one line
and exit with 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .settings import Settings


def _actor(args: argparse.Namespace) -> str:
    return (args.actor or os.environ.get("PAYWATCH_ACTOR") or getpass.getuser())[:64]


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _with_engine(
    fn: Callable[[Any, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from alerts.errors import AlertsError
        from paycore import Database

        from .migrate import upgrade_database

        db = Database(Settings.from_env().database_url)
        try:
            upgrade_database(db.engine)
            return fn(db.engine, args)
        except AlertsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            db.dispose()

    return run


def _audit(engine: Any, args: argparse.Namespace, action: str, target: str, detail: dict) -> None:
    from console.audit import record

    record(engine, actor=_actor(args), role="cli", action=action, target=target, detail=detail)


def _audited(engine: Any, args: argparse.Namespace, action: str, target: str, detail: dict, fn):  # noqa: ANN001, ANN202
    """Run ``fn`` and audit its outcome (a refusal too), re-raising the refusal."""
    from alerts.errors import AlertsError

    try:
        result = fn()
    except AlertsError as exc:
        _audit(engine, args, action, target, {**detail, "ok": False, "error": str(exc)[:500]})
        raise
    return result


def _silence_json(s: Any) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": s.matchers,
        "all_matchers": s.matchers_text(),
        "creator": s.creator,
        "comment": s.comment,
        "starts_at": _iso(s.starts_at),
        "ends_at": _iso(s.ends_at),
    }


def _list(engine: Any, args: argparse.Namespace) -> int:
    from alerts.acks import AckStore
    from alerts.history import alerts
    from alerts.silences import SilenceStore, first_match

    now = time.time()
    found = alerts(engine)
    silences = SilenceStore(engine).active(now)
    acked = AckStore(engine).covering(found)
    out = []
    for a in found:
        s = first_match(silences, a.labels)
        ack = acked.get(a.fingerprint)
        out.append(
            {
                "fingerprint": a.fingerprint,
                "rule": a.rule,
                "state": a.state,
                "severity": a.severity,
                "labels": a.labels,
                "summary": a.annotations.get("summary", ""),
                "since": _iso(a.active_since),
                "silenced_by": None if s is None else s.id,
                "acked_by": None if ack is None else ack.creator,
            }
        )
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _silence(engine: Any, args: argparse.Namespace) -> int:
    from alerts.errors import SilenceError
    from alerts.silences import SilenceStore, parse_duration, parse_silence_matchers

    now = time.time()
    detail: dict[str, Any] = {"matchers": args.matcher, "comment": args.comment}

    def make():  # noqa: ANN202
        if (args.duration is None) == (args.until is None):
            raise SilenceError("a silence needs an end: give --for (e.g. 2h) or --until")
        if args.until is not None:
            try:
                until = datetime.fromisoformat(args.until)
            except ValueError:
                raise SilenceError(f"--until {args.until!r}: not an ISO time") from None
            ends = (until if until.tzinfo else until.replace(tzinfo=UTC)).timestamp()
        else:
            ends = now + parse_duration(args.duration)
        eq, extra = parse_silence_matchers(args.matcher or [])
        return SilenceStore(engine).create(
            eq, _actor(args), args.comment, ends, now=now, extra=extra
        )

    made = _audited(engine, args, "alert.silence", "cli", detail, make)
    target = made.matchers.get("alertname", "silence")
    _audit(engine, args, "alert.silence", target, {**detail, "ok": True, "silence_id": made.id})
    print(json.dumps(_silence_json(made), ensure_ascii=False))
    return 0


def _unsilence(engine: Any, args: argparse.Namespace) -> int:
    from alerts.silences import SilenceStore

    target = f"silence {args.id}"
    detail = {"silence_id": args.id}
    ended = _audited(
        engine,
        args,
        "alert.unsilence",
        target,
        detail,
        lambda: SilenceStore(engine).expire(args.id),
    )
    _audit(engine, args, "alert.unsilence", target, {**detail, "ok": True})
    print(json.dumps(_silence_json(ended), ensure_ascii=False))
    return 0


def _silences(engine: Any, args: argparse.Namespace) -> int:
    from alerts.silences import SilenceStore

    store = SilenceStore(engine)
    rows = store.all(args.limit) if args.all else store.active()
    print(json.dumps([_silence_json(s) for s in rows], indent=2, ensure_ascii=False))
    return 0


def _ack(engine: Any, args: argparse.Namespace) -> int:
    from alerts.acks import AckStore

    detail = {"fingerprint": args.fingerprint, "comment": args.comment}
    made = _audited(
        engine,
        args,
        "alert.ack",
        args.fingerprint[:16],
        detail,
        lambda: AckStore(engine).ack(args.fingerprint, _actor(args), args.comment),
    )
    _audit(engine, args, "alert.ack", made.rule, {**detail, "ok": True, "ack_id": made.id})
    out = {"id": made.id, "fingerprint": made.fingerprint, "rule": made.rule}
    print(json.dumps(out | {"creator": made.creator, "at": _iso(made.at)}, ensure_ascii=False))
    return 0


def _unack(engine: Any, args: argparse.Namespace) -> int:
    from alerts.acks import AckStore

    detail: dict[str, Any] = {"fingerprint": args.fingerprint, "comment": args.comment}
    gone = _audited(
        engine,
        args,
        "alert.unack",
        args.fingerprint[:16],
        detail,
        lambda: AckStore(engine).withdraw(args.fingerprint, _actor(args), args.comment),
    )
    ids = [a.id for a in gone]
    _audit(engine, args, "alert.unack", gone[0].rule, {**detail, "ok": True, "ack_ids": ids})
    out = {"withdrawn": ids, "fingerprint": gone[0].fingerprint, "rule": gone[0].rule}
    print(
        json.dumps(out | {"by": _actor(args), "at": _iso(gone[0].withdrawn_at)}, ensure_ascii=False)
    )
    return 0


def _history(engine: Any, args: argparse.Namespace) -> int:
    from alerts.history import ack_events, notification_log, transitions

    fp = args.fingerprint
    out = {
        "transitions": [
            {
                "at": _iso(t.at),
                "rule": t.rule,
                "fingerprint": t.fingerprint,
                "from": t.from_state,
                "to": t.to_state,
                "value": t.value,
                "labels": t.labels,
            }
            for t in transitions(engine, args.limit, fp)
        ],
        "acks": [
            {
                "at": _iso(e.at),
                "event": e.kind,
                "rule": e.rule,
                "fingerprint": e.fingerprint,
                "by": e.by,
                "comment": e.comment,
                "ack_id": e.ack_id,
            }
            for e in ack_events(engine, args.limit, fp)
        ],
        "notifications": [
            {
                "at": _iso(n.at),
                "receiver": n.receiver,
                "status": n.status,
                "attempts": n.attempts,
                "error": n.last_error,
                "group": n.group_key,
                "fingerprints": list(n.fingerprints),
                "detail": n.payload if n.status in ("silenced", "inhibited", "acked") else "",
            }
            for n in notification_log(engine, args.limit, fp)
        ],
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def configure_parser(alerts: argparse.ArgumentParser) -> None:
    """The ``alerts`` subcommands."""
    sub = alerts.add_subparsers(dest="alerts_command", required=True)
    ls = sub.add_parser("list", help="pending and firing alerts, with fingerprints")
    ls.set_defaults(func=_with_engine(_list))
    sil = sub.add_parser("silence", help="silence alerts: matchers, comment and end required")
    sil.add_argument(
        "--matcher",
        "-m",
        action="append",
        help="name=value, name!=value, name=~regex, name!~regex (repeat for more)",
    )
    sil.add_argument("--comment", required=True, help="why")
    sil.add_argument("--for", dest="duration", help="how long, e.g. 30m, 2h, 1d")
    sil.add_argument("--until", help="end time, ISO 8601 (UTC unless an offset is given)")
    sil.set_defaults(func=_with_engine(_silence))
    uns = sub.add_parser("unsilence", help="end a silence now")
    uns.add_argument("id", type=int)
    uns.set_defaults(func=_with_engine(_unsilence))
    sls = sub.add_parser("silences", help="the active silences (--all: expired ones too)")
    sls.add_argument("--all", action="store_true")
    sls.add_argument("--limit", type=int, default=100)
    sls.set_defaults(func=_with_engine(_silences))
    ack = sub.add_parser("ack", help="acknowledge a firing alert (no repeat pages)")
    ack.add_argument("fingerprint", help="the alert's fingerprint (8+ leading characters)")
    ack.add_argument("--comment", required=True)
    ack.set_defaults(func=_with_engine(_ack))
    una = sub.add_parser("unack", help="withdraw an alert's acknowledgement (it pages again)")
    una.add_argument("fingerprint", help="the alert's fingerprint (8+ leading characters)")
    una.add_argument("--comment", required=True, help="why (wrong alert, handing over...)")
    una.set_defaults(func=_with_engine(_unack))
    his = sub.add_parser(
        "history", help="transitions, acknowledgements and the notification log, newest first"
    )
    his.add_argument("--fingerprint", help="one alert only")
    his.add_argument("--limit", type=int, default=50)
    his.set_defaults(func=_with_engine(_history))
    for p in (sil, uns, ack, una):
        p.add_argument("--actor", help="who runs this (default $PAYWATCH_ACTOR or login)")
