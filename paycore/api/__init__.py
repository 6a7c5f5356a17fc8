"""The pay core HTTP API."""

from .app import ApiConfig, create_app

__all__ = ["ApiConfig", "create_app"]
