"""Alembic environment: one history for every package's tables."""

from __future__ import annotations

from alembic import context

from alerts.schema import metadata as alerts_metadata
from collectors.schema import metadata as collectors_metadata
from console.schema import metadata as console_metadata
from simulator.schema import metadata as simulator_metadata
from paycore.db.schema import metadata as paycore_metadata
from stability.schema import metadata as stability_metadata

target_metadata = [
    paycore_metadata,
    stability_metadata,
    collectors_metadata,
    alerts_metadata,
    console_metadata,
    simulator_metadata,
]


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.begin() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
