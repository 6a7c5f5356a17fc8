"""Who calls the admin API: console users, signed in through the console's own throttled,
audited sign-in, holding a console session as a bearer token.

``POST /admin/v1/login`` runs :func:`console.login.attempt_login` (the same throttle per
user name and per client, the same ``login_failed`` audit rows) and opens a console
session (:func:`console.login.sign_in`); its token is the bearer token. Every request
resolves the token to the user's row as the database has it now
(:func:`console.sessions.session_user`), so a disabled user, a new role or a reset
password takes effect at the next call, exactly as in the console. Passwords and tokens
never reach a log, an audit row or an error message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy.engine import Engine

from console.audit import record
from console.login import REFUSED, attempt_login, sign_in, sign_out
from console.roles import User, can
from console.sessions import SESSION_LIFETIME, session_user
from console.throttle import login_wait, throttle_keys

__all__ = ["AdminAuth", "refuse"]

#: what an admin-API session is called in the console's audit rows (``login`` detail)
CHANNEL = "admin_api"


def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    """The error a route raises for a refused request (the admin app's handler shapes it
    into ``{"error": {"code", "message", "request_id"}}``)."""
    return HTTPException(status_code=status, detail=message, headers=headers)


def client_of(request: Request) -> str:
    """The client address the throttle counts (the peer of this connection)."""
    return (request.client.host if request.client else "-")[:64]


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or ``None``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


@dataclass(frozen=True)
class AdminAuth:
    """Sign-in, sign-out and the per-request user of the admin API over ``engine``."""

    engine: Engine
    idle: timedelta

    def login(self, username: str, password: str, client: str) -> dict[str, Any]:
        """A throttled, audited sign-in; the session token and who it belongs to. 429 with
        ``Retry-After`` while the throttle's wait runs (the request is not held), 401 with
        the console's one refusal message otherwise."""
        wait = login_wait(self.engine, throttle_keys(username, client))
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            record(
                self.engine,
                actor=(username or "-").strip()[:64] or "-",
                role="-",
                action="login_throttled",
                target="console",
                detail={
                    "reason": "too many failed sign-ins",
                    "client": client,
                    "retry_after_s": round(wait, 1),
                    "via": CHANNEL,
                },
            )
            raise refuse(429, "too many failed sign-ins: retry later", {"Retry-After": retry})
        result = attempt_login(self.engine, username, password, client=client)
        if result.user is None:
            raise refuse(401, REFUSED, {"WWW-Authenticate": "Bearer"})
        token = sign_in(self.engine, result.user, client=client, detail={"channel": CHANNEL})
        return {
            "token": token,
            "username": result.user.username,
            "role": result.user.role,
            "expires_in_s": int(SESSION_LIFETIME.total_seconds()),
            "idle_timeout_s": int(self.idle.total_seconds()),
        }

    def logout(self, request: Request) -> None:
        """End the caller's session (audited as the console's ``logout``)."""
        user = self.user(request)
        sign_out(self.engine, bearer(request), user)

    def user(self, request: Request) -> User:
        """The signed-in user of ``request``: 401 without a live session."""
        user = session_user(self.engine, bearer(request), idle=self.idle)
        if user is None:
            raise refuse(
                401,
                "sign in first: POST /admin/v1/login, then send Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        return user

    def require(self, request: Request, action: str) -> User:
        """The signed-in user if the console lets that role do ``action``; 403 otherwise."""
        user = self.user(request)
        if not can(user.role, action):
            raise refuse(403, f"{action} is not allowed for role {user.role}")
        return user
