"""``paywatch risk``: the blocklist (block, unblock, list) and the review log of payments
the risk check let through unchecked (reviews, review). Changes are audited."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from .settings import Settings


def _actor(args: argparse.Namespace) -> str:
    """Who runs the command: ``--actor``, $PAYWATCH_ACTOR or the login name."""
    return (args.actor or os.environ.get("PAYWATCH_ACTOR") or getpass.getuser())[:64]


def _with_db(fn: Callable[[Any, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from paycore import Database

        from .migrate import upgrade_database

        db = Database(Settings.from_env().database_url)
        try:
            upgrade_database(db.engine)
            return fn(db, args)
        finally:
            db.dispose()

    return run


def _audit(db: Any, args: argparse.Namespace, action: str, detail: dict[str, Any]) -> None:
    from console.audit import record

    record(
        db.engine,
        actor=_actor(args),
        role="cli",
        action=action,
        target=f"{args.merchant}/{args.user}",
        detail=detail,
    )


def _block(db: Any, args: argparse.Namespace) -> int:
    from paycore.risk import block

    entry = block(db, args.merchant, args.user, reason=args.reason, actor=_actor(args))
    _audit(db, args, "risk.block", {"reason": entry.reason})
    print(f"blocked: {entry.user_id} at {entry.merchant_id}")
    return 0


def _unblock(db: Any, args: argparse.Namespace) -> int:
    from paycore.risk import unblock

    if not unblock(db, args.merchant, args.user):
        print(f"error: {args.user} is not blocked at {args.merchant}", file=sys.stderr)
        return 2
    _audit(db, args, "risk.unblock", {})
    print(f"unblocked: {args.user} at {args.merchant}")
    return 0


def _list(db: Any, args: argparse.Namespace) -> int:
    from paycore.risk import blocked

    for e in blocked(db, args.merchant):
        print(
            f"{e.merchant_id}\t{e.user_id}\t{e.created_at:%Y-%m-%dT%H:%M:%SZ}\t"
            f"{e.created_by}\t{e.reason}"
        )
    return 0


def _reviews(db: Any, args: argparse.Namespace) -> int:
    from paycore.risk import list_reviews

    for r in list_reviews(db, status=args.status, merchant_id=args.merchant, limit=args.limit):
        print(
            f"{r.id}\t{r.created_at:%Y-%m-%dT%H:%M:%SZ}\t{r.status}\t{r.merchant_id}\t"
            f"{r.user_id}\t{r.trade_id}\t{r.amount} {r.currency}\t{r.reason}"
        )
    return 0


def _review(db: Any, args: argparse.Namespace) -> int:
    from console.audit import record
    from paycore.risk import close_review

    if not close_review(db, args.id, actor=_actor(args), note=args.note):
        print(f"error: no open review {args.id}", file=sys.stderr)
        return 2
    record(
        db.engine,
        actor=_actor(args),
        role="cli",
        action="risk.review",
        target=str(args.id),
        detail={"note": args.note},
    )
    print(f"review {args.id}: reviewed")
    return 0


def configure_parser(risk: argparse.ArgumentParser) -> None:
    """The ``risk`` subcommands."""
    sub = risk.add_subparsers(dest="risk_command", required=True)
    for name, fn, help_ in (
        ("block", _block, "block a user at a merchant ('*': every one)"),
        ("unblock", _unblock, "remove a blocklist entry"),
    ):
        cmd = sub.add_parser(name, help=help_)
        cmd.add_argument("--merchant", required=True, help="merchant id, or '*' for every one")
        cmd.add_argument("--user", required=True)
        if name == "block":
            cmd.add_argument("--reason", required=True)
        cmd.add_argument("--actor", help="who runs this (default $PAYWATCH_ACTOR or login)")
        cmd.set_defaults(func=_with_db(fn))
    listing = sub.add_parser("list", help="the blocklist")
    listing.add_argument("--merchant", help="one merchant's entries (and the '*' ones)")
    listing.set_defaults(func=_with_db(_list))
    reviews = sub.add_parser("reviews", help="payments allowed unchecked, newest first")
    reviews.add_argument("--status", choices=("open", "reviewed"))
    reviews.add_argument("--merchant")
    reviews.add_argument("--limit", type=int, default=100)
    reviews.set_defaults(func=_with_db(_reviews))
    review = sub.add_parser("review", help="mark an unchecked payment as reviewed")
    review.add_argument("id", type=int)
    review.add_argument("--note", default="")
    review.add_argument("--actor", help="who runs this (default $PAYWATCH_ACTOR or login)")
    review.set_defaults(func=_with_db(_review))
