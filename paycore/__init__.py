"""paycore: trades, pay orders, refunds, a double-entry ledger and the channel port.

The curated public API: :class:`PayCore` (the pay core built over a database; its
services are ``core.trades``, ``core.payments``, ``core.refunds`` and
``core.settlement``), the requests they take, the views they answer with, the channel
port a runtime wires in, and the database and id generator a core is built from.
Everything else is importable from its module and is an implementation detail; the money
rules are :mod:`paycore.postings`, :mod:`paycore.pay_rules`, :mod:`paycore.status` and
:mod:`paycore.settle_rules`.
"""

from .channels import ChannelPort, ChannelRequest, ChannelResult
from .context import BizContext
from .core import PayCore
from .db.engine import Database
from .ids import IdGenerator
from .models import (
    CreateTrade,
    PayOrderView,
    PayRequest,
    PayTool,
    RefundRequest,
    TradeDetail,
    TradeView,
)

__all__ = [
    "BizContext",
    "ChannelPort",
    "ChannelRequest",
    "ChannelResult",
    "CreateTrade",
    "Database",
    "IdGenerator",
    "PayCore",
    "PayOrderView",
    "PayRequest",
    "PayTool",
    "RefundRequest",
    "TradeDetail",
    "TradeView",
]
