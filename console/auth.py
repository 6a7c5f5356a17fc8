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

The parts live in :mod:`console.roles`, :mod:`console.passwords`, :mod:`console.users`,
:mod:`console.sessions`, :mod:`console.login`, :mod:`console.throttle` and
:mod:`console.oidc`; this module names them all, as it always has.
"""

from __future__ import annotations

from .errors import AuthError
from .login import REFUSED, LoginResult, attempt_login, sign_in, sign_out
from .oidc import oidc_action, oidc_configured, oidc_role
from .passwords import check_password, hash_password
from .roles import ACTIONS, ROLE_PAGES, ROLES, User, can, lowest_role_for, page_allowed
from .sessions import SESSION_COOKIE, SESSION_LIFETIME, end_session, open_session, session_user
from .throttle import Throttle, login_wait, reserve_attempt, throttle_keys
from .users import (
    create_user,
    disable_user,
    enable_user,
    ensure_bootstrap_admin,
    list_users,
    load_user,
    remove_user,
    set_password,
    set_role,
    verify,
)

__all__ = [
    "ACTIONS",
    "REFUSED",
    "ROLES",
    "ROLE_PAGES",
    "SESSION_COOKIE",
    "SESSION_LIFETIME",
    "AuthError",
    "LoginResult",
    "Throttle",
    "User",
    "attempt_login",
    "can",
    "check_password",
    "create_user",
    "disable_user",
    "enable_user",
    "end_session",
    "ensure_bootstrap_admin",
    "hash_password",
    "list_users",
    "load_user",
    "login_wait",
    "lowest_role_for",
    "oidc_action",
    "oidc_configured",
    "oidc_role",
    "open_session",
    "page_allowed",
    "remove_user",
    "reserve_attempt",
    "session_user",
    "set_password",
    "set_role",
    "sign_in",
    "sign_out",
    "throttle_keys",
    "verify",
]
