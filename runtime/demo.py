"""Demo data for ``paywatch up``: one console login per role.

Passwords are random, generated on the first start and kept in
``<var_dir>/demo_logins.json`` (mode 0600) so the next start prints the same ones; only
their scrypt hashes are in the database. A lost file means new passwords, never a
well-known default.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from sqlalchemy.engine import Engine

from console.auth import ROLES, AuthError, create_user, set_password

LOGINS_FILE = "demo_logins.json"


def ensure_demo_users(engine: Engine, var_dir: str | Path) -> dict[str, tuple[str, str]]:
    """A user per role (named after the role); returns ``{username: (role, password)}``."""
    path = Path(var_dir) / LOGINS_FILE
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    logins: dict[str, tuple[str, str]] = {}
    for role in ROLES:
        password = known.get(role) or secrets.token_urlsafe(12)
        try:
            create_user(engine, role, password, role)
        except AuthError:  # exists: make sure the password we print is the one that works
            set_password(engine, role, password)
        logins[role] = (role, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({u: pw for u, (_, pw) in logins.items()}))
    path.chmod(0o600)
    return logins
