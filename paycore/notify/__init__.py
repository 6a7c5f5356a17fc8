"""Merchant notifications: a transactional outbox and its best-effort HTTP delivery.

:func:`add_notification` writes the outbox row inside the transaction that changes
the order's state, so a notification exists if and only if the change committed.
:class:`NotificationDelivery` (run by the worker) POSTs due rows, signed with the
merchant's own secret, newest first, retrying on a growing schedule; a merchant checks
them with :func:`verify_notification`.
"""

from .delivery import DEFAULT_SCHEDULE, NotificationDelivery
from .outbox import add_notification
from .signing import verify_notification

__all__ = [
    "DEFAULT_SCHEDULE",
    "NotificationDelivery",
    "add_notification",
    "verify_notification",
]
