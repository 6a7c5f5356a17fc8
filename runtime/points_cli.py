"""``paywatch points``: grant loyalty points to a merchant's user, show what a user holds.
Grants are audited."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from .settings import Settings


def _actor(args: argparse.Namespace) -> str:
    """Who runs the command: ``--actor``, $PAYWATCH_ACTOR or the login name."""
    return (args.actor or os.environ.get("PAYWATCH_ACTOR") or getpass.getuser())[:64]


def _core() -> Any:
    from paycore import PayCore

    from .migrate import upgrade_database

    core = PayCore(Settings.from_env().database_url)
    upgrade_database(core.db.engine)
    return core


def _grant(args: argparse.Namespace) -> int:
    from console.audit import record

    core = _core()
    try:
        g = core.points.grant(
            args.merchant,
            args.user,
            args.amount,
            args.currency,
            args.reason,
            grant_no=args.grant_no,
        )
        if g.posted:
            record(
                core.db.engine,
                actor=_actor(args),
                role="cli",
                action="points.grant",
                target=f"{g.merchant_id}/{g.user_id}",
                detail={"grant_no": g.grant_no, "amount": g.amount, "currency": g.currency},
            )
        state = "granted" if g.posted else "already granted"
        print(
            f"{state}: {g.amount} {g.currency} points to {g.user_id} at {g.merchant_id} "
            f"(grant {g.grant_no}); now {g.balance}"
        )
        return 0
    finally:
        core.close()


def _show(args: argparse.Namespace) -> int:
    core = _core()
    try:
        held = core.points.balance(args.merchant, args.user, args.currency)
        print(f"{args.user} at {args.merchant}: {held} {args.currency} points")
        return 0
    finally:
        core.close()


def configure_parser(p: argparse.ArgumentParser) -> None:
    """``paywatch points grant|show``."""
    sub = p.add_subparsers(dest="points_command", required=True)
    grant = sub.add_parser("grant", help="grant points to a merchant's user (audited)")
    show = sub.add_parser("show", help="the points a merchant's user holds")
    for q in (grant, show):
        q.add_argument("--merchant", required=True)
        q.add_argument("--user", required=True)
        q.add_argument("--currency", default="CNY")
    grant.add_argument("--amount", type=int, required=True, help="points, in minor units")
    grant.add_argument("--reason", default="")
    grant.add_argument("--grant-no", help="idempotency key (default: a new grant)")
    grant.add_argument("--actor", help="who grants (default $PAYWATCH_ACTOR or login)")
    grant.set_defaults(func=_grant)
    show.set_defaults(func=_show)
