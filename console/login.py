"""Signing in and out: a throttled, audited sign-in attempt, then a session and its audited
login; logout ends the session (and tells the caller to end a single sign-on too)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from .audit import ADMIN_ONLY, record
from .roles import User
from .sessions import end_session, open_session
from .throttle import (
    Throttle,
    _forget_old,
    _settle_success,
    login_wait,
    reserve_attempt,
    throttle_keys,
)
from .users import _CONTROL, _authenticate

# -- signing in and out ------------------------------------------------------------------


#: the one reason operators see for any refused sign-in (no hint which names exist)
REFUSED = "unknown user, wrong password or disabled user"


@dataclass(frozen=True)
class LoginResult:
    """What :func:`attempt_login` decided: ``user`` on success; ``outcome`` is "ok",
    "refused" (the message never says why) , "disabled" (right password, disabled user)
    or "throttled" (no turn within the wait); ``waited_s`` is how long it was held."""

    user: User | None
    outcome: str
    waited_s: float = 0.0
    retry_after_s: float = 0.0


def attempt_login(
    engine: Engine,
    username: str,
    password: str,
    *,
    client: str,
    throttle: Throttle = Throttle(),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> LoginResult:
    """One sign-in attempt, throttled per user name and per client and audited.

    The attempt is held (``sleep``) until both keys' waits are over, then takes its turn
    (:func:`reserve_attempt`); only then is the password checked. A failure is audited as
    ``login_failed`` with the same operator-visible detail whether or not the name exists
    (the cause is under ``_admin``, which only admins' audit views show).
    """
    keys = throttle_keys(username, client)
    waited, most = 0.0, throttle.cap_s + 5  # held at most this long, then refused
    while True:
        wait = login_wait(engine, keys, throttle=throttle, now=clock())
        if waited + wait > most:
            return _throttled(engine, username, client, waited, wait)
        if wait > 0:
            sleep(wait)
            waited += wait
        if reserve_attempt(engine, keys, throttle=throttle, now=clock()):
            break
        sleep(0.05)  # a concurrent attempt took the turn: wait for the next one
        waited += 0.05
    user, cause = _authenticate(engine, username, password)
    if user is not None:
        _settle_success(engine, keys, clock(), throttle)
        return LoginResult(user, "ok", waited)
    _forget_old(engine, clock(), throttle)
    record(
        engine,
        actor=_actor(username),
        role="-",
        action="login_failed",
        target="console",
        detail={
            "reason": REFUSED,
            "client": client,
            "waited_s": round(waited, 1),
            ADMIN_ONLY: {"cause": cause},
        },
    )
    return LoginResult(None, "disabled" if cause == "disabled" else "refused", waited)


def _actor(username: str) -> str:
    return _CONTROL.sub("", (username or "").strip())[:64] or "-"


def _throttled(
    engine: Engine, username: str, client: str, waited: float, retry: float
) -> LoginResult:
    record(
        engine,
        actor=_actor(username),
        role="-",
        action="login_throttled",
        target="console",
        detail={
            "reason": "too many failed sign-ins",
            "client": client,
            "retry_after_s": round(retry, 1),
        },
    )
    return LoginResult(None, "throttled", waited, retry)


def sign_in(
    engine: Engine,
    user: User,
    *,
    client: str,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> str:
    """Open a session for ``user`` and audit the login (once per session); the token."""
    token = open_session(engine, user.username, source=user.source, client=client, now=now)
    record(
        engine,
        actor=_actor(user.username),
        role=user.role,
        action="login",
        target="console",
        detail={"via": user.source, "client": client, **(detail or {})},
    )
    return token


def sign_out(engine: Engine, token: str | None, user: User) -> bool:
    """End the session server-side and audit the logout. True when the user came through
    single sign-on: the caller must then also end the IdP sign-in (``st.logout``), or the
    next run would sign the user straight back in."""
    end_session(engine, token)
    record(
        engine,
        actor=_actor(user.username),
        role=user.role,
        action="logout",
        target="console",
        detail={"via": user.source},
    )
    return user.source == "oidc"
