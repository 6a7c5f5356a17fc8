"""Merchant notifications: a transactional outbox and its best-effort HTTP delivery.

:func:`add_notification` writes the outbox row inside the transaction that changes
the order's state, so a notification exists if and only if the change committed.
:class:`NotificationDelivery` (run by the worker) POSTs due rows, signed, newest
first, retrying on a growing schedule.
"""

from .delivery import DEFAULT_SCHEDULE, NotificationDelivery, envelope
from .outbox import EVENT_TYPES, add_notification, merchant_notify_url, notify_pay_order

__all__ = [
    "DEFAULT_SCHEDULE",
    "EVENT_TYPES",
    "NotificationDelivery",
    "add_notification",
    "envelope",
    "merchant_notify_url",
    "notify_pay_order",
]
