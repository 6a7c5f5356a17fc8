"""The ``ledger_posting`` task: post one journal entry later, exactly once.

Payload ``{biz_type, biz_key, currency, context, legs, trade_id, memo}``; one that
cannot be posted is a business failure. The completion is recorded in the posting's
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from ..context import BizContext
from ..ledger import Ledger
from ..ledger.accounts import AccountRef
from ..ledger.journal import Leg
from ..ledger.subjects import SUBJECTS
from .errors import BusinessFailure


def ledger_posting_payload(
    *,
    biz_type: str,
    biz_key: str,
    ctx: BizContext,
    currency: str,
    legs: Sequence[Leg],
    trade_id: int | None = None,
    memo: str = "",
) -> dict[str, Any]:
    """The payload of a ``ledger_posting`` task (enqueue it with biz_key ``type:key``)."""
    return {
        "biz_type": biz_type,
        "biz_key": biz_key,
        "currency": currency,
        "trade_id": trade_id,
        "memo": memo,
        "context": ctx.as_labels(),
        "legs": [
            {
                "owner_type": g.account.owner_type,
                "owner_id": g.account.owner_id,
                "subject_code": g.account.subject.code,
                "currency": g.account.currency,
                "amount": g.amount,
            }
            for g in legs
        ],
    }


def post_entry(ledger: Ledger, s: Session, p: dict[str, Any]) -> int | None:
    """Post the entry a ``ledger_posting`` payload describes, in session ``s``."""
    try:
        legs = [
            Leg(
                AccountRef(
                    str(g["owner_type"]),
                    str(g["owner_id"]),
                    SUBJECTS[str(g["subject_code"])],
                    str(g["currency"]),
                ),
                int(g["amount"]),
            )
            for g in p["legs"]
        ]
        ctx = BizContext(**{k: str(v) for k, v in p["context"].items()})
        biz_type, biz_key, currency = str(p["biz_type"]), str(p["biz_key"]), str(p["currency"])
        trade_id = None if p.get("trade_id") is None else int(p["trade_id"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BusinessFailure(f"malformed ledger_posting payload: {e!r}") from e
    return ledger.post(
        s,
        biz_type=biz_type,
        biz_key=biz_key,
        ctx=ctx,
        currency=currency,
        legs=legs,
        trade_id=trade_id,
        memo=str(p.get("memo", "")),
    )
