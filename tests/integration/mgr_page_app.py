"""What the operations and manager page tests share: a seeded platform on a tmp SQLite
database, a page's ``render(ctx)`` under AppTest for a user and role, and its buttons."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402


def _page(module: str, platform, user: str, role: str) -> None:
    import importlib

    from console.reports.context import PageContext

    importlib.import_module(module).render(PageContext(platform, user, role))


def _app(module: str, platform, user: str, role: str) -> AppTest:
    at = AppTest.from_function(_page, args=(module, platform, user, role), default_timeout=60)
    return at.run()


@pytest.fixture
def platform(sqlite_url):
    from paycore import Database, PayCore

    db = Database(sqlite_url)
    core = PayCore(db)
    yield SimpleNamespace(paycore=core)
    core.lock.close()
    db.dispose()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)
