"""A synchronous HTTP client for one pay org at a channel (the sandbox's protocol).

Every request is signed with the org's secret (:mod:`.signing`). Transport errors,
timeouts, 5xx answers and malformed answers raise :class:`ChannelUnavailable` (the
outcome is unknown); 4xx answers raise :class:`ChannelRejected` (not processed).
No message ever contains the secret, a signature or a card number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import urllib3
from opentelemetry.trace import SpanKind
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from stability.guard import call_budget

from ..tracing import outgoing_headers, tracer
from .callbacks import parse_callback
from .errors import ChannelRejected, ChannelUnavailable
from .port import ChannelRequest, ChannelResult
from .signing import signed_headers

SETTLED = frozenset({"success", "failed"})
PENDING = frozenset({"processing", "unknown"})


@dataclass(frozen=True, slots=True)
class ChannelAck:
    """The channel took a request; its outcome follows by callback."""

    pay_org_no: str
    channel_txn_no: str
    channel_ref: str


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """A query's raw answer: ``processing``, ``success``, ``failed`` or ``unknown``."""

    pay_org_no: str
    channel_txn_no: str
    status: str
    amount: int | None
    currency: str | None
    channel_ref: str


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One line of a channel's daily statement."""

    channel_txn_no: str
    channel_ref: str
    kind: str
    amount: int
    currency: str
    status: str
    settled_at: datetime


class HttpChannelClient:
    """Talks to one pay org's gateway at ``base_url`` (``{base_url}/gateway/{org}/...``).

    ``timeout`` is the default of calls made outside the guard: inside a guarded call the
    HTTP timeout is the edge's (:func:`stability.guard.call_budget`), and
    :meth:`send_async` takes its caller's.

    Synchronous calls go over urllib3 (``pool`` may be shared: urllib3 pool managers
    are thread-safe; one made here is closed by :meth:`close`); :meth:`send_async` goes
    over an aiohttp session, with the same request, signing and answer handling. urllib3
    rather than httpx: alone, httpx cost 0.38 ms of CPU per request against urllib3's
    0.26; sending from the API's threads under 16 clients, the API spent 11.2-12.6 ms per
    payment with httpx and 8.8-9.1 ms with urllib3 (``bench/pay_e2e.py``, same run).
    """

    def __init__(
        self,
        base_url: str,
        pay_org_no: str,
        secret: str,
        *,
        timeout: float = 3.0,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        self.base_url = base_url.rstrip("/")
        self.pay_org_no = pay_org_no
        self.timeout = timeout
        self._secret = secret
        self._owns_pool = pool is None
        # kept-alive connections for at least the channel front's 8 sending threads
        self._pool = pool if pool is not None else urllib3.PoolManager(maxsize=16)

    def __repr__(self) -> str:
        return f"HttpChannelClient({self.base_url!r}, {self.pay_org_no!r})"

    def close(self) -> None:
        """Close the HTTP connections if this object created their pool."""
        if self._owns_pool:
            self._pool.clear()

    def __enter__(self) -> HttpChannelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------
    def pay(self, request: ChannelRequest, notify_url: str) -> ChannelAck:
        """Ask the channel to collect ``request.amount``; the result comes by callback."""
        return self._transact("pay", request, notify_url)

    def refund(self, request: ChannelRequest, notify_url: str) -> ChannelAck:
        """Refund (part of) ``request.origin_channel_txn_no``."""
        return self._transact("refund", request, notify_url)

    def withdraw(self, request: ChannelRequest, notify_url: str) -> ChannelAck:
        """Pay ``request.amount`` out to the user."""
        return self._transact("withdraw", request, notify_url)

    def send(
        self, request: ChannelRequest, notify_url: str, *, timeout: float | None = None
    ) -> ChannelAck:
        """Dispatch on ``request.kind`` (pay, refund or withdraw); ``timeout`` seconds
        (default: the guarded call's budget, else the client's)."""
        return self._transact(request.kind, request, notify_url, timeout)

    async def send_async(
        self,
        session: aiohttp.ClientSession,
        request: ChannelRequest,
        notify_url: str,
        *,
        timeout: float | None = None,
    ) -> ChannelAck:
        """:meth:`send` on an event loop, through ``session``: the same request, signing
        and answer handling, with aiohttp as the transport; ``timeout`` seconds (default
        the client's) for the connection and for the answer."""
        with self._span(request.kind, request):
            return await self._send_async(session, request, notify_url, timeout)

    async def _send_async(
        self,
        session: aiohttp.ClientSession,
        request: ChannelRequest,
        notify_url: str,
        timeout: float | None,
    ) -> ChannelAck:
        call = self._transaction(request, notify_url)
        seconds = self.timeout if timeout is None else timeout
        try:
            async with session.request(
                call.method,
                call.url,
                data=call.raw or None,
                headers=call.headers,
                timeout=aiohttp.ClientTimeout(sock_connect=seconds, sock_read=seconds),
                allow_redirects=False,
            ) as resp:
                status, data = resp.status, await resp.read()
        except TimeoutError as exc:
            raise self._timed_out(call, seconds) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: a bad URL
            raise self._unreachable(call, exc) from exc
        return self._acknowledged(call, self._checked(call, status, data), request)

    def _transact(
        self, kind: str, request: ChannelRequest, notify_url: str, timeout: float | None = None
    ) -> ChannelAck:
        with self._span(kind, request):
            call = self._transaction(request, notify_url, kind)
            return self._acknowledged(call, self._send(call, timeout), request)

    def _span(self, kind: str, request: ChannelRequest) -> Any:
        """The CLIENT span of one send; its context goes out as ``traceparent``."""
        attributes = {
            "paywatch.pay_org_no": self.pay_org_no,
            "paywatch.channel_txn_no": request.channel_txn_no,
        }
        return tracer().start_as_current_span(
            f"channel {kind}", kind=SpanKind.CLIENT, attributes=attributes
        )

    def _transaction(
        self, request: ChannelRequest, notify_url: str, kind: str | None = None
    ) -> _Call:
        kind = kind or request.kind
        if kind not in ("pay", "refund", "withdraw"):
            raise ChannelRejected(f"unsupported channel request kind {kind!r}")
        if request.pay_org_no != self.pay_org_no:
            raise ChannelRejected(
                f"request for {request.pay_org_no} sent to the {self.pay_org_no} client"
            )
        body: dict[str, Any] = {
            "channel_txn_no": request.channel_txn_no,
            "amount": request.amount,
            "currency": request.currency,
            "notify_url": notify_url,
        }
        if request.origin_channel_txn_no is not None:
            body["origin_channel_txn_no"] = request.origin_channel_txn_no
        return self._prepare("POST", kind, f"/{kind}", body)

    def _acknowledged(self, call: _Call, answer: bytes, request: ChannelRequest) -> ChannelAck:
        data = self._json(answer, call.op)
        ref = data.get("channel_ref")
        if data.get("accepted") is not True or not isinstance(ref, str):
            raise ChannelUnavailable(f"{call.where}: malformed acknowledgement")
        return ChannelAck(self.pay_org_no, request.channel_txn_no, ref)

    # -- queries ---------------------------------------------------------------------------
    def query_status(self, channel_txn_no: str) -> ChannelStatus:
        """The channel's raw view of a transaction, including pending states."""
        path = f"/query/{quote(channel_txn_no, safe='')}"
        data = self._json(self._send(self._prepare("GET", "query", path)), "query")
        status, amount, currency = data.get("status"), data.get("amount"), data.get("currency")
        if (
            status not in SETTLED | PENDING
            or (
                status in SETTLED and (not isinstance(amount, int) or not isinstance(currency, str))
            )
            or not isinstance(data.get("channel_ref", ""), str)
        ):
            raise ChannelUnavailable(f"{self.pay_org_no} query: malformed answer")
        return ChannelStatus(
            self.pay_org_no,
            channel_txn_no,
            str(status),
            amount if isinstance(amount, int) else None,
            currency if isinstance(currency, str) else None,
            str(data.get("channel_ref", "")),
        )

    def query(self, channel_txn_no: str) -> ChannelResult | None:
        """The settled result of a transaction, or None while processing or unknown."""
        st = self.query_status(channel_txn_no)
        if st.status not in SETTLED or st.amount is None or st.currency is None:
            return None
        return ChannelResult(
            self.pay_org_no, channel_txn_no, st.status, st.amount, st.currency, st.channel_ref
        )

    def sign(self, user_id: str, card_no: str) -> str:
        """Bind ``user_id``'s card at the channel; returns the agreement number."""
        body = {"user_id": user_id, "card_no": card_no}
        answer = self._send(self._prepare("POST", "sign", "/sign", body))
        agreement = self._json(answer, "sign").get("agreement_no")
        if not isinstance(agreement, str) or not agreement:
            raise ChannelUnavailable(f"{self.pay_org_no} sign: malformed answer")
        return agreement

    def statement(self, day: date) -> list[StatementLine]:
        """The channel's statement of transactions settled on UTC ``day``."""
        params = {"date": day.isoformat()}
        answer = self._send(self._prepare("GET", "statement", "/statement", params=params))
        try:
            rows = csv.DictReader(io.StringIO(answer.decode()))
            return [
                StatementLine(
                    channel_txn_no=row["channel_txn_no"],
                    channel_ref=row["channel_ref"],
                    kind=row["kind"],
                    amount=int(row["amount"]),
                    currency=row["currency"],
                    status=row["status"],
                    settled_at=datetime.fromisoformat(row["settled_at"]),
                )
                for row in rows
            ]
        except (KeyError, TypeError, ValueError, csv.Error):
            raise ChannelUnavailable(f"{self.pay_org_no} statement: malformed file") from None

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ChannelResult:
        """Verify and read a result callback from this org (see :func:`parse_callback`)."""
        return parse_callback(self.pay_org_no, self._secret, headers, body)

    # -- transport -------------------------------------------------------------------------
    def _prepare(
        self,
        method: str,
        op: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> _Call:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = signed_headers(self._secret, raw)
        outgoing_headers(headers)  # X-Request-Id and traceparent (not signed)
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = f"{self.base_url}/gateway/{quote(self.pay_org_no, safe='')}{path}"
        return _Call(method, url, raw, headers, op, f"{self.pay_org_no} {op}", params)

    def _send(self, call: _Call, timeout: float | None = None) -> bytes:
        """``call`` over urllib3, never retried here (a retried pay could be a second
        charge; the guard retries what its edge allows) and never redirected, within the
        guarded call's budget; the body of a 2xx answer."""
        seconds = call_budget(self.timeout) if timeout is None else timeout
        try:
            resp = self._pool.request(
                call.method,
                call.url,
                body=call.raw or None,
                headers=call.headers,
                fields=call.params,
                timeout=urllib3.Timeout(connect=seconds, read=seconds),
                retries=False,
                redirect=False,
            )
        except NewConnectionError as exc:  # a refusal: urllib3 files it under connect timeouts
            raise self._unreachable(call, exc) from exc
        except Urllib3Timeout as exc:
            raise self._timed_out(call, seconds) from exc
        except (HTTPError, OSError) as exc:
            raise self._unreachable(call, exc) from exc
        return self._checked(call, resp.status, resp.data)

    def _timed_out(self, call: _Call, seconds: float) -> ChannelUnavailable:
        return ChannelUnavailable(
            f"{call.where}: timed out after {seconds:g}s",
            pay_org_no=self.pay_org_no,
            op=call.op,
        )

    def _unreachable(self, call: _Call, exc: Exception) -> ChannelUnavailable:
        return ChannelUnavailable(
            f"{call.where}: {type(exc).__name__}", pay_org_no=self.pay_org_no, op=call.op
        )

    def _checked(self, call: _Call, status: int, data: bytes) -> bytes:
        """``data`` of a 2xx answer; :class:`ChannelRejected` for a 4xx (not processed),
        :class:`ChannelUnavailable` for anything else (outcome unknown)."""
        if 200 <= status < 300:
            return data
        if 400 <= status < 500:
            reason = f"{call.where}: HTTP {status} {_detail(data)}".rstrip()
            raise ChannelRejected(reason, pay_org_no=self.pay_org_no, op=call.op, status=status)
        raise ChannelUnavailable(
            f"{call.where}: HTTP {status}", pay_org_no=self.pay_org_no, op=call.op, status=status
        )

    def _json(self, answer: bytes, op: str) -> dict[str, Any]:
        try:
            data = json.loads(answer)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ChannelUnavailable(f"{self.pay_org_no} {op}: answer is not a JSON object")
        return data


@dataclass(frozen=True, slots=True)
class _Call:
    """One signed request to the channel, ready for either transport."""

    method: str
    url: str
    raw: bytes
    headers: dict[str, str] = field(repr=False)  # carries the signature
    op: str
    where: str  # "<org> <op>", for messages
    params: dict[str, str] | None = None


def _detail(answer: bytes) -> str:
    """A short, printable reason from an error answer (the channel's ``detail``)."""
    try:
        detail = json.loads(answer).get("detail", "")
    except (ValueError, AttributeError):
        return ""
    text = detail if isinstance(detail, str) else json.dumps(detail)
    return text[:200]
