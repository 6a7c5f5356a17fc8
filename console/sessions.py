"""Console sessions: a random token in a cookie, only its SHA-256 stored in
``console_sessions``, so a session can be ended server-side (logout, idle timeout, an
admin's change). The user is resolved from the database at every run."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .oidc import oidc_role
from .roles import User
from .schema import ConsoleSession, ConsoleUser


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


# -- sessions ----------------------------------------------------------------------------


#: the cookie that carries the session token (never the URL)
SESSION_COOKIE = "paywatch_session"
#: a session ends this long after sign-in, however active
SESSION_LIFETIME = timedelta(hours=12)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    engine: Engine,
    username: str,
    *,
    source: str = "local",
    client: str = "-",
    now: datetime | None = None,
) -> str:
    """Start a session for ``username``; returns the random token (stored hashed only)."""
    now = _now(now)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(sa.delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
        conn.execute(
            sa.insert(ConsoleSession).values(
                token_hash=_token_hash(token),
                username=username[:320],
                source=source,
                client=client[:64],
                created_at=now,
                last_seen_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return token


def session_user(
    engine: Engine,
    token: str | None,
    *,
    idle: timedelta,
    oidc_roles: Mapping[str, str] | None = None,
    touch: bool = True,
    now: datetime | None = None,
) -> User | None:
    """The user of the session ``token`` as the database has it now, or ``None`` (no such
    session, expired, idle longer than ``idle``, user disabled or removed). A session that
    is over is deleted. With ``touch`` (a click, not a page refreshing itself) its last
    activity is recorded, at most every ``min(60 s, idle/4)``. A local user's role is read
    from ``console_users``; an OIDC user's from ``oidc_roles``.
    """
    if not token:
        return None
    now, key = _now(now), _token_hash(token)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                ConsoleSession.username,
                ConsoleSession.source,
                ConsoleSession.last_seen_at,
                ConsoleSession.expires_at,
                ConsoleUser.role,
                ConsoleUser.disabled_at,
            )
            .outerjoin(ConsoleUser, ConsoleUser.username == ConsoleSession.username)
            .where(ConsoleSession.token_hash == key)
        ).first()
    if row is None:
        return None
    if row.source == "oidc":
        user: User | None = User(row.username, oidc_role(row.username, oidc_roles), "oidc")
    elif row.role is not None and row.disabled_at is None:
        user = User(row.username, row.role)
    else:
        user = None
    if user is None or now >= row.expires_at or now - row.last_seen_at >= idle:
        end_session(engine, token)
        return None
    if touch and now - row.last_seen_at >= min(timedelta(seconds=60), idle / 4):
        with engine.begin() as conn:
            conn.execute(
                sa.update(ConsoleSession)
                .where(ConsoleSession.token_hash == key)
                .values(last_seen_at=now)
            )
    return user


def end_session(engine: Engine, token: str | None) -> None:
    """Delete the session ``token`` (logout); nothing when there is none."""
    if token:
        with engine.begin() as conn:
            conn.execute(
                sa.delete(ConsoleSession).where(ConsoleSession.token_hash == _token_hash(token))
            )


def _end_sessions(conn: Connection, username: str) -> None:
    conn.execute(
        sa.delete(ConsoleSession).where(
            ConsoleSession.username == username, ConsoleSession.source == "local"
        )
    )
