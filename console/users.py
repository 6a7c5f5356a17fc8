"""Local console users (``console_users``): create, change, disable, remove, list, and check a
password. An unknown user costs one hash too, so timing does not reveal which names exist;
the last enabled admin cannot be demoted, disabled or removed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .errors import AuthError
from .passwords import _DUMMY, check_password, hash_password
from .roles import _RANK, ROLES, User
from .schema import ConsoleSession, ConsoleUser
from .sessions import _end_sessions, _now

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- users -------------------------------------------------------------------------------


def create_user(engine: Engine, username: str, password: str, role: str) -> User:
    """Create a local user (:class:`AuthError` on a bad name, role, short password)."""
    username = (username or "").strip()
    if not username or len(username) > 64 or _CONTROL.search(username):
        raise AuthError("a user name of 1-64 printable characters is required")
    if role not in _RANK:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    _check_new_password(password)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(ConsoleUser).values(
                    username=username,
                    password_hash=hash_password(password),
                    role=role,
                    created_at=datetime.now(UTC),
                )
            )
    except sa.exc.IntegrityError:
        raise AuthError("user already exists") from None
    return User(username, role)


def _check_new_password(password: str | None) -> None:
    if not password or len(password) < 8:
        raise AuthError("a password of at least 8 characters is required")


def _where(username: str | None) -> Any:
    return ConsoleUser.username == (username or "")


def set_password(engine: Engine, username: str, password: str) -> bool:
    """Replace a local user's password and end the user's open sessions; False when there
    is no such user."""
    _check_new_password(password)
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(ConsoleUser)
            .where(_where(username))
            .values(password_hash=hash_password(password))
        )
        if done.rowcount:
            _end_sessions(conn, username)
    return bool(done.rowcount)


def _guard_last_admin(conn: Connection, username: str, *, losing: bool) -> None:
    """:class:`AuthError` when ``username`` is the only enabled admin and the change
    (``losing``) would leave none: the console could no longer be administered."""
    if not losing:
        return
    admins = (
        conn.execute(
            sa.select(ConsoleUser.username)
            .where(ConsoleUser.role == "admin", ConsoleUser.disabled_at.is_(None))
            .with_for_update()
        )
        .scalars()
        .all()
    )
    if admins == [username]:
        raise AuthError("this is the last enabled admin: make another admin first")


def _user_row(conn: Connection, username: str) -> Any:
    return conn.execute(
        sa.select(ConsoleUser.role, ConsoleUser.disabled_at).where(_where(username))
    ).first()


def set_role(engine: Engine, username: str, role: str) -> bool:
    """Change a local user's role (effective at the user's next click); False when there
    is no such user."""
    if role not in _RANK:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    with engine.begin() as conn:
        row = _user_row(conn, username)
        if row is None:
            return False
        _guard_last_admin(conn, username, losing=row.role == "admin" and role != "admin")
        conn.execute(sa.update(ConsoleUser).where(_where(username)).values(role=role))
    return True


def disable_user(engine: Engine, username: str, *, now: datetime | None = None) -> bool:
    """Disable a local user: no sign-in, open sessions end now. False when no such user."""
    with engine.begin() as conn:
        row = _user_row(conn, username)
        if row is None:
            return False
        _guard_last_admin(conn, username, losing=row.role == "admin")
        if row.disabled_at is None:
            conn.execute(
                sa.update(ConsoleUser).where(_where(username)).values(disabled_at=_now(now))
            )
        _end_sessions(conn, username)
    return True


def enable_user(engine: Engine, username: str) -> bool:
    """Enable a disabled local user again; False when there is no such user."""
    with engine.begin() as conn:
        done = conn.execute(sa.update(ConsoleUser).where(_where(username)).values(disabled_at=None))
    return bool(done.rowcount)


def remove_user(engine: Engine, username: str) -> bool:
    """Delete a local user and end its sessions (its audit rows stay); False when there
    is no such user."""
    with engine.begin() as conn:
        row = _user_row(conn, username)
        if row is None:
            return False
        _guard_last_admin(conn, username, losing=row.role == "admin")
        _end_sessions(conn, username)
        conn.execute(sa.delete(ConsoleUser).where(_where(username)))
    return True


def load_user(engine: Engine, username: str) -> User | None:
    """The enabled local user ``username`` as stored now; ``None`` if missing or disabled."""
    with engine.connect() as conn:
        row = _user_row(conn, username)
    if row is None or row.disabled_at is not None:
        return None
    return User(username, row.role)


def _authenticate(engine: Engine, username: str, password: str) -> tuple[User | None, str]:
    """``(user, cause)``: cause is "ok", "unknown_user", "wrong_password" or "disabled"
    (the last only with the right password). Same cost whether the user exists or not."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                ConsoleUser.username,
                ConsoleUser.password_hash,
                ConsoleUser.role,
                ConsoleUser.disabled_at,
            ).where(_where(username))
        ).first()
    if row is None:
        check_password(password or "", _DUMMY)
        return None, "unknown_user"
    if not check_password(password or "", row.password_hash):
        return None, "wrong_password"
    if row.disabled_at is not None:
        return None, "disabled"
    return User(row.username, row.role), "ok"


def verify(engine: Engine, username: str, password: str) -> User | None:
    """The enabled user when ``password`` is right, else ``None`` (same cost either way).
    Not throttled: front ends sign in with :func:`attempt_login`."""
    return _authenticate(engine, username, password)[0]


def list_users(engine: Engine) -> list[dict[str, Any]]:
    """Every local user with its state and how many sessions it has open."""
    sessions = (
        sa.select(ConsoleSession.username, sa.func.count().label("n"))
        .where(ConsoleSession.source == "local", ConsoleSession.expires_at > datetime.now(UTC))
        .group_by(ConsoleSession.username)
        .subquery()
    )
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                ConsoleUser.username,
                ConsoleUser.role,
                ConsoleUser.created_at,
                ConsoleUser.disabled_at,
                sessions.c.n,
            )
            .outerjoin(sessions, sessions.c.username == ConsoleUser.username)
            .order_by(ConsoleUser.username)
        ).all()
    return [
        {
            "username": r.username,
            "role": r.role,
            "status": "disabled" if r.disabled_at is not None else "enabled",
            "sessions": int(r.n or 0),
            "created_at": r.created_at,
            "disabled_at": r.disabled_at,
        }
        for r in rows
    ]


def ensure_bootstrap_admin(engine: Engine, env: Mapping[str, str]) -> bool:
    """Create the first admin from ``PAYWATCH_CONSOLE_ADMIN`` and
    ``PAYWATCH_CONSOLE_ADMIN_PASSWORD`` when no user exists yet; True if created."""
    name = env.get("PAYWATCH_CONSOLE_ADMIN")
    password = env.get("PAYWATCH_CONSOLE_ADMIN_PASSWORD")
    if not name or not password:
        return False
    with engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(ConsoleUser)).scalar_one():
            return False
    try:
        create_user(engine, name, password, "admin")
    except AuthError:
        return False
    return True
