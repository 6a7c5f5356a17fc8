"""The ops pages' plain helpers (no Streamlit here): :func:`ids_as_text` and
:func:`big_ints_as_text` (64-bit ids as strings, so a browser never rounds them through a
JavaScript number) and :func:`flash` / :func:`take_flash` (a confirmation kept across the
rerun that refreshes a page).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def ids_as_text(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table rows with every id (``id`` and ``*_id`` integer columns) as a string.

    Our ids are 64-bit; a browser table holds numbers as JavaScript doubles, exact only
    up to 2^53, so ``387985099441922048`` would show as ``...050``. As text it is exact.
    """

    def text(k: str, v: Any) -> Any:
        is_id = k == "id" or k.endswith("_id")
        return str(v) if is_id and isinstance(v, int) and not isinstance(v, bool) else v

    return [{k: text(k, v) for k, v in r.items()} for r in rows]


def big_ints_as_text(value: Any) -> Any:
    """``value`` (JSON-like) with integers beyond 2^53 as strings, for ``st.json``."""
    if isinstance(value, dict):
        return {k: big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [big_ints_as_text(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return value


_FLASH = "ops_flash:"


def flash(state: Any, page: str, message: str) -> None:
    """Keep ``message`` for ``page``'s next run (the rerun that refreshes its tables) in
    ``state`` (``st.session_state`` or any mutable mapping)."""
    state[_FLASH + page] = message


def take_flash(state: Any, page: str) -> str | None:
    """The message :func:`flash` kept for ``page``, once (``state``: ``st.session_state``
    or any mutable mapping)."""
    message = state.pop(_FLASH + page, None)
    return None if message is None else str(message)
