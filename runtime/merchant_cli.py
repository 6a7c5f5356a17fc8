"""``paywatch merchant``: onboarding and credentials (add, show, rotate-token,
revoke-token, rotate-notify-secret, disable, enable), each change audited."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from .settings import Settings

T = TypeVar("T")


def _merchant_add(args: argparse.Namespace) -> int:
    from .bootstrap import build_platform

    products = []
    for p in args.product:
        order_type, _, sub_type = p.partition(":")
        products.append((order_type, sub_type or "default"))
    platform = build_platform(channels=False)
    try:
        ob = platform.paycore.merchants.onboard(
            args.name,
            products=products,
            pay_orgs=args.pay_org,
            fee_bps=args.fee_bps,
            notify_url=args.notify_url,
        )
    finally:
        platform.close()
    print(f"merchant_id: {ob.merchant.merchant_id}")
    print(f"token:       {ob.token}")
    print(f"notify_secret: {ob.notify_secret}")
    print(
        "The token and the notification secret are shown once; only the token's hash "
        "is stored, the secret is kept to sign notifications.",
        file=sys.stderr,
    )
    return 0


# -- merchant credentials: rotate, revoke, disable (each written to the audit log) ----------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``2d`` or plain seconds, as a :class:`timedelta`."""
    m = _DURATION.fullmatch(text.strip().lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 0, 90s, 30m, 24h, 2d)")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def cli_actor(args: argparse.Namespace) -> str:
    """Who runs the command, for the audit log: ``--actor``, $PAYWATCH_ACTOR or the login."""
    import getpass
    import os

    return (args.actor or os.environ.get("PAYWATCH_ACTOR") or getpass.getuser())[:64]


def _merchant_admin(
    args: argparse.Namespace, action: str, detail: dict[str, Any], fn: Callable[[Any], T]
) -> T:
    """Run ``fn(merchant_service)`` and write the console audit row with its outcome.

    The CLI's authority is the database's credentials (as for ``paywatch user``): the
    row names the OS user (or ``--actor``) with the role ``cli``. No token or secret is
    ever part of ``detail``.
    """
    from console.audit import record
    from paycore import Database
    from paycore.errors import PayCoreError
    from paycore.ids import IdGenerator
    from paycore.merchants import MerchantService

    from .migrate import upgrade_database

    settings = Settings.from_env()
    db = Database(settings.database_url)
    target = f"merchant:{args.merchant_id}"
    try:
        upgrade_database(db.engine)
        service = MerchantService(db, IdGenerator(settings.node_id), _utcnow)
        try:
            result = fn(service)
        except PayCoreError as exc:
            record(
                db.engine,
                actor=cli_actor(args),
                role="cli",
                action=action,
                target=target,
                detail={**detail, "ok": False, "error": exc.code},
            )
            raise
        record(
            db.engine,
            actor=cli_actor(args),
            role="cli",
            action=action,
            target=target,
            detail={**detail, **_outcome(result), "ok": True},
        )
        return result
    finally:
        db.dispose()


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _outcome(result: Any) -> dict[str, Any]:
    """What the audit row keeps of an action's result: prefixes and dates, no secret."""
    out: dict[str, Any] = {}
    for name in ("prefix", "old_valid_until", "status"):
        if hasattr(result, name):
            out["new_prefix" if name == "prefix" else name] = getattr(result, name)
    return out


def _merchant_rotate_token(args: argparse.Namespace) -> int:
    mid, grace = args.merchant_id, args.grace
    issued = _merchant_admin(
        args,
        "merchant.token.rotate",
        {"grace_s": int(grace.total_seconds())},
        lambda m: m.rotate_token(mid, grace=grace),
    )
    print(f"merchant_id: {issued.merchant_id}")
    print(f"token:       {issued.token}")
    print(
        f"The token is shown once. Older tokens stay valid until "
        f"{issued.old_valid_until.isoformat()}.",
        file=sys.stderr,
    )
    return 0


def _merchant_revoke_token(args: argparse.Namespace) -> int:
    n = _merchant_admin(
        args,
        "merchant.token.revoke",
        {"prefix": args.prefix},
        lambda m: m.revoke_token(args.merchant_id, args.prefix),
    )
    print(
        f"merchant {args.merchant_id}: {n} token(s) {args.prefix[:10]}… revoked; every API "
        f"replica refuses them within seconds"
    )
    return 0


def _merchant_rotate_notify_secret(args: argparse.Namespace) -> int:
    issued = _merchant_admin(
        args,
        "merchant.notify_secret.rotate",
        {"overlap_s": int(args.overlap.total_seconds())},
        lambda m: m.rotate_notify_secret(args.merchant_id, overlap=args.overlap),
    )
    print(f"merchant_id: {issued.merchant_id}")
    print(f"notify_secret: {issued.secret}")
    print(
        f"The secret is shown once. Notifications carry signatures under the old secret "
        f"too until {issued.old_valid_until.isoformat()}.",
        file=sys.stderr,
    )
    return 0


def _merchant_status(args: argparse.Namespace) -> int:
    action, mid = args.merchant_command, args.merchant_id
    info = _merchant_admin(args, f"merchant.{action}", {}, lambda m: getattr(m, action)(mid))
    print(f"merchant {info.merchant_id}: {info.status} (every API replica within seconds)")
    return 0


def _merchant_configure(args: argparse.Namespace) -> int:
    """How the merchant's trades end: expiry, confirm hold, pay without coupon."""
    expiry, hold = args.trade_expiry, args.confirm_hold
    coupon = None if args.pay_without_coupon is None else args.pay_without_coupon == "yes"
    detail = {"trade_expiry_s": expiry, "confirm_hold_s": hold, "pay_without_coupon": coupon}
    info = _merchant_admin(
        args,
        "merchant.configure",
        {k: v for k, v in detail.items() if v is not None},
        lambda m: m.configure(
            args.merchant_id,
            trade_expiry_s=expiry,
            confirm_hold_s=hold,
            pay_without_coupon=coupon,
        ),
    )
    print(
        f"merchant {info.merchant_id}: trade_expiry_s={info.trade_expiry_s} "
        f"confirm_hold_s={info.confirm_hold_s} "
        f"pay_without_coupon={'yes' if info.pay_without_coupon else 'no'} "
        f"(every replica within seconds)"
    )
    return 0


def whole_seconds(text: str) -> int:
    """A :func:`duration` as whole seconds (the service checks the range)."""
    seconds = duration(text).total_seconds()
    if seconds != int(seconds):
        raise argparse.ArgumentTypeError(f"not whole seconds: {text!r}")
    return int(seconds)


def _configure_command(msub: Any) -> None:
    """``configure``: how the merchant's trades end (audited)."""
    cmd = msub.add_parser(
        "configure", help="trade expiry, guaranteed confirm hold, pay without coupon on outage"
    )
    cmd.add_argument("merchant_id")
    cmd.add_argument(
        "--trade-expiry",
        type=whole_seconds,
        help="an unpaid trade closes this long after creation: 60s .. 30d (default 30m)",
    )
    cmd.add_argument(
        "--confirm-hold",
        type=whole_seconds,
        help="a paid guaranteed trade confirms itself after: 0 .. 90d (default 7d)",
    )
    cmd.add_argument(
        "--pay-without-coupon",
        choices=("yes", "no"),
        help="a coupon outage lets the pay go on without the coupon (default no)",
    )
    cmd.add_argument(
        "--actor",
        help="who runs this, for the audit log (default: $PAYWATCH_ACTOR or the login name)",
    )
    cmd.set_defaults(func=_merchant_configure)


def _merchant_show(args: argparse.Namespace) -> int:
    """The merchant's status, token prefixes and notification secrets (never a secret)."""
    from paycore import Database
    from paycore.ids import IdGenerator
    from paycore.merchants import MerchantService, describe

    from .migrate import upgrade_database

    settings = Settings.from_env()
    db = Database(settings.database_url)
    try:
        upgrade_database(db.engine)
        service = MerchantService(db, IdGenerator(settings.node_id), _utcnow)
        info, now = service.get(args.merchant_id), _utcnow()
        print(f"merchant {info.merchant_id} ({info.name}): {info.status}")
        print(
            f"trade_expiry_s {info.trade_expiry_s}  confirm_hold_s {info.confirm_hold_s}  "
            f"pay_without_coupon {'yes' if info.pay_without_coupon else 'no'}"
        )
        mid = info.merchant_id
        listed = (("token", service.tokens(mid)), ("notify_secret", service.notify_secrets(mid)))
        for kind, rows in listed:
            if kind == "notify_secret" and not rows:
                print("notify_secret platform  active  (the shared key: rotate to give it its own)")
            for row in rows:
                d = describe(row, now)
                until = d["valid_until"].isoformat() if d["valid_until"] else "-"
                print(f"{kind} {d['prefix']}  {d['state']}  until {until}")
    finally:
        db.dispose()
    return 0


def _merchant_commands(msub: Any) -> None:
    """``show``, ``rotate-token``, ``revoke-token``, ``rotate-notify-secret``, ``disable``,
    ``enable``: each audited (``--actor`` names who runs it)."""
    specs: list[tuple[str, str, Callable[[argparse.Namespace], int]]] = [
        (
            "show",
            "status, token prefixes and notification secrets (never a secret)",
            _merchant_show,
        ),
        (
            "rotate-token",
            "issue a new API token (printed once); older ones valid for --grace",
            _merchant_rotate_token,
        ),
        (
            "revoke-token",
            "refuse one API token (by its prefix, see show) at once",
            _merchant_revoke_token,
        ),
        (
            "rotate-notify-secret",
            "new notification signing secret (printed once); the old one also signs for --overlap",
            _merchant_rotate_notify_secret,
        ),
        (
            "disable",
            "refuse every API call of the merchant (403 merchant_disabled)",
            _merchant_status,
        ),
        ("enable", "let a disabled merchant call the API again", _merchant_status),
    ]
    for name, help_, func in specs:
        cmd = msub.add_parser(name, help=help_)
        cmd.add_argument("merchant_id")
        if name == "revoke-token":
            cmd.add_argument("prefix", help="the token's prefix as listed (pwk_ and 6 characters)")
        if name == "rotate-token":
            cmd.add_argument(
                "--grace",
                type=duration,
                default=timedelta(hours=24),
                help="how long older tokens stay valid: 0 (leaked), 30m, 24h (default), up to 30d",
            )
        if name == "rotate-notify-secret":
            cmd.add_argument(
                "--overlap",
                type=duration,
                default=timedelta(hours=24),
                help="how long the old secret also signs (default 24h)",
            )
        if name != "show":
            cmd.add_argument(
                "--actor",
                help="who runs this, for the audit log (default: "
                "$PAYWATCH_ACTOR or the login name)",
            )
        cmd.set_defaults(func=func)


def configure_parser(merchant: argparse.ArgumentParser) -> None:
    """The ``merchant`` subcommands on ``merchant``."""
    msub = merchant.add_subparsers(dest="merchant_command", required=True)
    add = msub.add_parser("add", help="onboard a merchant; prints its API token once")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--product", action="append", required=True, help="ORDER_TYPE:SUB_TYPE, repeatable"
    )
    add.add_argument("--pay-org", action="append", required=True, help="repeatable")
    add.add_argument("--fee-bps", type=int, default=0)
    add.add_argument("--notify-url")
    add.set_defaults(func=_merchant_add)
    _merchant_commands(msub)
    _configure_command(msub)
