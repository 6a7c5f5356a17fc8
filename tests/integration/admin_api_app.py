"""What the admin API tests share: a platform on PostgreSQL with the admin API mounted on
its pay API (served in-process by Starlette's test client), console users of each role,
and a signed-in client per user."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
#: user name -> console role
USERS = {"ada": "admin", "olga": "operator", "oscar": "operator", "vic": "viewer"}


@dataclass
class AdminStack:
    platform: Any
    http: TestClient

    @property
    def engine(self):
        return self.platform.db.engine

    def login(self, username: str, password: str = PASSWORD):
        return self.http.post("/admin/v1/login", json={"username": username, "password": password})

    def as_user(self, username: str) -> dict[str, str]:
        """The Authorization header of a fresh session of ``username``."""
        answer = self.login(username)
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}


@pytest.fixture
def stack(pg_url) -> Iterator[AdminStack]:
    from console.users import create_user
    from runtime.admin_api import mount_admin
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    settings = Settings(
        database_url=pg_url,
        pay_orgs=("SANDBOX_A", "SANDBOX_B"),
        channel_secrets={"SANDBOX_A": "a", "SANDBOX_B": "b"},
    )
    platform = build_platform(settings, channels=False)
    for name, role in USERS.items():
        create_user(platform.db.engine, name, PASSWORD, role)
    app = mount_admin(platform.api_app(), platform)
    try:
        with TestClient(app, client=("10.1.2.3", 5000)) as http:
            yield AdminStack(platform, http)
    finally:
        platform.close()


def audit_rows(engine, action: str) -> list[dict]:
    from console.audit import recent

    return [r for r in recent(engine, 500, admin=True) if r["action"] == action]
