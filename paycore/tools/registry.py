"""The pay tools the pay core knows, and what it asks of them as a set.

The services reach the registry through ``CoreDeps.tools`` (:func:`tools_of`) and the
tools' environment through ``CoreDeps.tool_env`` (:func:`env_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from stability.errors import DependencyFailed

from ..db.schema import PayItem
from ..models import PayTool, TradeView
from ..pay_rules import PAY_TYPE, check_tools
from .balance import BalanceTool
from .base import ToolEnv, ToolPlugin
from .channel import ChannelTool
from .errors import ToolSkipped, UnknownTool
from .points import PointsTool

log = logging.getLogger(__name__)


class ToolRegistry:
    """Tool name -> :class:`ToolPlugin`. Registering a tool is all it takes for the pay
    core to pay, refund and compensate with it."""

    def __init__(self, tools: Iterable[ToolPlugin] = ()) -> None:
        self._tools: dict[str, ToolPlugin] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: ToolPlugin) -> None:
        """Add ``tool`` (replacing one of the same name)."""
        PayTool(tool.name, 1)  # the name must be one a pay item can hold
        self._tools[tool.name] = tool

    def get(self, name: str) -> ToolPlugin:
        """The tool called ``name``, else :class:`UnknownTool` (``invalid_pay_tools``)."""
        tool = self._tools.get(name)
        if tool is None:
            raise UnknownTool(f"unknown pay tool {name!r}; one of {', '.join(self.names())}")
        return tool

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._tools))

    def __iter__(self) -> Iterator[ToolPlugin]:
        return iter([self._tools[n] for n in self.names()])

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def allowed(self) -> dict[str, frozenset[str]]:
        """Trade type -> the names of the tools that may pay it."""
        return {
            t: frozenset(n for n, tool in self._tools.items() if t in tool.trade_types)
            for t in PAY_TYPE
        }

    def check(
        self,
        trade_type: str,
        parts: Sequence[PayTool],
        trade_amount: int,
        trade: TradeView | None = None,
    ) -> None:
        """Raise unless ``parts`` may pay a ``trade_type`` trade of ``trade_amount``: known
        tools, each at most once and allowed for the trade type, adding up to the amount;
        with ``trade``, each tool's own :meth:`ToolPlugin.validate` too."""
        tools = [self.get(p.tool) for p in parts]
        check_tools(trade_type, [(p.tool, p.amount) for p in parts], trade_amount, self.allowed())
        if trade is not None:
            for tool, part in zip(tools, parts, strict=True):
                tool.validate(trade, part)

    def prepare_parts(
        self,
        env: ToolEnv,
        trade: TradeView,
        parts: Sequence[PayTool],
        key_prefix: str,
        *,
        allow_skip: bool,
    ) -> tuple[list[PayTool], list[str]]:
        """Call each part's :meth:`ToolPlugin.prepare` (key ``<key_prefix>:<seq>``), before
        the pay transaction. A :class:`ToolSkipped` part, when ``allow_skip``, folds its
        amount into the first part whose tool ``absorbs`` (a channel part first); returns
        the parts to pay with and the names skipped. Not allowed, or no part to absorb
        it: :class:`~stability.errors.DependencyFailed` (503) naming the tool's resource,
        and whatever was reserved already is released."""
        prepared: list[PayTool] = []
        skipped: list[tuple[int, PayTool, ToolSkipped]] = []
        try:
            for seq, part in enumerate(parts):
                tool = self.get(part.tool)
                try:
                    prepared.append(tool.prepare(env, trade, part, f"{key_prefix}:{seq}"))
                except ToolSkipped as e:
                    skipped.append((len(prepared), part, e))
            if not skipped:
                return prepared, []
            return self._fold(trade, prepared, skipped, allow_skip)
        except BaseException:
            self.release_parts(env, trade, prepared)
            raise

    def _fold(
        self,
        trade: TradeView,
        prepared: list[PayTool],
        skipped: list[tuple[int, PayTool, ToolSkipped]],
        allow_skip: bool,
    ) -> tuple[list[PayTool], list[str]]:
        absorbers = sorted(
            (i for i, p in enumerate(prepared) if self.get(p.tool).absorbs),
            key=lambda i: (not self.get(prepared[i].tool).settles_by_channel, i),
        )
        if not allow_skip or not absorbers:
            _, part, e = skipped[0]
            resource = e.resource or self.get(part.tool).resource(trade.pay_org_no) or part.tool
            why = "no part can take its amount" if allow_skip else "the merchant pays with it"
            raise DependencyFailed(
                f"{resource} is unavailable and {why}", resource=resource, reason="error"
            ) from e
        into = absorbers[0]
        extra = sum(part.amount for _, part, _ in skipped)
        target = prepared[into]
        prepared[into] = PayTool(target.tool, target.amount + extra, target.ref)
        return prepared, [part.tool for _, part, _ in skipped]

    def release_parts(self, env: ToolEnv, trade: TradeView, parts: Sequence[PayTool]) -> None:
        """Give back what preparing ``parts`` reserved (a pay order that was not begun).
        The items handed to :meth:`ToolPlugin.release` were never stored: ``id`` and
        ``pay_order_id`` are None."""
        for seq, part in enumerate(parts):
            item = PayItem(
                merchant_id=trade.merchant_id,
                seq=seq,
                tool=part.tool,
                amount=part.amount,
                tool_ref=part.ref,
                refunded_amount=0,
            )
            self.release(env, item)

    def release(self, env: ToolEnv, item: PayItem) -> None:
        """The item's tool's :meth:`ToolPlugin.release`, never raising."""
        try:
            tool = self._tools.get(item.tool)
            if tool is not None:
                tool.release(env, item)
        except Exception:  # weak by contract: a reservation left is a human's, not a 500
            log.exception("releasing pay item %s (%s) failed", item.id, item.tool)

    def release_after_commit(self, s: Session, env: ToolEnv, items: Sequence[PayItem]) -> None:
        """Release ``items``' reservations once ``s``'s transaction has committed (the
        money went back for good); nothing when it rolls back."""
        if not items:
            return
        todo = [_detached(i) for i in items]

        def _after(_: Session) -> None:
            for item in todo:
                self.release(env, item)

        event.listen(s, "after_commit", _after, once=True)


def _detached(item: PayItem) -> PayItem:
    """A copy of ``item``'s values that outlives its session."""
    return PayItem(
        id=item.id,
        pay_order_id=item.pay_order_id,
        merchant_id=item.merchant_id,
        seq=item.seq,
        tool=item.tool,
        status=item.status,
        amount=item.amount,
        refunded_amount=item.refunded_amount,
        origin_item_id=item.origin_item_id,
        pay_org_no=item.pay_org_no,
        channel_txn_no=item.channel_txn_no,
        tool_ref=item.tool_ref,
        settled_amount=item.settled_amount,
        created_at=item.created_at,
    )


def default_registry() -> ToolRegistry:
    """The built-in tools: balance, channel, points, and coupon when it is installed."""
    tools: list[ToolPlugin] = [BalanceTool(), ChannelTool(), PointsTool()]
    try:
        from .coupon import CouponTool  # noqa: PLC0415 - written by the coupon helper
    except ModuleNotFoundError as e:  # until paycore/tools/coupon.py lands
        if e.name != f"{__package__}.coupon":
            raise
    else:
        tools.append(CouponTool())
    return ToolRegistry(tools)


@cache
def _shared_default() -> ToolRegistry:
    return default_registry()


def tools_of(deps: Any) -> ToolRegistry:
    """``deps.tools``, or the default tools when none were given."""
    tools = getattr(deps, "tools", None)
    return tools if tools is not None else _shared_default()


def env_of(deps: Any) -> ToolEnv:
    """``deps.tool_env``, or one built from ``deps`` (no coupon client)."""
    env = getattr(deps, "tool_env", None)
    if env is not None:
        return env
    return ToolEnv(deps.db, deps.ledger, deps.guard, deps.merchants)
