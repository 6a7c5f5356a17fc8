"""The console in a real browser, as its users run it: shared parts of the browser tests.

``console_stack`` (a fixture; import it: ``from browser_stack import console_stack``)
starts the platform with the ``paywatch`` CLI in separate processes (sandbox channel,
pay core API, Streamlit console) over one SQLite file, with one console user per role
(:data:`USERS`) and one merchant. ``browser`` gives a Chromium page (Debian's Chromium,
driven by Playwright with ``executable_path``: no browser download). Screenshots go to
``$PAYWATCH_ARTIFACTS`` (default ``artifacts/browser/`` at the repository root).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import _unavailable, free_port

ROOT = Path(__file__).resolve().parents[2]
#: key -> (user name, password, role); "operator2" is the second person of an approval
USERS = {
    "viewer": ("vera", "viewer-password-1", "viewer"),
    "operator": ("olive", "operator-password-1", "operator"),
    "operator2": ("otto", "operator-password-2", "operator"),
    "manager": ("manny", "manager-password-1", "manager"),
    "admin": ("adele", "admin-password-123", "admin"),
}


def chromium_path() -> str:
    """Debian's Chromium (``PAYWATCH_CHROMIUM`` overrides); skip, or fail under CI."""
    path = os.environ.get("PAYWATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        _unavailable("Chromium", FileNotFoundError(f"{path}: apt-get install chromium"))
    return path


def artifacts() -> Path:
    out = Path(os.environ.get("PAYWATCH_ARTIFACTS") or ROOT / "artifacts" / "browser")
    out.mkdir(parents=True, exist_ok=True)
    return out


def wait(pred: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Processes:
    """The CLI processes of one test, each in its own process group with a log file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "runtime.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def tail(self, name: str, n: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def wait_http(self, name: str, url: str, timeout: float = 60) -> None:
        def up() -> bool:
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.tail(name)}")
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait(up, f"{name} at {url}", timeout)

    def stop(self, name: str | None = None) -> None:
        """SIGTERM to the process groups (``console`` starts Streamlit as a child), then
        SIGKILL what is left."""
        procs = [self.procs[name]] if name else list(self.procs.values())
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


class ConsoleStack:
    """Sandbox, API and console processes over one SQLite database, users for each role."""

    def __init__(self, tmp: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.api_port, self.sandbox_port, self.console_port = free_port(), free_port(), free_port()
        self.db_url = f"sqlite:///{tmp}/pw.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")}
        env |= {
            "PAYWATCH_DATABASE_URL": self.db_url,
            "PAYWATCH_VAR_DIR": str(tmp / "var"),
            "PAYWATCH_API_URL": f"http://127.0.0.1:{self.api_port}",
            "PAYWATCH_SANDBOX_URL": f"http://127.0.0.1:{self.sandbox_port}",
            **(extra_env or {}),
        }
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"
        self.console = f"http://127.0.0.1:{self.console_port}"
        self.procs = Processes(env, tmp)
        self.engine = sa.create_engine(self.db_url)
        self.token = ""
        self.merchant_id = ""

    def setup(self) -> None:
        from console.auth import create_user

        migrated = self.procs.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr
        for name, password, role in USERS.values():
            create_user(self.engine, name, password, role)
        added = self.procs.cli(
            "merchant",
            "add",
            "--name",
            "browser shop",
            "--product",
            "goods:physical",
            "--pay-org",
            "SANDBOX_A",
            "--pay-org",
            "SANDBOX_B",
        )
        assert added.returncode == 0, added.stderr
        printed = {
            k.strip(): v.strip()
            for k, v in (ln.split(":", 1) for ln in added.stdout.strip().splitlines() if ":" in ln)
        }
        self.token, self.merchant_id = printed["token"], printed["merchant_id"]

    def start(self) -> None:
        self.procs.start("sandbox", "sandbox", "--port", str(self.sandbox_port))
        self.procs.start("api", "serve", "--port", str(self.api_port), "--log-level", "warning")
        self.procs.start("console", "console", "--port", str(self.console_port))
        self.procs.wait_http("api", f"{self.api}/readyz")
        self.procs.wait_http("console", f"{self.console}/_stcore/health", timeout=90)

    def pay(self, n: int, prefix: str = "b", amount: int = 2_000, org: str = "SANDBOX_A") -> list:
        """Create and pay ``n`` trades through the API; returns their numbers."""
        numbers = []
        with httpx.Client(
            base_url=self.api, timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        ) as http:
            for i in range(n):
                no = f"{prefix}-{i}-{time.monotonic_ns()}"
                r = http.post(
                    "/v1/trades",
                    json={
                        "out_trade_no": no,
                        "trade_type": "instant",
                        "amount": amount,
                        "currency": "CNY",
                        "user_id": "u1",
                        "order_type": "goods",
                        "sub_type": "physical",
                        "pay_org_no": org,
                    },
                )
                assert r.status_code == 200, r.text
                r = http.post(
                    f"/v1/trades/{no}/pay", json={"tools": [{"tool": "channel", "amount": amount}]}
                )
                assert r.status_code == 200, r.text
                numbers.append(no)
        return numbers

    def stop(self) -> None:
        self.procs.stop()
        self.engine.dispose()


@contextlib.contextmanager
def running(stack: ConsoleStack) -> Iterator[ConsoleStack]:
    """Set up and start ``stack``; its processes' logs are printed when the body fails."""
    stack.setup()
    try:
        stack.start()
        yield stack
    except Exception:
        for name in stack.procs.procs:
            print(f"--- {name} log ---\n{stack.procs.tail(name)}", file=sys.stderr)
        raise
    finally:
        stack.stop()


@pytest.fixture
def console_stack(tmp_path) -> Iterator[ConsoleStack]:
    with running(ConsoleStack(tmp_path)) as stack:
        yield stack


@pytest.fixture
def browser() -> Iterator[Any]:
    """A Chromium browser (Playwright); new pages via ``browser.new_page(...)``."""
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable("Playwright", exc)
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=path,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield b
        finally:
            b.close()


def login(page: Any, console: str, who: str) -> None:
    """Sign in as the user ``who`` (a :data:`USERS` key) and wait for the sidebar."""
    from playwright.sync_api import expect

    name, password, _ = USERS[who]
    page.goto(console)
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(re.compile(rf"Signed in as {name}"))).to_be_visible()


def select(page: Any, label: str, option: str) -> None:
    from playwright.sync_api import expect

    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)
