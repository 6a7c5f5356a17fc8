"""``paywatch up``: everything in one command.

One platform process runs the sandbox channel, the pay core API, the worker's jobs and
the simulator's traffic (each on its own thread, over one :class:`Platform`), and starts
the console as a child process. With no ``PAYWATCH_*`` URLs it is the embedded default:
SQLite under ``./var/`` and in-process locks, limits and switch propagation. The same
command runs on PostgreSQL and Redis when their URLs are set. Without the ``console``
extra (``make install-core``) it starts everything else and warns once how to install it.

Ctrl-C (or SIGTERM) stops the parts in reverse order: console, simulator, worker, API,
sandbox; then the platform releases its engines.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .servers import free_port
from .settings import Settings, _redact

log = logging.getLogger("paywatch.up")
SANDBOX_TOKEN_ENV = "PAYWATCH_SANDBOX_ADMIN_TOKEN"


@dataclasses.dataclass(frozen=True)
class UpOptions:
    """Ports and switches of ``paywatch up`` (0 picks a free port)."""

    host: str = "127.0.0.1"
    api_port: int = 8000
    sandbox_port: int = 8100
    console_port: int = 8501
    receiver_port: int = 8300
    rate: float = 2.0  #: simulated payments per second; 0 = no simulator
    console: bool = True


#: what the console needs beyond the core (the ``console`` extra of pyproject.toml)
CONSOLE_MODULES = ("streamlit", "plotly")
CONSOLE_MISSING = (
    "the console is not installed: pip install 'paywatch[console]' "
    "(or `make install`, which installs every extra)"
)


def console_installed() -> bool:
    """Whether the ``console`` extra is importable (checked without importing it)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in CONSOLE_MODULES)


#: Streamlit options every console start carries (also in console/.streamlit/config.toml,
#: which ``streamlit run console/app.py`` reads): no telemetry, no deploy button, and no
#: traceback, exception type or message in the browser ("none"; false would still show the
#: stack trace): an uncaught error shows a generic line, the details go to the log only
STREAMLIT_OPTIONS = {
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "minimal",
    "client.showErrorDetails": "none",
}


def console_command(host: str, port: int) -> list[str]:
    """The command that serves the Streamlit console (``paywatch console``, ``paywatch up``):
    Streamlit run by :mod:`runtime.console_host`, which logs its lines and Streamlit's in
    the ``PAYWATCH_LOG_FORMAT`` and at the ``PAYWATCH_LOG_LEVEL`` of the environment."""
    import console

    app = Path(console.__file__).with_name("app.py")
    cmd = [
        sys.executable,
        "-m",
        "runtime.console_host",
        "run",
        str(app),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
    ]
    for name, value in STREAMLIT_OPTIONS.items():
        cmd += [f"--{name}", value]
    return cmd


def resolve(settings: Settings, options: UpOptions) -> tuple[Settings, UpOptions]:
    """Fix the ports (0 = a free one) and point the API and sandbox URLs at them."""
    o = options

    def port(value: int) -> int:
        return value or free_port(o.host)

    options = dataclasses.replace(
        o,
        api_port=port(o.api_port),
        sandbox_port=port(o.sandbox_port),
        console_port=port(o.console_port),
        receiver_port=port(o.receiver_port),
    )
    settings = dataclasses.replace(
        settings,
        api_url=f"http://{options.host}:{options.api_port}",
        sandbox_url=f"http://{options.host}:{options.sandbox_port}",
    )
    return settings, options


class AllInOne:
    """The running parts of ``paywatch up``; :meth:`stop` undoes :meth:`start`."""

    def __init__(
        self, settings: Settings, options: UpOptions, *, env: dict[str, str] | None = None
    ) -> None:
        self.settings, self.options = resolve(settings, options)
        self.env = dict(os.environ if env is None else env)
        self.sandbox_token = self.settings.sandbox_admin_token()
        self.stop_event = threading.Event()
        self.logins: dict[str, tuple[str, str]] = {}
        self._undo: list[tuple[str, Callable[[], Any]]] = []
        self.platform: Any = None
        self.simulator: Any = None
        self.console: subprocess.Popen[bytes] | None = None

    # -- start -----------------------------------------------------------------------------
    def start(self) -> AllInOne:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from .demo import ensure_demo_users
        from .embedded import EmbeddedOptions, EmbeddedPlatform

        s, o = self.settings, self.options
        Path(s.var_dir).mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedPlatform(
            s,
            EmbeddedOptions(
                host=o.host,
                api_port=o.api_port,
                sandbox_port=o.sandbox_port,
                proxies=False,
                sandbox_admin_token=self.sandbox_token,
            ),
        ).start()
        self._undo.append(("platform", embedded.stop))
        self.platform = embedded.platform
        self.logins = ensure_demo_users(self.platform.db.engine, s.var_dir)
        if o.rate > 0:
            self._start_simulator()
        if o.console and not console_installed():  # make install-core: the rest runs
            log.warning("%s; starting everything else", CONSOLE_MISSING)
            self.options = dataclasses.replace(o, console=False)
        elif o.console:
            self._start_console()

    def _start_simulator(self) -> None:
        from simulator import SimConfig, Simulator, ensure_demo_merchants

        s, o = self.settings, self.options
        merchants = ensure_demo_merchants(
            self.platform.paycore, s.var_dir, f"http://{o.host}:{o.receiver_port}", s.pay_orgs
        )
        config = SimConfig(
            api_url=s.api_url,
            rate=o.rate,
            receiver_host=o.host,
            receiver_port=o.receiver_port,
            sandbox_url=s.sandbox_url,
            sandbox_admin_token=self.sandbox_token,
            notify_secret=s.notify_secret(),
        )
        self.simulator = Simulator(config, merchants).start()
        self._undo.append(("simulator", self.simulator.stop))

    def console_env(self) -> dict[str, str]:
        """The console's environment: the same database and URLs as the platform."""
        s = self.settings
        env = self.env | {
            "PAYWATCH_DATABASE_URL": s.database_url,
            "PAYWATCH_VAR_DIR": str(Path(s.var_dir).resolve()),
            "PAYWATCH_API_URL": s.api_url,
            "PAYWATCH_SANDBOX_URL": s.sandbox_url,
            "PAYWATCH_PAY_ORGS": ",".join(s.pay_orgs),
            SANDBOX_TOKEN_ENV: self.sandbox_token,
        }
        if s.redis_url:
            env["PAYWATCH_REDIS_URL"] = s.redis_url
        return env

    def _start_console(self) -> None:
        cmd = console_command(self.options.host, self.options.console_port)
        # its own process group: Ctrl-C in the terminal reaches us, and we stop it in order
        self.console = subprocess.Popen(cmd, env=self.console_env(), start_new_session=True)
        self._undo.append(("console", self._stop_console))

    def _stop_console(self) -> None:
        proc = self.console
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    # -- stop ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every started part, newest first; errors are logged, never left half-done."""
        self.stop_event.set()
        while self._undo:
            name, undo = self._undo.pop()
            try:
                undo()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stopping %s failed", name)

    def banner(self) -> str:
        s, o = self.settings, self.options
        lines = ["", "paywatch is up", ""]
        if o.console:
            lines.append(f"  console   http://{o.host}:{o.console_port}")
        lines += [
            f"  API       {s.api_url}   (metrics: {s.api_url}/metrics)",
            f"  admin API {s.api_url}/admin/v1   (paywatch admin; console users sign in)",
            f"  sandbox   {s.sandbox_url}",
            f"  database  {_redact(s.database_url)}",
            "",
            "  demo logins (user / password):",
        ]
        lines += [f"    {user:<9} {pw}   ({role})" for user, (role, pw) in self.logins.items()]
        if o.rate > 0:
            lines.append(f"\n  simulator: ~{o.rate:g} payments/s (Poisson)")
        lines += ["", "Ctrl-C stops everything.", ""]
        return "\n".join(lines)


def run(settings: Settings, options: UpOptions, env: dict[str, str] | None = None) -> int:
    """Start everything, print where it is, wait for Ctrl-C/SIGTERM, stop cleanly; the
    console gets ``env`` (default: this process's environment)."""
    stack = AllInOne(settings, options, env=env)
    previous = {
        sig: signal.signal(sig, lambda *_: stack.stop_event.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        stack.start()
        print(stack.banner(), flush=True)
        while not stack.stop_event.wait(0.5):
            if stack.console is not None and stack.console.poll() is not None:
                log.error("the console exited (%s); stopping", stack.console.returncode)
                stack.stop_event.set()
        print("paywatch: stopping ...", flush=True)
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stack.simulator is not None:
        counts = stack.simulator.stats.as_dict()
        shown = ("trades_created", "paid", "pay_failed", "refunds_succeeded", "notifications")
        print("simulator: " + ", ".join(f"{k} {counts[k]}" for k in shown), flush=True)
    print("paywatch: stopped", flush=True)
    return 0


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``up`` arguments and handler to ``p``."""
    d = UpOptions()
    p.add_argument("--host", default=d.host)
    p.add_argument("--api-port", type=int, help="default: the port of PAYWATCH_API_URL or 8000")
    p.add_argument(
        "--sandbox-port", type=int, help="default: the port of PAYWATCH_SANDBOX_URL or 8100"
    )
    p.add_argument("--console-port", type=int, default=d.console_port)
    p.add_argument(
        "--receiver-port",
        type=int,
        default=d.receiver_port,
        help="the simulated merchants' notification receivers",
    )
    p.add_argument(
        "--rate", type=float, default=d.rate, help="simulated payments per second (0: no simulator)"
    )
    p.add_argument("--no-console", action="store_true", help="do not start the console")

    def handle(args: argparse.Namespace) -> int:
        settings = Settings.from_env()
        api, sandbox = urlsplit(settings.api_url), urlsplit(settings.sandbox_url)
        options = UpOptions(
            host=args.host,
            api_port=args.api_port if args.api_port is not None else api.port or 8000,
            sandbox_port=args.sandbox_port
            if args.sandbox_port is not None
            else sandbox.port or 8100,
            console_port=args.console_port,
            receiver_port=args.receiver_port,
            rate=max(0.0, args.rate),
            console=not args.no_console,
        )
        from .logs import child_env

        return run(settings, options, env=dict(os.environ) | child_env(args))

    p.set_defaults(func=handle)
