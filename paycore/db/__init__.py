"""The pay core's storage: :mod:`.engine` (the :class:`~.engine.Database`, retries and
error wrapping), :mod:`.schema` (every pay table, on one ``metadata`` that Alembic
reads; the tables are grouped in :mod:`.merchant_tables`, :mod:`.pay_tables`,
:mod:`.ledger_tables` and :mod:`.ops_tables`), :mod:`.shadow` (the shadow copies of
the tables) and :mod:`.util` (dialect-aware statement helpers). Callers import from
those modules; importing this package loads none of them.
"""

__all__: list[str] = []
