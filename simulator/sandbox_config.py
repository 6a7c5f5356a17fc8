"""The sandbox channel's configuration: its pay orgs, secrets and per-org knobs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

KINDS = ("pay", "refund", "withdraw")
_RATES = frozenset(
    {
        "error_rate",
        "outage_rate",
        "timeout_rate",
        "fail_rate",
        "amount_mismatch_rate",
        "statement_missing_rate",
        "statement_extra_rate",
        "statement_amount_diff_rate",
    }
)
_MS = frozenset({"latency_ms", "timeout_ms", "callback_delay_ms"})


@dataclass(frozen=True, slots=True)
class Knobs:
    """How one pay org's channel behaves; the defaults are a healthy channel.

    Rates are probabilities in [0, 1], drawn per request (or per statement line).
    """

    latency_ms: float = 5.0  #: median answer latency
    latency_jitter: float = 0.25  #: sigma of the lognormal around the median
    error_rate: float = 0.0  #: answer 503 instead of accepting
    outage_rate: float = 0.0  #: answer 503 to any call: submissions, queries, statements
    timeout_rate: float = 0.0  #: accept, but answer only after ``timeout_ms``
    timeout_ms: float = 10_000.0
    fail_rate: float = 0.0  #: accept, then call back ``failed``
    callback_delay_ms: float = 50.0  #: from acceptance to the (first) callback
    duplicate_callbacks: int = 0  #: extra copies of every callback
    #: a pay, recharge or withdraw settled one minor unit higher than asked (the channel
    #: took too much); refunds settle as asked, so compensation can return what was taken
    amount_mismatch_rate: float = 0.0
    statement_missing_rate: float = 0.0  #: settled txn left out of the statement
    statement_extra_rate: float = 0.0  #: a txn we never sent added to the statement
    statement_amount_diff_rate: float = 0.0  #: statement amount one minor unit too high

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "duplicate_callbacks":
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
                    raise ValueError("duplicate_callbacks must be an integer in [0, 20]")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number")
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite")
            if f.name in _RATES and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1]")
            if f.name in _MS and not 0.0 <= value <= 600_000:
                raise ValueError(f"{f.name} must be in [0, 600000] ms")
            if f.name == "latency_jitter" and not 0.0 <= value <= 5.0:
                raise ValueError("latency_jitter must be in [0, 5]")

    def updated(self, changes: Mapping[str, object]) -> Knobs:
        """A copy with ``changes`` applied; unknown names or bad values raise ValueError."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float | int]:
        """The knobs as a JSON-ready dict."""
        return asdict(self)


@dataclass
class SandboxConfig:
    """What a sandbox channel serves: its pay orgs and their secrets, and its knobs."""

    secrets: dict[str, str] = field(repr=False)  #: pay org -> shared signing secret
    admin_token: str = field(repr=False)  #: value of ``X-Sandbox-Admin`` for /admin
    seed: int = 0  #: seeds the sandbox's random draws
    knobs: dict[str, Knobs] = field(default_factory=dict)  #: per org; default healthy
    callback_attempts: int = 4  #: deliveries tried per callback before giving up
    callback_backoff_ms: float = 50.0  #: first retry delay; doubles each attempt
    callback_timeout: float = 2.0  #: seconds per callback delivery
    clock: Callable[[], float] = field(default=time.time, repr=False)  #: for settled_at
    #: signs the coupon service's requests; None: the sandbox hosts no coupon service
    coupon_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.secrets or not all(k and v for k, v in self.secrets.items()):
            raise ValueError("secrets must map each pay org to a non-empty secret")
        if not self.admin_token:
            raise ValueError("admin_token must not be empty")
        unknown = set(self.knobs) - set(self.secrets)
        if unknown:
            raise ValueError(f"knobs for unknown pay orgs: {sorted(unknown)}")
        if self.callback_attempts < 1:
            raise ValueError("callback_attempts must be at least 1")


def knob_request(
    sandbox_url: str, org: str, changes: Mapping[str, Any], token: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The PUT the drill page sends to the sandbox: (url, headers, json body)."""
    from urllib.parse import quote

    url = f"{sandbox_url.rstrip('/')}/admin/knobs/{quote(org, safe='')}"
    return url, {"X-Sandbox-Admin": token}, dict(changes)
