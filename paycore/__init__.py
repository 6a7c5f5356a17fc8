"""paycore: trades, pay orders, refunds, a double-entry ledger and the channel port.

The curated public API; everything else is an implementation detail.
"""

from .channels import ChannelPort, ChannelRequest, ChannelResult
from .context import BizContext, current_context, use_context
from .core import PayCore
from .db.engine import Database
from .db.schema import metadata
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
    "current_context",
    "metadata",
    "use_context",
]
