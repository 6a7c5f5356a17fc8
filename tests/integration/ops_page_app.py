"""What the operations-page tests share: a migrated SQLite pay core with the configured pay
orgs, an operations page under AppTest (with an uploaded file), and readers of what it
rendered (buttons, tables, texts; hostile strings shown inert)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console.safe import md  # noqa: E402

ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
#: above 2^53: a JavaScript number cannot hold it (it would show ...048 as ...050)
BIG = 387985099441922048
HOSTILE = ("![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>")
CSV_HEAD = "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"


# -- fixtures and helpers -------------------------------------------------------------------
@pytest.fixture
def platform(sqlite_url):
    """A migrated SQLite pay core with the configured pay orgs (what the pages read)."""
    from paycore import Database, PayCore

    db = Database(sqlite_url)
    core = PayCore(db)
    yield SimpleNamespace(paycore=core, settings=SimpleNamespace(pay_orgs=ORGS))
    core.lock.close()
    db.dispose()


def _page(module: str, platform, user: str, role: str, upload: bytes | None = None) -> None:
    """Render an operations page; ``upload`` answers ``st.file_uploader`` (AppTest has no
    file uploader element)."""
    import importlib
    import io

    import streamlit as st

    from console.reports.context import PageContext

    class Upload(io.BytesIO):
        name = "statement.csv"

    original = st.file_uploader
    if upload is not None:
        st.file_uploader = lambda *a, **k: Upload(upload)  # type: ignore[assignment]
    try:
        importlib.import_module(module).render(PageContext(platform, user, role))
    finally:
        st.file_uploader = original  # type: ignore[assignment]


def _app(
    module: str,
    platform,
    user: str = "olga",
    role: str = "operator",
    upload: bytes | None = None,
    query: dict[str, str] | None = None,
) -> AppTest:
    at = AppTest.from_function(
        _page, args=(module, platform, user, role, upload), default_timeout=60
    )
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def _has_button(at: AppTest, key: str) -> bool:
    return any(b.key == key for b in at.button)


def _texts(at: AppTest) -> list[str]:
    """Every string the page rendered through Markdown."""
    out: list[str] = []
    for kind in (
        "title",
        "subheader",
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
        "toast",
    ):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [str(m.label) for m in at.metric]
    return out


def _table(at: AppTest, column: str):
    """The first table with ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _assert_inert(at: AppTest) -> None:
    """No hostile string reached Markdown unescaped; each was shown escaped."""
    texts = _texts(at)
    joined = "\n".join(texts)
    assert "![px](" not in joined and "**bold**" not in joined
    assert not re.search(r"(?<!\\)<img", joined), joined
    assert md(HOSTILE[0]) in joined  # shown, as its characters
