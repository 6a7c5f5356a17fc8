"""The pay core HTTP API: :func:`create_app` builds one FastAPI app over a
:class:`~paycore.core.PayCore` with its :class:`ApiConfig` (rate limits, channel
callback secrets, the shadow core, the thread pool); the routes are in
:mod:`.routes`, the edge concerns (request ids, error bodies, body caps) in :mod:`.edge`.
"""

from .app import ApiConfig, create_app

__all__ = ["ApiConfig", "create_app"]
