"""Single sign-on through Streamlit's ``st.login`` (OpenID Connect): whether it is
configured, the role an identity gets, and what to do with an identity on each run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal


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
    from .roles import ROLES

    if email and mapping and mapping.get(email) in ROLES:
        return str(mapping[email])
    return "viewer"


def oidc_action(
    *, logged_in: bool, email: str | None, had_session: bool
) -> Literal["sign_in", "logout", "none"]:
    """What to do with an IdP identity when no console session is valid: "sign_in" (open
    a session, audited once), "logout" (the console session of this browser ended — idle,
    revoked — or the identity has no e-mail: end the IdP sign-in too, so it is not silently
    renewed) or "none" (not signed in at the IdP)."""
    if not logged_in:
        return "none"
    if had_session or not email:
        return "logout"
    return "sign_in"
