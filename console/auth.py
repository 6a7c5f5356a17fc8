"""Console access: local users with roles, password hashing, role gating, optional OIDC.

Passwords are hashed with :func:`hashlib.scrypt` and a per-user random salt; checks are
constant-time (:func:`hmac.compare_digest`), and an unknown user costs one hash too so
timing does not reveal which names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .schema import ConsoleUser

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
    "user.manage": "admin",
    "merchant.manage": "admin",
}


class AuthError(ValueError):
    """A bad user name, role or password on user creation."""


@dataclass(frozen=True)
class User:
    username: str
    role: str


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


def create_user(engine: Engine, username: str, password: str, role: str) -> User:
    """Create a local user (:class:`AuthError` on a bad name, role, short password)."""
    username = (username or "").strip()
    if not username or len(username) > 64:
        raise AuthError("a user name of 1-64 characters is required")
    if role not in _RANK:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if not password or len(password) < 8:
        raise AuthError("a password of at least 8 characters is required")
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


def set_password(engine: Engine, username: str, password: str) -> bool:
    """Replace a local user's password; False when there is no such user."""
    if not password or len(password) < 8:
        raise AuthError("a password of at least 8 characters is required")
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(ConsoleUser)
            .where(ConsoleUser.username == (username or ""))
            .values(password_hash=hash_password(password))
        )
    return bool(done.rowcount)


def set_role(engine: Engine, username: str, role: str) -> bool:
    """Change a local user's role; False when there is no such user."""
    if role not in _RANK:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(ConsoleUser).where(ConsoleUser.username == (username or "")).values(role=role)
        )
    return bool(done.rowcount)


def verify(engine: Engine, username: str, password: str) -> User | None:
    """The user when ``password`` is right, else ``None`` (same cost either way)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(ConsoleUser.username, ConsoleUser.password_hash, ConsoleUser.role).where(
                ConsoleUser.username == (username or "")
            )
        ).first()
    if row is None:
        check_password(password or "", _DUMMY)
        return None
    if not check_password(password or "", row.password_hash):
        return None
    return User(row.username, row.role)


def list_users(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(ConsoleUser.username, ConsoleUser.role, ConsoleUser.created_at).order_by(
                ConsoleUser.username
            )
        ).all()
    return [{"username": r.username, "role": r.role, "created_at": r.created_at} for r in rows]


def oidc_configured(secrets_obj: Mapping[str, Any] | Any) -> bool:
    """True when ``st.secrets`` (or any mapping) has an ``[auth]`` section for ``st.login``.

    Never raises: a missing secrets file means "not configured".
    """
    try:
        auth = secrets_obj.get("auth") if hasattr(secrets_obj, "get") else None
        if not auth:
            return False
        providers = [v for v in auth.values() if isinstance(v, Mapping)]
        return bool(auth.get("client_id") or any(v.get("client_id") for v in providers))
    except Exception:  # noqa: BLE001 - streamlit raises when no secrets file exists
        return False


def oidc_role(email: str | None, mapping: Mapping[str, str] | None) -> str:
    """The role of an OIDC-signed-in user: from ``[console.oidc_roles]``, else viewer."""
    if email and mapping and mapping.get(email) in _RANK:
        return str(mapping[email])
    return "viewer"


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
