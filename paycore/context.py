"""The four-element business identity carried along the whole pay link.

``merchant_id``, ``order_type``, ``sub_type`` and ``pay_org_no`` are validated at
the edge, kept in a context variable for logs and metrics, and written on rows.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from .errors import InvalidContext

#: a context code (merchant id, order type, sub type, pay org): 1-32 letters, digits,
#: ``_ . -``, starting with a letter or digit (the OpenAPI document publishes it)
CODE_MAX = 32
CODE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
_CODE = re.compile(CODE_PATTERN)


def check_code(value: object, field: str) -> str:
    """A context code: 1-32 characters of letters, digits, ``_ . -``."""
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise InvalidContext(f"{field} must be 1-32 characters of [A-Za-z0-9_.-]", field=field)
    return value


@dataclass(frozen=True, slots=True)
class BizContext:
    """The four-element business identity of one request."""

    merchant_id: str
    order_type: str
    sub_type: str
    pay_org_no: str

    def __post_init__(self) -> None:
        check_code(self.merchant_id, "merchant_id")
        check_code(self.order_type, "order_type")
        check_code(self.sub_type, "sub_type")
        check_code(self.pay_org_no, "pay_org_no")

    def as_labels(self) -> dict[str, str]:
        return {
            "merchant_id": self.merchant_id,
            "order_type": self.order_type,
            "sub_type": self.sub_type,
            "pay_org_no": self.pay_org_no,
        }


_current: ContextVar[BizContext | None] = ContextVar("paywatch_biz_context", default=None)


def current_context() -> BizContext | None:
    """The business context of the request being served, if any."""
    return _current.get()


@contextlib.contextmanager
def use_context(ctx: BizContext) -> Iterator[BizContext]:
    """Bind ``ctx`` as the current business context for the enclosed block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
