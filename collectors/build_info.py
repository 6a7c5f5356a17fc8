"""What process is this: ``paywatch_build_info{version,python}`` and the standard process,
platform (Python) and garbage-collector collectors, registered on a given registry."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    gc_collector,
    platform_collector,
    process_collector,
)

__all__ = ["paywatch_version", "register_process_metrics"]


def paywatch_version() -> str:
    """The installed paywatch distribution's version (``0+unknown`` when not installed)."""
    try:
        return metadata.version("paywatch")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def register_process_metrics(registry: CollectorRegistry) -> Gauge:
    """Register ``paywatch_build_info`` (always 1) and the ``process_*``, ``python_info``
    and ``python_gc_*`` collectors on ``registry``; returns the build-info gauge."""
    info = Gauge(
        "paywatch_build_info",
        "Always 1: the running paywatch version and Python version as labels",
        ["version", "python"],
        registry=registry,
    )
    info.labels(paywatch_version(), platform.python_version()).set(1)
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return info
