"""Bad PAYWATCH_* values fail with one readable line naming the variable, never a secret."""

from __future__ import annotations

import pytest

from runtime.errors import SettingsError
from runtime.settings import Settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PAYWATCH_NODE_ID": "abc"}, "PAYWATCH_NODE_ID must be a whole number from 0 to 1023"),
        ({"PAYWATCH_NODE_ID": "1024"}, "PAYWATCH_NODE_ID must be a whole number from 0 to 1023"),
        ({"PAYWATCH_NODE_ID": "-1"}, "PAYWATCH_NODE_ID must be a whole number from 0 to 1023"),
        ({"PAYWATCH_DATABASE_URL": "mysql://h/db"}, "PAYWATCH_DATABASE_URL must be a URL"),
        ({"PAYWATCH_DATABASE_URL": "var/paywatch.db"}, "PAYWATCH_DATABASE_URL must be a URL"),
        ({"PAYWATCH_REDIS_URL": "cache:6379"}, "PAYWATCH_REDIS_URL must be a URL"),
        ({"PAYWATCH_API_URL": "127.0.0.1:8000"}, "PAYWATCH_API_URL must be a URL"),
        ({"PAYWATCH_SANDBOX_URL": "ftp://h"}, "PAYWATCH_SANDBOX_URL must be a URL"),
        ({"PAYWATCH_PROMETHEUS_URL": "prom:9090"}, "PAYWATCH_PROMETHEUS_URL must be a URL"),
        ({"PAYWATCH_ALERTMANAGER_URL": "am"}, "PAYWATCH_ALERTMANAGER_URL must be a URL"),
        ({"PAYWATCH_COUPON_URL": "coupons"}, "PAYWATCH_COUPON_URL must be a URL"),
        ({"PAYWATCH_SHADOW_CHANNEL_URL": "x"}, "PAYWATCH_SHADOW_CHANNEL_URL must be a URL"),
        ({"PAYWATCH_CHANNEL_SECRETS": "SANDBOX_A"}, "PAYWATCH_CHANNEL_SECRETS must be ORG=secret"),
        ({"PAYWATCH_CHANNEL_SECRETS": "=s3"}, "PAYWATCH_CHANNEL_SECRETS must be ORG=secret"),
        ({"PAYWATCH_SHADOW": "maybe"}, "PAYWATCH_SHADOW must be 1 or 0"),
        ({"PAYWATCH_API_THREADS": "0"}, "PAYWATCH_API_THREADS must be a whole number"),
        ({"PAYWATCH_LINK_BUDGET_MS": "pay=10"}, "PAYWATCH_LINK_BUDGET_MS must be link."),
        ({"PAYWATCH_RISK_MAX_AMOUNT": "lots"}, "PAYWATCH_RISK_MAX_AMOUNT must be a whole number"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert isinstance(caught.value, ValueError)  # callers catching ValueError still do


def test_a_rejected_url_never_shows_its_password() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PAYWATCH_DATABASE_URL": "mysql://pay:hunter2@db/pay"})
    assert "hunter2" not in str(caught.value)
    assert "db/pay" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "attr", "value"),
    [
        ({"PAYWATCH_NODE_ID": " 0 "}, "node_id", 0),
        ({"PAYWATCH_NODE_ID": "1023"}, "node_id", 1023),
        ({"PAYWATCH_DATABASE_URL": "sqlite:///tmp/x.db"}, "database_url", "sqlite:///tmp/x.db"),
        (
            {"PAYWATCH_DATABASE_URL": "postgresql+psycopg://u@h/db"},
            "database_url",
            "postgresql+psycopg://u@h/db",
        ),
        ({"PAYWATCH_REDIS_URL": "rediss://h:6380/0"}, "redis_url", "rediss://h:6380/0"),
        ({"PAYWATCH_COUPON_URL": "off"}, "coupon_url", "off"),
        ({"PAYWATCH_COUPON_URL": "https://c.example"}, "coupon_url", "https://c.example"),
        ({"PAYWATCH_CHANNEL_SECRETS": "A=x, B=y=z"}, "channel_secrets", {"A": "x", "B": "y=z"}),
    ],
)
def test_good_values_pass(env: dict[str, str], attr: str, value: object) -> None:
    assert getattr(Settings.from_env(env), attr) == value
