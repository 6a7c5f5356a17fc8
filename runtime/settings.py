"""Settings from ``PAYWATCH_*`` environment variables; URLs choose the backends."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import SettingsError
from .settings_values import (
    RISK_LIMITS,
    _budgets,
    _channel_secrets,
    _count,
    _flag,
    _node_id,
    _redact,
    _risk_policy,
    _url,
)

__all__ = ["ALERT_EVALUATIONS", "RISK_LIMITS", "Settings", "_redact"]

if TYPE_CHECKING:
    from paycore.risk import RiskPolicy


ALERT_EVALUATIONS = ("paywatch", "prometheus", "cross-check")


def _alert_evaluation(value: str | None) -> str:
    """``PAYWATCH_ALERT_EVALUATION``: one of :data:`ALERT_EVALUATIONS`."""
    if value is None:
        return ALERT_EVALUATIONS[0]
    mode = value.strip().lower()
    if mode not in ALERT_EVALUATIONS:
        raise SettingsError(
            f"PAYWATCH_ALERT_EVALUATION must be one of {', '.join(ALERT_EVALUATIONS)}"
        )
    return mode


def _default_risk_policy() -> RiskPolicy:
    from paycore.risk.policy import RiskPolicy

    return RiskPolicy()


@dataclass(frozen=True)
class Settings:
    """Everything the running system is built from."""

    database_url: str = "sqlite:///var/paywatch.db"
    redis_url: str | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    #: what Alertmanager is told (``alerts.alertmanager``): the console's base URL, its
    #: alert view being each alert's ``generatorURL`` (``PAYWATCH_CONSOLE_URL``); where
    #: docs/runbook.md is served, for ``runbook_url`` (``PAYWATCH_RUNBOOK_BASE_URL``;
    #: default the local file); the ``service`` and ``env`` labels on every alert
    #: (``PAYWATCH_SERVICE``, ``PAYWATCH_ENV``); how often firing alerts are re-sent, s
    #: (``PAYWATCH_ALERTMANAGER_RESEND_S``, 1 .. 3600; they expire after 4 intervals)
    console_url: str = "http://127.0.0.1:8501"
    runbook_base_url: str | None = None
    service: str = "paywatch"
    env: str = "dev"
    alertmanager_resend_s: int = 60
    #: who evaluates the alert rules (``PAYWATCH_ALERT_EVALUATION``): ``paywatch`` (the
    #: engine evaluates and notifies), ``prometheus`` (the exported rules do; the engine
    #: stands down) or ``cross-check`` (the engine evaluates without notifying and counts
    #: where its firing set and Prometheus's ``ALERTS`` disagree)
    alert_evaluation: str = "paywatch"
    node_id: int | None = None
    api_url: str = "http://127.0.0.1:8000"
    sandbox_url: str = "http://127.0.0.1:8100"
    pay_orgs: tuple[str, ...] = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
    channel_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    var_dir: str = "var"
    notify_secret_value: str | None = field(default=None, repr=False)
    sandbox_admin_token_value: str | None = field(default=None, repr=False)
    #: the coupon service (``PAYWATCH_COUPON_URL``; default: the sandbox's, which hosts
    #: one) and its signing secret (``PAYWATCH_COUPON_SECRET``, else generated once under
    #: ``var_dir``); ``PAYWATCH_COUPON_URL=off``: no coupon service (coupon parts 503)
    coupon_url: str | None = None
    coupon_secret_value: str | None = field(default=None, repr=False)
    #: serve requests marked ``X-Paywatch-Shadow: 1`` from the shadow tables (built on
    #: the first such request); off: they are refused with 403 (``PAYWATCH_SHADOW=0``)
    shadow: bool = True
    #: the sandbox channel shadow orders are sent to (default: ``sandbox_url``)
    shadow_channel_url: str | None = None
    #: threads serving the API's pay core calls in one process (``PAYWATCH_API_THREADS``)
    api_threads: int = 8
    #: the risk engine's limits (``PAYWATCH_RISK_MAX_AMOUNT``, ``..._MAX_PER_MINUTE``,
    #: ``..._DAILY_MAX_COUNT``, ``..._DAILY_MAX_AMOUNT``, ``..._FALLBACK_MAX_AMOUNT``,
    #: ``..._BLOCKLIST_REFRESH_S``)
    risk_policy: RiskPolicy = field(default_factory=_default_risk_policy)
    #: prefix of the risk counters' keys in Redis (``PAYWATCH_RISK_NAMESPACE``)
    risk_namespace: str = "paywatch:risk:"
    #: minutes without a click after which a console session ends
    #: (``PAYWATCH_CONSOLE_IDLE_MINUTES``, 1 .. 720)
    console_idle_minutes: int = 30
    #: each core link's budget, ms (``PAYWATCH_LINK_BUDGET_MS``, ``link.pay=8000,...``,
    #: over :data:`stability.effective.DEFAULT_LINK_BUDGETS_MS`): the longest one call of
    #: the link may take, what its caller must be ready to wait; the timeout lint sums
    #: what the link calls one after another against it
    link_budgets_ms: dict[str, int] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"PAYWATCH_{name}")
            return value if value else None

        secrets = _channel_secrets(get("CHANNEL_SECRETS"))
        orgs = tuple(o.strip() for o in (get("PAY_ORGS") or "").split(",") if o.strip())
        return cls(
            api_url=_url("API_URL", get("API_URL")) or cls.api_url,
            sandbox_url=_url("SANDBOX_URL", get("SANDBOX_URL")) or cls.sandbox_url,
            pay_orgs=orgs or cls.pay_orgs,
            channel_secrets=secrets,
            var_dir=get("VAR_DIR") or cls.var_dir,
            notify_secret_value=get("NOTIFY_SECRET"),
            sandbox_admin_token_value=get("SANDBOX_ADMIN_TOKEN"),
            coupon_url=_url("COUPON_URL", get("COUPON_URL")),
            coupon_secret_value=get("COUPON_SECRET"),
            database_url=_url("DATABASE_URL", get("DATABASE_URL")) or cls.database_url,
            redis_url=_url("REDIS_URL", get("REDIS_URL")),
            prometheus_url=_url("PROMETHEUS_URL", get("PROMETHEUS_URL")),
            alertmanager_url=_url("ALERTMANAGER_URL", get("ALERTMANAGER_URL")),
            console_url=get("CONSOLE_URL") or cls.console_url,
            runbook_base_url=get("RUNBOOK_BASE_URL"),
            service=get("SERVICE") or cls.service,
            env=get("ENV") or cls.env,
            alertmanager_resend_s=_count(
                "ALERTMANAGER_RESEND_S", get("ALERTMANAGER_RESEND_S"), 60, 3600
            ),
            alert_evaluation=_alert_evaluation(get("ALERT_EVALUATION")),
            node_id=_node_id(get("NODE_ID")),
            shadow=_flag("SHADOW", get("SHADOW"), cls.shadow),
            shadow_channel_url=_url("SHADOW_CHANNEL_URL", get("SHADOW_CHANNEL_URL")),
            api_threads=_count("API_THREADS", get("API_THREADS"), cls.api_threads, 256),
            risk_policy=_risk_policy(get),
            risk_namespace=get("RISK_NAMESPACE") or cls.risk_namespace,
            console_idle_minutes=_count(
                "CONSOLE_IDLE_MINUTES", get("CONSOLE_IDLE_MINUTES"), cls.console_idle_minutes, 720
            ),
            link_budgets_ms=_budgets(get("LINK_BUDGET_MS")),
        )

    def resolved_channel_secrets(self) -> dict[str, str]:
        """Per pay org HMAC secrets: from ``PAYWATCH_CHANNEL_SECRETS``, else a file under
        ``var_dir`` created once with random secrets (the embedded default)."""
        if self.channel_secrets:
            return dict(self.channel_secrets)
        import json
        import secrets as _secrets
        from pathlib import Path

        path = Path(self.var_dir) / "channel_secrets.json"
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = [o for o in self.pay_orgs if o not in known]
        if missing:
            known.update({o: _secrets.token_urlsafe(32) for o in missing})
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known))
            path.chmod(0o600)
        return {o: known[o] for o in self.pay_orgs}

    def notify_secret(self) -> str:
        """The key merchant notifications are signed with (``PAYWATCH_NOTIFY_SECRET``,
        else generated once under ``var_dir``)."""
        if self.notify_secret_value:
            return self.notify_secret_value
        return self._generated("notify_secret")

    def sandbox_admin_token(self) -> str:
        """The token of the sandbox channel's fault knobs (``PAYWATCH_SANDBOX_ADMIN_TOKEN``,
        else generated once under ``var_dir``, so the sandbox, the console and
        ``paywatch simulate`` sharing a var dir agree without a well-known default)."""
        return self.sandbox_admin_token_value or self._generated("sandbox_admin_token")

    def resolved_coupon_url(self) -> str | None:
        """Where the coupon service is: ``coupon_url``, else the sandbox's; None: off."""
        url = self.coupon_url or self.sandbox_url
        return None if url.strip().lower() == "off" else url

    def coupon_secret(self) -> str:
        """The key the coupon service's requests are signed with (``PAYWATCH_COUPON_SECRET``,
        else generated once under ``var_dir``, shared by the sandbox that hosts it)."""
        return self.coupon_secret_value or self._generated("coupon_secret")

    def _generated(self, name: str) -> str:
        import secrets as _secrets
        from pathlib import Path

        path = Path(self.var_dir) / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def __repr__(self) -> str:  # secrets never reach logs
        return (
            f"Settings(database_url={_redact(self.database_url)!r}, "
            f"redis_url={_redact(self.redis_url)!r})"
        )
