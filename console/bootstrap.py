"""The composition root: build the running system from settings, and shut it down."""

from __future__ import annotations

from dataclasses import dataclass

from paycore import Database, IdGenerator, PayCore
from paycore.locks import make_lock

from .migrate import upgrade_database
from .settings import Settings


@dataclass
class Platform:
    """The running system's parts; :meth:`close` releases them in reverse order."""

    settings: Settings
    db: Database
    paycore: PayCore

    def close(self) -> None:
        self.paycore.close()


def build_platform(settings: Settings | None = None, *, migrate: bool = True) -> Platform:
    """Create engines and clients from ``settings``, apply migrations, wire the services."""
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    if migrate:
        upgrade_database(db.engine)
    core = PayCore(
        db,
        lock=make_lock(settings.redis_url),
        ids=IdGenerator(settings.node_id),
    )
    return Platform(settings=settings, db=db, paycore=core)
