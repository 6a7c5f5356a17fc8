"""The ``paywatch`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from . import drill_cli as _drill
from .errors import SettingsError
from .settings import Settings


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
        from .admin_api import mount_admin  # the admin API at /admin/v1

        app = mount_admin(platform.api_app(), platform)
        # log_config=None: uvicorn's lines go through our handler (runtime.logs)
        level = logging.getLevelName(logging.getLogger().level).lower()  # runtime.logs set it
        uvicorn.run(app, host=host, port=port, log_level=level, log_config=None)
    finally:
        platform.close()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .bootstrap import build_platform
    from .worker import serve_worker

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
    import signal
    import subprocess

    from .logs import child_env
    from .up import CONSOLE_MISSING, console_command, console_installed

    if not console_installed():
        print(f"paywatch console: error: {CONSOLE_MISSING}", file=sys.stderr)
        return 2
    env = os.environ | child_env(args)  # the console logs as --log-format/--log-level say
    proc = subprocess.Popen(console_command(args.host, args.port), env=env)
    previous = signal.signal(signal.SIGTERM, lambda sig, _: proc.send_signal(sig))
    try:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the console too: it stops itself
            try:
                return proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sandbox(args: argparse.Namespace) -> int:
    from simulator.sandbox import SandboxConfig, run_sandbox

    settings = Settings.from_env()
    parts = urlsplit(settings.sandbox_url)
    admin = args.admin_token or settings.sandbox_admin_token()
    config = SandboxConfig(
        secrets=settings.resolved_channel_secrets(),
        admin_token=admin,
        seed=args.seed,
        coupon_secret=settings.coupon_secret(),  # it hosts the coupon service
    )
    run_sandbox(args.host or parts.hostname or "127.0.0.1", args.port or parts.port or 8100, config)
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


def version() -> str:
    """The installed paywatch version (``0+unknown`` when run from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("paywatch")
    except PackageNotFoundError:
        return "0+unknown"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paywatch", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    from .merchant_cli import configure_parser as configure_merchant

    configure_merchant(sub.add_parser("merchant", help="merchant onboarding and credentials"))

    serve = sub.add_parser("serve", help="run the pay core HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run the scheduler jobs (safe to run several)")
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve this worker's /metrics (business gauges) on this port",
    )
    worker.add_argument("--metrics-host", default="127.0.0.1")
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

    from .user_cli import configure_parser as configure_user

    configure_user(
        sub.add_parser(
            "user", help="console users (add, passwd, role, disable, enable, remove, list)"
        )
    )

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
    from .points_cli import configure_parser as configure_points

    configure_points(sub.add_parser("points", help="grant loyalty points, show a user's"))
    from .risk_cli import configure_parser as configure_risk

    configure_risk(sub.add_parser("risk", help="risk blocklist and unchecked-payment reviews"))
    from .switch_cli import configure_parser as configure_admin

    configure_admin(
        sub.add_parser("admin", help="switches, plans, approvals, map edits (admin API)")
    )
    _drill.configure_parser(sub.add_parser("drill", help="judging drills (grade-audit)"))
    from .routing_cli import configure_parser as configure_routing

    configure_routing(sub.add_parser("routing", help="routing rules: show, publish, preview"))
    from .rules_cli import configure_parser as configure_rules

    configure_rules(sub.add_parser("rules", help="export the Prometheus rules (SLO spec)"))
    from .dashboards_cli import configure_parser as configure_dashboards

    configure_dashboards(
        sub.add_parser("dashboards", help="export the Grafana dashboards (SLO spec, metrics)")
    )
    from .alerts_cli import configure_parser as configure_alerts

    configure_alerts(
        sub.add_parser(
            "alerts", help="alert operations: list, silence, unsilence, ack, unack, history"
        )
    )
    from .logs import add_flags

    add_flags(sub)  # --log-format/--log-level on every command
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)  # a bad flag: argparse prints usage, exits 2
    from .logs import configure_from_args

    try:
        try:
            configure_from_args(args)
        except ValueError as exc:  # PAYWATCH_LOG_FORMAT / PAYWATCH_LOG_LEVEL out of range
            raise SettingsError(str(exc)) from None
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:  # a bad PAYWATCH_* value or flag: one line, no traceback
        print(f"paywatch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a CLI prints the class, never a secret-bearing trace
        from paycore.errors import PayCoreError

        if isinstance(exc, PayCoreError):
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
