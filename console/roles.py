"""Console roles: which pages each role may open and the lowest role allowed each action.

Roles are ordered viewer < operator < manager < admin; :class:`User` is who is signed in."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "operator", "manager", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}


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
    "routing.publish": "operator",
    "drill.knobs": "operator",
    "alert.silence": "operator",
    "alert.ack": "operator",
    "user.manage": "admin",
    "merchant.manage": "admin",
    "map.edit": "admin",
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
