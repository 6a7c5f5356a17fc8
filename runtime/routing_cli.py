"""``paywatch routing``: the routing rules from scripts.

``show`` prints the current rules (or one version, or the history) as JSON; ``publish``
stores a JSON file of rules as the next version, with a reason, audited as the console's
publish is (``routing.publish``; ``--expected-version`` refuses a publish over a change
made meanwhile); ``preview`` says which pay orgs a payment would try under the current
rules (the guard's live view of each org is on the console's Routing page).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .settings import Settings

MAX_FILE = 1_000_000


def _actor(args: argparse.Namespace) -> str:
    """Who runs the command: ``--actor``, $PAYWATCH_ACTOR or the login name."""
    return (args.actor or os.environ.get("PAYWATCH_ACTOR") or getpass.getuser())[:64]


def _with_store(
    fn: Callable[[Any, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from paycore import Database
        from paycore.routing import RoutingStore

        from .migrate import upgrade_database

        db = Database(Settings.from_env().database_url)
        try:
            upgrade_database(db.engine)
            return fn(RoutingStore(db), args)
        finally:
            db.dispose()

    return run


def _as_dict(rs: Any) -> dict[str, Any]:
    return {
        "version": rs.version,
        "author": rs.author,
        "reason": rs.reason,
        "created_at": rs.created_at.isoformat() if rs.created_at else None,
        "rules": [r.to_dict() for r in rs.rules],
    }


def _show(store: Any, args: argparse.Namespace) -> int:
    if args.history:
        out: Any = [
            {k: v for k, v in _as_dict(rs).items() if k != "rules"} | {"rules": len(rs.rules)}
            for rs in store.history(args.limit)
        ]
    else:
        out = _as_dict(store.current() if args.version is None else store.get(args.version))
    print(json.dumps(out, indent=2))
    return 0


def _publish(store: Any, args: argparse.Namespace) -> int:
    from console.audit import record
    from paycore.routing import RoutingError, rules_from_json

    path = Path(args.file)
    if not path.is_file() or path.stat().st_size > MAX_FILE:
        raise RoutingError(f"{path}: not a readable rules file (at most {MAX_FILE} bytes)")
    detail: dict[str, Any] = {"expected_version": args.expected_version, "reason": args.reason}
    try:
        rules = rules_from_json(path.read_text(encoding="utf-8"))
        made = store.publish(
            rules, author=_actor(args), reason=args.reason, expected_version=args.expected_version
        )
    except RoutingError as exc:
        detail |= {"ok": False, "error": str(exc)[:500]}
        record(
            store.db.engine,
            actor=_actor(args),
            role="cli",
            action="routing.publish",
            target="routing rules",
            detail=detail,
        )
        raise
    detail |= {"ok": True, "version": made.version, "rules": len(made.rules)}
    record(
        store.db.engine,
        actor=_actor(args),
        role="cli",
        action="routing.publish",
        target="routing rules",
        detail=detail,
    )
    print(json.dumps({"version": made.version, "rules": len(made.rules)}))
    return 0


def _preview(store: Any, args: argparse.Namespace) -> int:
    from paycore import IdGenerator
    from paycore.core import utcnow
    from paycore.merchants import MerchantService
    from paycore.routing import CompiledRules, RouteQuery

    info = MerchantService(store.db, IdGenerator(), utcnow).get(args.merchant)
    current = store.current()
    q = RouteQuery(
        merchant_id=args.merchant,
        order_type=args.order_type,
        sub_type=args.sub_type,
        amount=args.amount,
        currency=args.currency,
        user_segment=args.segment,
        default_org=args.default_org or Settings.from_env().pay_orgs[0],
        granted=frozenset(info.pay_orgs),
    )
    decision = CompiledRules(current.rules, current.version).decide(q, random.Random())
    out = {
        "version": current.version,
        "rule": decision.rule,
        "candidates": list(decision.candidates),
        "granted": sorted(info.pay_orgs),
    }
    print(json.dumps(out, indent=2))
    return 0


def configure_parser(routing: argparse.ArgumentParser) -> None:
    """The ``routing`` subcommands."""
    sub = routing.add_subparsers(dest="routing_command", required=True)
    show = sub.add_parser("show", help="the current rules (or --version N, or --history)")
    show.add_argument("--version", type=int)
    show.add_argument("--history", action="store_true", help="the versions, newest first")
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(func=_with_store(_show))
    pub = sub.add_parser("publish", help="publish a JSON file of rules as the next version")
    pub.add_argument("--file", required=True, help="a JSON list of rules (routing show's rules)")
    pub.add_argument("--reason", required=True)
    pub.add_argument(
        "--expected-version", type=int, help="refuse if another version is current by now"
    )
    pub.add_argument("--actor", help="who runs this (default $PAYWATCH_ACTOR or login)")
    pub.set_defaults(func=_with_store(_publish))
    pre = sub.add_parser("preview", help="which pay orgs would this payment try?")
    pre.add_argument("--merchant", required=True)
    pre.add_argument("--order-type", required=True)
    pre.add_argument("--sub-type", required=True)
    pre.add_argument("--amount", type=int, required=True, help="minor units")
    pre.add_argument("--currency", default="CNY")
    pre.add_argument("--segment", help="the payer's user segment")
    pre.add_argument("--default-org", help="the trade's pay org (used when no rule matches)")
    pre.set_defaults(func=_with_store(_preview))
