"""Console access: local users with roles, sessions, login throttling, optional OIDC.

Passwords are hashed with :func:`hashlib.scrypt` and a per-user random salt; checks are
constant-time (:func:`hmac.compare_digest`), and an unknown user costs one hash too so
timing does not reveal which names exist.

Nothing about a user is trusted from the browser session: every run of the console
resolves the session token to the user's row (:func:`session_user`), so a new role, a
reset password, a disabled or removed user takes effect at the user's next click.
A session is a random token in a cookie; only its SHA-256 is stored, in
``console_sessions``, so it can be ended server-side (logout, idle timeout, an admin's
change). Failed sign-ins are counted per user name and per client in
``console_login_throttle`` (:class:`Throttle`): after three, each further attempt waits
1 s, 2 s, 4 s … (capped), whichever session or console process it comes from.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .audit import ADMIN_ONLY, record
from .errors import AuthError
from .oidc import oidc_action, oidc_configured, oidc_role  # noqa: F401 - re-exported
from .schema import ConsoleSession, ConsoleUser
from .throttle import (  # noqa: F401 - Throttle, login_wait, throttle_keys re-exported
    Throttle,
    _forget_old,
    _settle_success,
    login_wait,
    reserve_attempt,
    throttle_keys,
)

ROLES = ("viewer", "operator", "manager", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
_N, _R, _P = 2**14, 8, 1

#: page-name prefixes each role may open (``oncall_*``, ``sre_*``, ``ops_*``, ``mgr_*``)
ROLE_PAGES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"oncall"}),
    "operator": frozenset({"oncall", "sre", "ops"}),
    "manager": frozenset({"oncall", "sre", "ops", "mgr"}),
    "admin": frozenset({"oncall", "sre", "ops", "mgr", "admin"}),
}
#: the lowest role allowed to perform each action (roles are ordered viewer < ... < admin)
ACTIONS: dict[str, str] = {
    "view": "viewer",
    "switch.propose": "operator",
    "switch.approve": "operator",
    "switch.reject": "operator",
    "switch.revert": "operator",
    "drill.knobs": "operator",
    "alert.silence": "operator",
    "user.manage": "admin",
    "merchant.manage": "admin",
}


@dataclass(frozen=True)
class User:
    username: str
    role: str
    #: "local" (``console_users``) or "oidc" (single sign-on)
    source: str = "local"


def can(role: str | None, action: str) -> bool:
    """Whether ``role`` may perform ``action`` (an ``ACTIONS`` key or a page prefix)."""
    if role not in _RANK:
        return False
    if action in ACTIONS:
        return _RANK[role] >= _RANK[ACTIONS[action]]
    return action in ROLE_PAGES[role]


def page_allowed(role: str | None, page: str) -> bool:
    """Whether ``role`` may open the page file/name ``page`` (e.g. ``sre_switches``)."""
    prefix = page.rsplit("/", 1)[-1].split("_", 1)[0]
    return role in ROLE_PAGES and prefix in ROLE_PAGES[role]


def lowest_role_for(page: str) -> str | None:
    """The lowest role that may open ``page`` (``None``: no role may)."""
    return next((r for r in ROLES if page_allowed(r, page)), None)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(bytes.fromhex(digest)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


_DUMMY = hash_password("not-a-real-password", salt=b"\0" * 16)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


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
