"""The ``paywatch`` command line."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

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


def _actor(args: argparse.Namespace) -> str:
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
                actor=_actor(args),
                role="cli",
                action=action,
                target=target,
                detail={**detail, "ok": False, "error": exc.code},
            )
            raise
        record(
            db.engine,
            actor=_actor(args),
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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .bootstrap import build_platform

    settings = Settings.from_env()
    host, port = args.host, args.port
    if host is None or port is None:
        parts = urlsplit(settings.api_url)
        host = host or parts.hostname or "127.0.0.1"
        port = port or parts.port or 8000
    platform = build_platform(settings, role="api").start()
    try:
        uvicorn.run(platform.api_app(), host=host, port=port, log_level=args.log_level)
    finally:
        platform.close()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .bootstrap import build_platform
    from .worker import serve_worker

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.log_level != "debug":  # one line per job run and per HTTP call drowns the rest
        for noisy in ("apscheduler", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    platform = build_platform(Settings.from_env(), role="worker").start()
    server = None
    try:
        if args.metrics_port is not None and platform.observability is not None:
            # the business gauges (backlogs, trial balance) live in the worker: Prometheus
            # scrapes them here, as it scrapes each API replica's /metrics
            from collectors import start_metrics_server

            server, _ = start_metrics_server(
                platform.observability.registry, args.metrics_port, addr=args.metrics_host
            )
        return serve_worker(platform)
    finally:
        if server is not None:
            server.shutdown()
        platform.close()


def _console(args: argparse.Namespace) -> int:
    import subprocess

    from .up import console_command

    return subprocess.call(console_command(args.host, args.port))


def _sandbox(args: argparse.Namespace) -> int:
    from simulator.sandbox import SandboxConfig, run_sandbox

    settings = Settings.from_env()
    parts = urlsplit(settings.sandbox_url)
    admin = args.admin_token or settings.sandbox_admin_token()
    config = SandboxConfig(
        secrets=settings.resolved_channel_secrets(), admin_token=admin, seed=args.seed
    )
    run_sandbox(args.host or parts.hostname or "127.0.0.1", args.port or parts.port or 8100, config)
    return 0


def _user(args: argparse.Namespace) -> int:
    """Console users: add, passwd, role, disable, enable, remove, list. Each change is
    written to the console audit log (actor: ``--actor``, $PAYWATCH_ACTOR or the OS user;
    role ``cli``). The password comes from a prompt or PAYWATCH_USER_PASSWORD, never argv
    (command lines are visible to every user of the machine)."""
    from console.auth import AuthError
    from paycore import Database

    from .migrate import upgrade_database

    db = Database(Settings.from_env().database_url)
    try:
        upgrade_database(db.engine)
        if args.user_command == "list":
            return _user_list(db.engine)
        found = _user_change(db.engine, args)
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    if not found:
        print(f"error: no user {args.name!r}", file=sys.stderr)
        return 2
    print(f"user {args.name}: {args.user_command} done")
    return 0


def _user_change(engine: Any, args: argparse.Namespace) -> bool:
    """Run one ``paywatch user`` change and audit it (also when refused)."""
    import getpass
    import os

    from console import auth
    from console.audit import record

    command, name = args.user_command, args.name
    detail: dict[str, Any] = {"role": args.role} if command in ("add", "role") else {}
    password = ""
    if command in ("add", "passwd"):
        password = os.environ.get("PAYWATCH_USER_PASSWORD") or getpass.getpass("Password: ")
    actions: dict[str, Callable[[], Any]] = {
        "add": lambda: auth.create_user(engine, name, password, args.role),
        "passwd": lambda: auth.set_password(engine, name, password),
        "role": lambda: auth.set_role(engine, name, args.role),
        "disable": lambda: auth.disable_user(engine, name),
        "enable": lambda: auth.enable_user(engine, name),
        "remove": lambda: auth.remove_user(engine, name),
    }
    action = {"add": "user.create", "passwd": "user.password"}.get(command, f"user.{command}")
    try:
        found = actions[command]() is not False
    except auth.AuthError as exc:
        record(
            engine,
            actor=_actor(args),
            role="cli",
            action=action,
            target=f"user:{name}",
            detail={**detail, "ok": False, "error": str(exc)},
        )
        raise
    if not found:
        detail["error"] = "no such user"
    record(
        engine,
        actor=_actor(args),
        role="cli",
        action=action,
        target=f"user:{name}",
        detail={**detail, "ok": found},
    )
    return found


def _user_list(engine: Any) -> int:
    from console.auth import list_users

    for u in list_users(engine):
        print(f"{u['username']}\t{u['role']}\t{u['status']}\tsessions={u['sessions']}")
    return 0


def _shadow_drop(_: argparse.Namespace) -> int:
    from paycore import Database
    from paycore.db.shadow import drop_shadow

    db = Database(Settings.from_env().database_url)
    try:
        drop_shadow(db.engine)
    finally:
        db.dispose()
    print("shadow tables dropped (they are rebuilt by the next shadow request)")
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from paycore import Database

    from .migrate import upgrade_database

    db = Database(Settings.from_env().database_url)
    upgrade_database(db.engine)
    db.dispose()
    print("database is at the newest revision")
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paywatch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    merchant = sub.add_parser("merchant", help="merchant onboarding and credentials")
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

    serve = sub.add_parser("serve", help="run the pay core HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run the scheduler jobs (safe to run several)")
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve this worker's /metrics (business gauges) on this port",
    )
    worker.add_argument("--metrics-host", default="127.0.0.1")
    worker.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    worker.set_defaults(func=_worker)

    console = sub.add_parser("console", help="run the Streamlit console")
    console.add_argument("--host", default="127.0.0.1")
    console.add_argument("--port", type=int, default=8501)
    console.set_defaults(func=_console)

    sandbox = sub.add_parser("sandbox", help="run the sandbox channel")
    sandbox.add_argument("--host")
    sandbox.add_argument("--port", type=int)
    sandbox.add_argument("--seed", type=int, default=0)
    sandbox.add_argument("--admin-token")
    sandbox.set_defaults(func=_sandbox)

    user = sub.add_parser(
        "user", help="console users (add, passwd, role, disable, enable, remove, list)"
    )
    usub = user.add_subparsers(dest="user_command", required=True)
    usub.add_parser("list", help="list users, their role, state and open sessions").set_defaults(
        func=_user
    )
    for name, help_ in (
        ("add", "create a user"),
        ("passwd", "reset a password (ends the user's sessions)"),
        ("role", "change a role (effective at the user's next click)"),
        ("disable", "disable a user (ends the user's sessions)"),
        ("enable", "enable a disabled user"),
        ("remove", "remove a user (ends the user's sessions)"),
    ):
        cmd = usub.add_parser(name, help=help_)
        cmd.add_argument("--name", required=True)
        if name in ("add", "role"):
            cmd.add_argument(
                "--role", required=True, choices=("viewer", "operator", "manager", "admin")
            )
        cmd.add_argument(
            "--actor",
            help="who runs this, for the audit log (default: $PAYWATCH_ACTOR or the OS user)",
        )
        cmd.set_defaults(func=_user)

    shadow = sub.add_parser("shadow", help="shadow (pressure-test) tables")
    ssub = shadow.add_subparsers(dest="shadow_command", required=True)
    drop = ssub.add_parser("drop", help="drop the shadow tables (stop the platform first)")
    drop.set_defaults(func=_shadow_drop)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=_migrate)

    from .simulate import configure_parser as configure_simulate
    from .up import configure_parser as configure_up

    configure_up(
        sub.add_parser(
            "up", help="run everything in one command (API, sandbox, worker, simulator, console)"
        )
    )
    configure_simulate(
        sub.add_parser("simulate", help="merchant traffic, failing receivers and scripted drills")
    )
    from .risk_cli import configure_parser as configure_risk

    configure_risk(sub.add_parser("risk", help="risk blocklist and unchecked-payment reviews"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI prints the class, never a secret-bearing trace
        from paycore.errors import PayCoreError

        if isinstance(exc, PayCoreError):
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
