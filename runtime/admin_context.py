"""What every admin API route works with: the database, the stability runtime, the
signed-in user, and the console's audit row written around each change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from sqlalchemy.engine import Engine

from console.audit import record
from console.roles import User
from stability.errors import StabilityError

from .admin_auth import AdminAuth

T = TypeVar("T")
#: how a change made through the admin API is marked in its console audit row
VIA = "admin_api"


@dataclass(frozen=True)
class AdminContext:
    """The admin API's view of one platform process."""

    engine: Engine
    auth: AdminAuth
    stability: Any  #: runtime.wiring.StabilityRuntime
    plans: Any = None  #: stability.plans.PlanService, when the platform has one

    def user(self, request: Request, action: str) -> User:
        """The caller, if the console lets its role do ``action`` (401/403 otherwise)."""
        return self.auth.require(request, action)

    def audited(
        self, user: User, action: str, target: str, detail: dict[str, Any], fn: Callable[[], T]
    ) -> T:
        """Run ``fn`` and write the console audit row an operator's click writes (same
        action, target and detail, ``ok`` and the refusal's message), marked ``via``
        the admin API; a refusal is re-raised for the error handler to answer."""
        detail = {**detail, "via": VIA}
        try:
            result = fn()
        except (StabilityError, HTTPException) as exc:
            message = exc.detail if isinstance(exc, HTTPException) else str(exc)
            record(
                self.engine,
                actor=user.username,
                role=user.role,
                action=action,
                target=target,
                detail={**detail, "ok": False, "error": str(message)[:500]},
            )
            raise
        record(
            self.engine,
            actor=user.username,
            role=user.role,
            action=action,
            target=target,
            detail={**detail, "ok": True},
        )
        return result
