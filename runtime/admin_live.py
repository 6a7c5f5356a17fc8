"""Map edits reach running guards without a restart.

Every map edit bumps the config version the switch watcher polls (and publishes it, with
Redis); :func:`follow_map` is the watcher's ``apply``: at each new version it reloads the
stored map and hands it to the guard (``guard.set_map``) when it differs from the one in
use, then applies the switch snapshot as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stability.errors import StabilityError
from stability.switches import SwitchSnapshot

log = logging.getLogger(__name__)

__all__ = ["follow_map"]


def follow_map(store: Any, guard: Any) -> Callable[[SwitchSnapshot], None]:
    """The watcher's ``apply`` for ``guard``: the stored map (``store``: a
    :class:`~stability.depmap_store.DependencyMapStore`), then the switch snapshot."""

    def apply(snapshot: SwitchSnapshot) -> None:
        try:
            dmap = store.load()
        except StabilityError:
            log.warning("dependency map unreadable; the guard keeps the map it has")
        else:
            if dmap.resources and dmap.to_dict() != guard.map.to_dict():
                guard.set_map(dmap)
        guard.apply(snapshot)

    return apply
