"""Settings come from PAYWATCH_* variables; secrets never show in repr."""

from __future__ import annotations

import pytest

from runtime.settings import Settings

PASSWORD = "s3cret"


def test_defaults_from_empty_environment() -> None:
    s = Settings.from_env({})
    assert s.database_url.startswith("sqlite:///var/")
    assert s.database_url.endswith(".db")
    assert s.redis_url is None
    assert not hasattr(s, "replica_url")  # no replica setting: nothing would read it
    assert s.prometheus_url is None
    assert s.alertmanager_url is None
    assert s.node_id is None
    assert Settings().database_url == s.database_url


def test_reads_paywatch_variables() -> None:
    s = Settings.from_env(
        {
            "PAYWATCH_DATABASE_URL": "postgresql+psycopg://u@db.internal/pay",
            "PAYWATCH_REDIS_URL": "redis://cache:6379/0",
            "PAYWATCH_NODE_ID": "17",
            "PAYWATCH_PROMETHEUS_URL": "http://prom:9090",
            "PAYWATCH_ALERTMANAGER_URL": "http://am:9093",
        }
    )
    assert s.database_url == "postgresql+psycopg://u@db.internal/pay"
    assert s.redis_url == "redis://cache:6379/0"
    assert s.node_id == 17
    assert type(s.node_id) is int
    assert s.prometheus_url == "http://prom:9090"
    assert s.alertmanager_url == "http://am:9093"


def test_ignores_unprefixed_variables() -> None:
    s = Settings.from_env({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://r"})
    assert s.database_url.startswith("sqlite:///var/")
    assert s.redis_url is None


def test_empty_values_count_as_unset() -> None:
    s = Settings.from_env(
        {
            "PAYWATCH_DATABASE_URL": "",
            "PAYWATCH_REDIS_URL": "",
            "PAYWATCH_NODE_ID": "",
        }
    )
    assert s == Settings.from_env({})
    assert s.database_url.startswith("sqlite:///var/")
    assert s.redis_url is None and s.node_id is None


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWATCH_REDIS_URL", "redis://from-env:6379/1")
    monkeypatch.setenv("PAYWATCH_NODE_ID", "3")
    monkeypatch.delenv("PAYWATCH_DATABASE_URL", raising=False)
    s = Settings.from_env()
    assert s.redis_url == "redis://from-env:6379/1"
    assert s.node_id == 3
    assert s.database_url.startswith("sqlite:///var/")


def test_settings_are_immutable() -> None:
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.database_url = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "host"),
    [
        ({"PAYWATCH_DATABASE_URL": f"postgresql+psycopg://u:{PASSWORD}@h/db"}, "h/db"),
        (
            {"PAYWATCH_DATABASE_URL": f"postgresql+psycopg://pay:{PASSWORD}@pg.internal:5432/pay"},
            "pg.internal:5432/pay",
        ),
        ({"PAYWATCH_REDIS_URL": f"redis://:{PASSWORD}@cache:6379/0"}, "cache:6379/0"),
        ({"PAYWATCH_REDIS_URL": f"rediss://default:{PASSWORD}@cache:6380/2"}, "cache:6380/2"),
        ({"PAYWATCH_DATABASE_URL": f"postgresql://u:p@{PASSWORD}@h/db"}, "h/db"),
    ],
)
def test_repr_never_contains_the_password(env: dict[str, str], host: str) -> None:
    s = Settings.from_env(env)
    text = repr(s)
    assert PASSWORD not in text
    assert PASSWORD not in str(s)
    assert PASSWORD not in f"{s!r} {s}"
    assert host in text  # still useful for operators
    # the url itself is kept intact for the code that connects
    assert PASSWORD in (s.database_url + (s.redis_url or ""))


def test_repr_keeps_urls_without_credentials() -> None:
    s = Settings.from_env({"PAYWATCH_REDIS_URL": "redis://cache:6379/0"})
    assert "redis://cache:6379/0" in repr(s)
    assert "sqlite:///var/" in repr(s)


def test_repr_hides_password_given_as_query_parameter() -> None:
    url = f"postgresql+psycopg://u@h/db?password={PASSWORD}"
    s = Settings.from_env({"PAYWATCH_DATABASE_URL": url})
    assert PASSWORD not in repr(s)


def test_sandbox_admin_token_is_generated_once_and_shared(tmp_path):
    from runtime.settings import Settings

    a = Settings(var_dir=str(tmp_path)).sandbox_admin_token()
    b = Settings.from_env({"PAYWATCH_VAR_DIR": str(tmp_path)}).sandbox_admin_token()
    assert a == b and len(a) >= 32 and a != "sandbox-admin"
    assert (tmp_path / "sandbox_admin_token").stat().st_mode & 0o077 == 0
    env = {"PAYWATCH_VAR_DIR": str(tmp_path), "PAYWATCH_SANDBOX_ADMIN_TOKEN": "from-env"}
    assert Settings.from_env(env).sandbox_admin_token() == "from-env"
    assert "from-env" not in repr(Settings.from_env(env))


def test_api_threads_default_and_override() -> None:
    assert Settings.from_env({}).api_threads == 8
    assert Settings.from_env({"PAYWATCH_API_THREADS": "4"}).api_threads == 4


@pytest.mark.parametrize("value", ["0", "-1", "257", "four", "2.5"])
def test_api_threads_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="PAYWATCH_API_THREADS must be a whole number"):
        Settings.from_env({"PAYWATCH_API_THREADS": value})
