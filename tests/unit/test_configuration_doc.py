"""docs/configuration.md lists every PAYWATCH_* variable the code reads, and only those.

"Read" is what the source shows: a ``"PAYWATCH_..."`` string literal anywhere in the
packages or ``bench/`` (``os.environ.get``, constants such as ``FORMAT_ENV``), the
``get("NAME")`` calls of :meth:`runtime.settings.Settings.from_env` and its parsers
(which add the prefix) and the risk limits it reads by table (:data:`runtime.settings.RISK_LIMITS`).
A new variable fails this test until it is documented; a removed one until its row goes.
"""

from __future__ import annotations

import re
from pathlib import Path

from runtime.settings import RISK_LIMITS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
#: the packages and the benchmarks (tests set variables, they do not define them)
SOURCES = [
    "backends",
    "collectors",
    "stability",
    "alerts",
    "paycore",
    "simulator",
    "console",
    "runtime",
    "bench",
]
LITERAL = re.compile(r"""["']PAYWATCH_([A-Z0-9_]*[A-Z0-9])["']""")
SETTINGS_GET = re.compile(r"""\bget\(\s*["']([A-Z0-9_]*[A-Z0-9])["']\s*\)""")
#: where ``get("NAME")`` reads ``PAYWATCH_NAME`` (Settings.from_env and its parsers)
SETTINGS_FILES = ("runtime/settings.py", "runtime/settings_values.py")
DOCUMENTED = re.compile(r"`(PAYWATCH_[A-Z0-9_]*[A-Z0-9])`")


def read_by_code() -> dict[str, set[str]]:
    """Each variable the code reads -> the files that read it."""
    found: dict[str, set[str]] = {}
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            names = {f"PAYWATCH_{m}" for m in LITERAL.findall(text)}
            if path.relative_to(ROOT).as_posix() in SETTINGS_FILES:
                names |= {f"PAYWATCH_{m}" for m in SETTINGS_GET.findall(text)}
                names |= {f"PAYWATCH_RISK_{k}" for k in RISK_LIMITS}
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def documented() -> set[str]:
    return set(DOCUMENTED.findall(DOC.read_text(encoding="utf-8")))


def test_the_scan_sees_the_known_ways_of_reading() -> None:
    found = read_by_code()
    assert "runtime/settings.py" in found["PAYWATCH_DATABASE_URL"]  # get("DATABASE_URL")
    assert "runtime/settings.py" in found["PAYWATCH_RISK_DAILY_MAX_COUNT"]  # RISK_LIMITS
    assert "paycore/ids.py" in found["PAYWATCH_NODE_ID"]  # os.environ.get
    assert "runtime/switch_cli.py" in found["PAYWATCH_ADMIN_TOKEN_FILE"]
    assert "bench/guard.py" in found["PAYWATCH_BENCH_REDIS_URL"]
    assert len(found) > 30


def test_every_variable_read_is_documented() -> None:
    missing = {k: sorted(v) for k, v in read_by_code().items() if k not in documented()}
    assert not missing, f"add these to docs/configuration.md: {missing}"


def test_every_documented_variable_is_read() -> None:
    stale = sorted(documented() - set(read_by_code()))
    assert not stale, f"docs/configuration.md lists variables nothing reads: {stale}"


def test_the_var_dir_is_documented_and_the_replica_url_is_gone() -> None:
    assert "PAYWATCH_VAR_DIR" in documented()
    assert "PAYWATCH_REPLICA_URL" not in read_by_code()
    for doc in (ROOT / "docs").glob("*.md"):
        assert "PAYWATCH_REPLICA_URL" not in doc.read_text(encoding="utf-8"), doc.name
