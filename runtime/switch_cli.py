"""``paywatch admin``: switches, approvals, plans and map edits from scripts, as a client
of the HTTP admin API (``/admin/v1`` on the pay API's server).

The CLI holds no authority of its own: it signs in as a console user (``paywatch admin
login``; the password from ``PAYWATCH_ADMIN_PASSWORD`` or a prompt, never argv) and every
command is role-checked, four-eyes-checked and audited by the server exactly as the
console's clicks are. The session token is kept in a file readable by its owner only
(``--token-file``, ``$PAYWATCH_ADMIN_TOKEN_FILE``, default
``~/.config/paywatch/admin-token``), or given as ``$PAYWATCH_ADMIN_TOKEN`` (runbooks,
chat tools). Answers are printed as JSON; a refusal prints ``error: <code>: <message>``
and exits 2 (1 when the server cannot be reached or fails).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .settings import Settings

__all__ = ["configure_parser", "parse_ttl"]
_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class CliRefused(Exception):
    """The server refused the command (its error code and message) or was unreachable."""

    def __init__(self, code: str, message: str, exit_code: int = 2) -> None:
        super().__init__(f"{code}: {message}")
        self.exit_code = exit_code


def parse_ttl(text: str) -> float:
    """Seconds of ``90``, ``90s``, ``30m``, ``1h`` or ``2d``."""
    m = _TTL.match(text or "")
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 1h, 2d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _token_file(args: argparse.Namespace) -> Path:
    given = args.token_file or os.environ.get("PAYWATCH_ADMIN_TOKEN_FILE")
    return Path(given) if given else Path.home() / ".config" / "paywatch" / "admin-token"


def _base_url(args: argparse.Namespace) -> str:
    url = args.url or os.environ.get("PAYWATCH_ADMIN_URL")
    return url.rstrip("/") if url else Settings.from_env().api_url.rstrip("/") + "/admin/v1"


def _token(args: argparse.Namespace) -> str | None:
    token = os.environ.get("PAYWATCH_ADMIN_TOKEN")
    if token:
        return token
    path = _token_file(args)
    if not path.exists():
        return None
    return path.read_text().strip() or None


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One admin API request; the answer's JSON (``None`` for 204), or :class:`CliRefused`."""
    from backends.errors import HttpUnavailable
    from backends.http import JsonHttp

    token = _token(args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with JsonHttp(_base_url(args), timeout=args.timeout, maxsize=1) as http:
            answer = http.request(method, path, json=body, headers=headers)
    except HttpUnavailable as exc:
        reason = type(exc.__cause__ or exc).__name__
        raise CliRefused("unreachable", f"{_base_url(args)}: {reason}", 1) from None
    if answer.status == 204:
        return None
    try:
        data = answer.json()
    except ValueError:
        data = {}
    if answer.ok:
        return data
    error = data.get("error", {}) if isinstance(data, dict) else {}
    code, message = error.get("code", str(answer.status)), error.get("message", "")
    if answer.status == 429 and "retry-after" in answer.headers:
        message += f" (retry after {answer.headers['retry-after']} s)"
    raise CliRefused(code, message, 2 if answer.status < 500 else 1)


# -- commands ----------------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> Any:
    import getpass

    user = args.user or os.environ.get("PAYWATCH_ADMIN_USER") or getpass.getuser()
    password = os.environ.get("PAYWATCH_ADMIN_PASSWORD") or getpass.getpass("Password: ")
    answer = call(args, "POST", "/login", {"username": user, "password": password})
    path = _token_file(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(answer["token"])
    path.chmod(0o600)
    return {k: v for k, v in answer.items() if k != "token"} | {"token_file": str(path)}


def _logout(args: argparse.Namespace) -> Any:
    call(args, "POST", "/logout")
    path = _token_file(args)
    if path.exists():
        path.unlink()
    return {"signed_out": True}


def _switch_body(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.state:
        params["state"] = args.state
    if args.rate is not None:
        params["rate"] = args.rate
    if args.burst is not None:
        params["burst"] = args.burst
    return {
        "kind": args.kind,
        "target": args.target,
        "params": params,
        "reason": args.reason,
        "ttl_s": args.ttl,
    }


def _switch_apply(args: argparse.Namespace) -> Any:
    path = "/switches/dry-run" if args.dry_run else "/switches"
    return call(args, "POST", path, _switch_body(args))


def _switch_end(args: argparse.Namespace) -> Any:
    body = None if args.switch_command == "approve" else {"reason": args.reason}
    return call(args, "POST", f"/switches/{args.id}/{args.switch_command}", body)


def _map_edge(args: argparse.Namespace) -> Any:
    path = f"/map/edges/{args.caller}/{args.callee}"
    if args.edge_command == "rm":
        return call(args, "DELETE", path, {"reason": args.reason})
    body = {
        "grade": args.grade,
        "timeout_ms": args.timeout_ms,
        "retries": args.retries,
        "fallback": args.fallback,
        "owner": args.owner,
        "reason": args.reason,
    }
    return call(args, "PUT", path, body)


def _map_resource(args: argparse.Namespace) -> Any:
    path = f"/map/resources/{args.name}"
    if args.resource_command == "rm":
        return call(args, "DELETE", path, {"reason": args.reason})
    body = {
        "kind": args.kind,
        "owner": args.owner,
        "core_link": args.core_link,
        "description": args.description,
        "reason": args.reason,
    }
    return call(args, "PUT", path, body)


def _plan(args: argparse.Namespace) -> Any:
    if args.plan_command == "list":
        return call(args, "GET", "/plans")
    if args.plan_command == "run":
        return call(
            args, "POST", f"/plans/{args.name}/run", {"reason": args.reason, "ttl_s": args.ttl}
        )
    end = None if args.plan_command == "approve" else {"reason": args.reason}
    return call(args, "POST", f"/plans/runs/{args.id}/{args.plan_command}", end)


def _run(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            answer = handler(args)
        except CliRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        print(json.dumps(answer, indent=2, sort_keys=True, default=str))
        return 0

    return run


def _get(path: str) -> Any:
    return lambda args: call(args, "GET", path)


# -- the parser ----------------------------------------------------------------------------------


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``admin`` commands to ``p``."""
    p.add_argument(
        "--url", help="the admin API (default: $PAYWATCH_ADMIN_URL, or API_URL/admin/v1)"
    )
    p.add_argument("--token-file", help="where the session token is kept")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    sub = p.add_subparsers(dest="admin_command", required=True)
    login = sub.add_parser("login", help="sign in as a console user (password: prompt or env)")
    login.add_argument("--user", help="console user (default: $PAYWATCH_ADMIN_USER or OS user)")
    login.set_defaults(func=_run(_login))
    sub.add_parser("logout", help="end the session").set_defaults(func=_run(_logout))
    sub.add_parser("whoami", help="who the token belongs to").set_defaults(func=_run(_get("/me")))
    approvals = sub.add_parser("approvals", help="what waits for a second person")
    approvals.set_defaults(func=_run(_get("/approvals")))
    sub.add_parser("audit", help="the switch audit log").set_defaults(func=_run(_get("/audit")))
    _switch_parser(sub.add_parser("switch", help="list, apply, dry-run, approve, reject, revert"))
    _map_parser(sub.add_parser("map", help="show or edit the dependency map"))
    _plan_parser(sub.add_parser("plan", help="list, run, approve, reject, revert plans"))


def _switch_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="switch_command", required=True)
    ls = sub.add_parser("list", help="switches pending or in force (--all: history)")
    ls.add_argument("--all", action="store_true")
    ls.set_defaults(func=_run(lambda a: call(a, "GET", f"/switches?all={str(a.all).lower()}")))
    apply = sub.add_parser("apply", help="apply (or propose) a switch; --dry-run: preview")
    apply.add_argument("kind", choices=["degrade", "force_breaker", "set_limit", "dry_run_limit"])
    apply.add_argument("target", help="a resource of the map, or a limit rule name")
    apply.add_argument("--reason", required=True)
    apply.add_argument("--ttl", type=parse_ttl, required=True, help="expiry, e.g. 30m, 1h, 2d")
    apply.add_argument("--state", choices=["forced_open", "forced_closed"])
    apply.add_argument("--rate", type=float)
    apply.add_argument("--burst", type=float)
    apply.add_argument("--dry-run", action="store_true", help="say what it would do only")
    apply.set_defaults(func=_run(_switch_apply))
    for name in ("approve", "reject", "revert"):
        end = sub.add_parser(name, help=f"{name} switch ID")
        end.add_argument("id", type=int)
        if name != "approve":
            end.add_argument("--reason", required=True)
        end.set_defaults(func=_run(_switch_end))


def _map_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="map_command", required=True)
    sub.add_parser("show", help="the stored map").set_defaults(func=_run(_get("/map")))
    edge = sub.add_parser("edge", help="add/update (set) or remove (rm) an edge")
    esub = edge.add_subparsers(dest="edge_command", required=True)
    eset = esub.add_parser("set")
    erm = esub.add_parser("rm")
    for q in (eset, erm):
        q.add_argument("caller")
        q.add_argument("callee")
        q.add_argument("--reason", required=True)
        q.set_defaults(func=_run(_map_edge))
    eset.add_argument("--grade", choices=["strong", "weak"], required=True)
    eset.add_argument("--timeout-ms", type=int, required=True)
    eset.add_argument("--retries", type=int, default=0)
    eset.add_argument("--fallback", default="")
    eset.add_argument("--owner", default="")
    res = sub.add_parser("resource", help="add/update (set) or remove (rm) a resource")
    rsub = res.add_subparsers(dest="resource_command", required=True)
    rset = rsub.add_parser("set")
    rrm = rsub.add_parser("rm")
    for q in (rset, rrm):
        q.add_argument("name")
        q.add_argument("--reason", required=True)
        q.set_defaults(func=_run(_map_resource))
    rset.add_argument("--kind", required=True)
    rset.add_argument("--owner", default="")
    rset.add_argument("--core-link", action="store_true")
    rset.add_argument("--description", default="")


def _plan_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="plan_command", required=True)
    sub.add_parser("list", help="plans and their runs").set_defaults(func=_run(_plan))
    run = sub.add_parser("run", help="run plan NAME (after approval when it needs one)")
    run.add_argument("name")
    run.add_argument("--reason", required=True)
    run.add_argument("--ttl", type=parse_ttl, required=True)
    run.set_defaults(func=_run(_plan))
    for name in ("approve", "reject", "revert"):
        end = sub.add_parser(name, help=f"{name} plan run ID")
        end.add_argument("id", type=int)
        if name != "approve":
            end.add_argument("--reason", required=True)
        end.set_defaults(func=_run(_plan))
