"""What the console access tests share: an engine on SQLite and PostgreSQL, a migrated SQLite
file with users for the console shell under AppTest, signing in through the login form,
opening pages, and what the shell showed or recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console import auth  # noqa: E402
from console.audit import recent  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "console" / "app.py")
PAGES = Path(__file__).resolve().parents[2] / "console" / "pages"
PASSWORD = "correct-horse-battery"
HOSTILE = ["![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>"]
IDLE = timedelta(minutes=30)
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url):
    eng = sa.create_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def console_db(sqlite_url, tmp_path, monkeypatch):
    """A migrated SQLite file the console process (AppTest) runs on, with users."""
    url = sqlite_url
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    for name in ("PROMETHEUS_URL", "REDIS_URL", "CONSOLE_IDLE_MINUTES"):
        monkeypatch.delenv(f"PAYWATCH_{name}", raising=False)
    eng = sa.create_engine(url)
    for name, role in (
        ("vera", "viewer"),
        ("otto", "operator"),
        ("ada", "admin"),
        ("adam", "admin"),
    ):
        auth.create_user(eng, name, PASSWORD, role)
    yield eng
    eng.dispose()


# -- helpers -----------------------------------------------------------------------------


def _shell() -> None:
    """The console shell (console/app.py) run as AppTest's main script, so every run goes
    through it (AppTest.from_file(app.py) runs later pages alone, Streamlit's legacy mode)."""
    import runpy
    from pathlib import Path

    import console

    runpy.run_path(str(Path(console.__file__).with_name("app.py")), run_name="__main__")


def _open(shell: bool = True) -> AppTest:
    at = AppTest.from_function(_shell) if shell else AppTest.from_file(APP)
    at.default_timeout = 60
    return at.run()


def _sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login_username").input(name)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()  # the login form's submit button


def _page(at: AppTest, page: str) -> AppTest:
    return at.switch_page(str(PAGES / f"{page}.py")).run()


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.title] + [e.value for e in at.markdown]
    parts += [e.value for e in at.caption] + [e.value for e in at.error]
    parts += [e.value for e in at.warning] + [e.value for e in at.info]
    parts += [e.value for e in at.success] + [e.value for e in at.subheader]
    return "\n".join(str(p) for p in parts)


def _actions(engine, action: str) -> list[dict]:
    return recent(engine, 500, action=action, admin=True)


def _switches(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("select count(*) from stability_switches")).scalar_one()


def _signed_in(at: AppTest) -> bool:
    return any("Signed in as" in c.value for c in at.sidebar.caption)
