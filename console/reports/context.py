"""The page context: what an operations/manager page needs from the console shell.

Pages are modules with ``render(ctx)``; ``ctx`` is any object with ``platform``,
``user`` and (optionally) ``role`` and ``audit`` attributes. ``render(platform, user)``
also works (``user`` a :class:`console.auth.User`, or a name with the role taken from
``user.role`` when present). :func:`page_context` normalises both into a
:class:`PageContext`. No Streamlit here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from console.auth import can

AuditFn = Callable[..., Any]


@dataclass
class PageContext:
    platform: Any  # runtime.bootstrap.Platform (anything with .paycore)
    user: str
    role: str
    audit_fn: AuditFn | None = None

    @property
    def core(self) -> Any:
        return self.platform.paycore

    @property
    def db(self) -> Any:
        return self.platform.paycore.db

    def now(self) -> datetime:
        clock = getattr(self.core, "clock", None)
        return clock() if callable(clock) else datetime.now(UTC)

    def can(self, action: str) -> bool:
        """``action`` is a page prefix ("ops", "mgr") or a :data:`console.auth.ACTIONS` key."""
        return can(self.role, action)

    def audit(self, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        """Record one console action: through the shell's audit callable when given
        (called with the keywords it accepts), else :func:`console.audit.record`."""
        detail = detail or {}
        fn = self.audit_fn
        if fn is None:
            from console.audit import record

            record(
                self.db.engine,
                actor=self.user,
                role=self.role,
                action=action,
                target=target,
                detail=detail,
            )
            return
        values = {
            "actor": self.user,
            "role": self.role,
            "action": action,
            "target": target,
            "detail": detail,
        }
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            fn(**values)
        elif params:
            fn(**{k: v for k, v in values.items() if k in params})
        else:
            fn(action, target, detail)


def _name(user: Any) -> str:
    if isinstance(user, str):
        return user
    for attr in ("username", "name", "email"):
        value = getattr(user, attr, None)
        if value:
            return str(value)
    return str(user or "")


def page_context(ctx_or_platform: Any, user: Any = None) -> PageContext:
    """Normalise ``render(ctx)`` / ``render(platform, user)`` arguments."""
    if isinstance(ctx_or_platform, PageContext):
        return ctx_or_platform
    if user is None and hasattr(ctx_or_platform, "platform"):
        ctx = ctx_or_platform
        u = getattr(ctx, "user", None)
        role = getattr(ctx, "role", None) or getattr(u, "role", None) or ""
        return PageContext(ctx.platform, _name(u), str(role), getattr(ctx, "audit", None))
    role = getattr(user, "role", None) or ""
    return PageContext(ctx_or_platform, _name(user), str(role))


def run_audited(
    ctx: PageContext, action: str, target: str, detail: dict[str, Any], fn: Callable[[], Any]
) -> tuple[bool, Any]:
    """Run ``fn`` and write the audit row with its outcome; ``(ok, result or error)``."""
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - every failure is shown and audited
        ctx.audit(action, target, {**detail, "ok": False, "error": str(exc)[:500]})
        return False, exc
    ctx.audit(action, target, {**detail, "ok": True})
    return True, result


def table(rows: Any) -> list[dict[str, Any]]:
    """Dataclass rows as plain dicts for ``st.dataframe`` (nested values as JSON text)."""
    import json
    from dataclasses import asdict

    out = []
    for r in rows:
        d = asdict(r)
        out.append(
            {
                k: (json.dumps(v, default=str) if isinstance(v, dict | list) else v)
                for k, v in d.items()
            }
        )
    return out
