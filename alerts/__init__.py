"""Alerts: threshold and SLO burn-rate rules, lifecycle, silences, notifiers, export.

Nothing is built at import time; the composition root (``console``) creates an
:class:`AlertEngine` over a database engine and a :class:`collectors.query.MetricsQuery`.
"""

from __future__ import annotations

from .alertmanager import AlertmanagerNotifier, AlertmanagerSync
from .base import DEFAULT_WINDOWS, BurnWindow, Rule
from .burnrate import BurnRateRule
from .defaults import build_default_rules, default_rules
from .engine import AlertEngine, EvalResult
from .errors import AlertsError, NotifyError, RuleError, SilenceError
from .export import emit_yaml, rule_groups, to_prometheus_rules
from .model import Alert, Delivery, Instance, Notification, NotificationRecord, Transition
from .notify import MultiNotifier, Notifier, WebhookNotifier
from .rules import ThresholdRule
from .silences import Silence, SilenceStore
from .spec import MinTraffic, QuerySpec

__all__ = [
    "DEFAULT_WINDOWS",
    "Alert",
    "AlertEngine",
    "AlertmanagerNotifier",
    "AlertmanagerSync",
    "AlertsError",
    "BurnRateRule",
    "BurnWindow",
    "Delivery",
    "EvalResult",
    "Instance",
    "MinTraffic",
    "MultiNotifier",
    "Notification",
    "NotificationRecord",
    "Notifier",
    "NotifyError",
    "QuerySpec",
    "Rule",
    "RuleError",
    "Silence",
    "SilenceError",
    "SilenceStore",
    "ThresholdRule",
    "Transition",
    "WebhookNotifier",
    "build_default_rules",
    "default_rules",
    "emit_yaml",
    "rule_groups",
    "to_prometheus_rules",
]
