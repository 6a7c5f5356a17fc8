"""Settings from ``PAYWATCH_*`` environment variables; URLs choose the backends."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Settings:
    """Everything the running system is built from."""

    database_url: str = "sqlite:///var/paywatch.db"
    redis_url: str | None = None
    replica_url: str | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    node_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"PAYWATCH_{name}")
            return value if value else None

        node = get("NODE_ID")
        return cls(
            database_url=get("DATABASE_URL") or cls.database_url,
            redis_url=get("REDIS_URL"),
            replica_url=get("REPLICA_URL"),
            prometheus_url=get("PROMETHEUS_URL"),
            alertmanager_url=get("ALERTMANAGER_URL"),
            node_id=int(node) if node else None,
        )

    def __repr__(self) -> str:  # secrets never reach logs
        return (
            f"Settings(database_url={_redact(self.database_url)!r}, "
            f"redis_url={_redact(self.redis_url)!r})"
        )
