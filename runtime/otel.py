"""OpenTelemetry tracing for a paywatch process: off unless ``PAYWATCH_OTEL_ENDPOINT``.

With ``PAYWATCH_OTEL_ENDPOINT=http://collector:4318`` every process exports its spans
over OTLP/HTTP to ``<endpoint>/v1/traces`` (a URL already ending in ``/v1/traces`` is
used as it is). The spans themselves are made by :mod:`paycore.tracing`'s helpers.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ENDPOINT_ENV = "PAYWATCH_OTEL_ENDPOINT"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector ``endpoint``."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def tracer_provider(service: str, processor: SpanProcessor) -> TracerProvider:
    """A provider naming ``service`` whose spans go to ``processor``."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    return provider


def configure_tracing(service: str, endpoint: str | None = None) -> TracerProvider | None:
    """Install a global tracer provider exporting to ``endpoint`` (default: the
    environment's); None, and nothing installed, when there is none."""
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV, "").strip()
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint))
    provider = tracer_provider(service, BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
