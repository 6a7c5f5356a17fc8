"""Parsing and checking ``PAYWATCH_*`` values for :mod:`runtime.settings`.

Each parser takes the raw value (None when unset) and returns the typed one, or raises
:class:`runtime.errors.SettingsError` with one line that names the variable and what it
must be, never the secret it may carry (URLs are shown redacted).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import SettingsError

if TYPE_CHECKING:
    from paycore.risk import RiskPolicy

_SECRET_PARAM = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|key)=[^&;]*")


def _redact(url: str | None) -> str | None:
    """A URL safe to log: passwords (in the authority or the query) are replaced."""
    if not url:
        return url
    url = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", url)
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


_FLAGS = {
    "1": True,
    "true": True,
    "on": True,
    "yes": True,
    "0": False,
    "false": False,
    "off": False,
    "no": False,
}


def _flag(name: str, value: str | None, default: bool) -> bool:
    """A boolean ``PAYWATCH_<name>``: 1/0, true/false, on/off, yes/no."""
    if value is None:
        return default
    try:
        return _FLAGS[value.strip().lower()]
    except KeyError:
        raise SettingsError(
            f"PAYWATCH_{name} must be 1 or 0 (true/false, on/off, yes/no)"
        ) from None


def _count(name: str, value: str | None, default: int, most: int) -> int:
    """A whole number ``PAYWATCH_<name>`` from 1 to ``most``."""
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= most:
        raise SettingsError(f"PAYWATCH_{name} must be a whole number from 1 to {most}")
    return n


def _node_id(value: str | None) -> int | None:
    """``PAYWATCH_NODE_ID``: this process's id generator node, 0 .. ``MAX_NODE``."""
    if value is None:
        return None
    from paycore.ids import MAX_NODE

    try:
        node = int(value.strip())
    except ValueError:
        node = -1
    if not 0 <= node <= MAX_NODE:
        raise SettingsError(
            f"PAYWATCH_NODE_ID must be a whole number from 0 to {MAX_NODE}, "
            f"distinct per process (got {value!r})"
        )
    return node


#: the URL schemes each URL variable accepts (a driver suffix such as ``+psycopg`` allowed)
_URL_SCHEMES = {
    "DATABASE_URL": ("sqlite", "postgresql"),
    "REDIS_URL": ("redis", "rediss", "unix"),
    "API_URL": ("http", "https"),
    "SANDBOX_URL": ("http", "https"),
    "PROMETHEUS_URL": ("http", "https"),
    "ALERTMANAGER_URL": ("http", "https"),
    "SHADOW_CHANNEL_URL": ("http", "https"),
    "COUPON_URL": ("http", "https"),
}


def _url(name: str, value: str | None) -> str | None:
    """A ``PAYWATCH_<name>`` URL whose scheme is one :data:`_URL_SCHEMES` allows."""
    if value is None or (name == "COUPON_URL" and value.strip().lower() == "off"):
        return value
    schemes = _URL_SCHEMES[name]
    scheme, sep, rest = value.strip().partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in schemes or not rest:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise SettingsError(
            f"PAYWATCH_{name} must be a URL starting with {allowed} (got {_redact(value)!r})"
        )
    return value.strip()


def _channel_secrets(raw: str | None) -> dict[str, str]:
    """``PAYWATCH_CHANNEL_SECRETS``: ``ORG=secret`` pairs, comma-separated."""
    secrets: dict[str, str] = {}
    for pair in (raw or "").split(","):
        if not pair.strip():
            continue
        org, sep, secret = pair.partition("=")
        if not sep or not org.strip() or not secret.strip():
            raise SettingsError(
                "PAYWATCH_CHANNEL_SECRETS must be ORG=secret pairs, comma-separated"
            )
        secrets[org.strip()] = secret.strip()
    return secrets


#: ``PAYWATCH_RISK_<name>`` -> the :class:`paycore.risk.RiskPolicy` field it sets
RISK_LIMITS = {
    "MAX_AMOUNT": "max_amount",
    "MAX_PER_MINUTE": "max_per_user_per_minute",
    "DAILY_MAX_COUNT": "daily_max_count",
    "DAILY_MAX_AMOUNT": "daily_max_amount",
    "FALLBACK_MAX_AMOUNT": "fallback_max_amount",
}


def _risk_policy(get: Callable[[str], str | None]) -> RiskPolicy:
    """The risk limits from ``PAYWATCH_RISK_*`` (whole minor units / counts), validated."""
    from paycore.risk.policy import LIMIT_MAX, RiskPolicy

    values: dict[str, Any] = {}
    for env, name in RISK_LIMITS.items():
        raw = get(f"RISK_{env}")
        if raw is not None:
            values[name] = _count(f"RISK_{env}", raw.strip(), 0, LIMIT_MAX)
    refresh = get("RISK_BLOCKLIST_REFRESH_S")
    if refresh is not None:
        try:
            values["blocklist_refresh_s"] = float(refresh)
        except ValueError:
            values["blocklist_refresh_s"] = 0.0
        if not 0 < values["blocklist_refresh_s"] <= 3600:
            raise SettingsError("PAYWATCH_RISK_BLOCKLIST_REFRESH_S must be seconds in (0, 3600]")
    default = RiskPolicy()
    if values.get("fallback_max_amount", default.fallback_max_amount) > values.get(
        "max_amount", default.max_amount
    ):
        raise SettingsError(
            "PAYWATCH_RISK_FALLBACK_MAX_AMOUNT must not exceed PAYWATCH_RISK_MAX_AMOUNT"
        )
    return RiskPolicy(**values)


def _budgets(raw: str | None) -> dict[str, int]:
    """``PAYWATCH_LINK_BUDGET_MS``: ``link=ms`` pairs, comma-separated, ms from 1 to 600000."""
    out: dict[str, int] = {}
    for pair in (raw or "").split(","):
        if not pair.strip():
            continue
        link, _, ms = pair.partition("=")
        if not link.strip().startswith("link."):
            raise SettingsError("PAYWATCH_LINK_BUDGET_MS must be link.<name>=<ms> pairs")
        out[link.strip()] = _count("LINK_BUDGET_MS", ms.strip(), 0, 600_000)
    return out
