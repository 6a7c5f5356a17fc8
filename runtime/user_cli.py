"""``paywatch user``: console users (add, passwd, role, disable, enable, remove, list),
each change audited."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .merchant_cli import cli_actor
from .settings import Settings


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
            actor=cli_actor(args),
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
        actor=cli_actor(args),
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


def configure_parser(user: argparse.ArgumentParser) -> None:
    """The ``user`` subcommands on ``user``."""
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
