"""Reconciliation: internal (trade ↔ pay ↔ ledger, every minute) and external (T+1,
against the channel's daily statement). Both record differences with a resolution
path and are idempotent: re-running adds nothing."""

from .external import CLASSES, RESOLUTION, day_over, reconcile_day
from .internal import reconcile_internal
from .runs import ReconReport

__all__ = [
    "CLASSES",
    "RESOLUTION",
    "ReconReport",
    "day_over",
    "reconcile_day",
    "reconcile_internal",
]
