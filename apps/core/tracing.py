"""OpenTelemetry tracing, on when OTEL_ENABLED is true: Django and Celery instrumentation, and one span per tool
call with child spans for the guards, the music21 work and the audit write. Spans are exported over OTLP/HTTP as
the standard OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME variables say. Span attributes never carry personal data
(no user, no address): tool, group, score id, outcome, transport.

Off, `span()` is a shared null context: nothing is created per call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings

_NULL = contextlib.nullcontext()
_configured: list[bool] = []


def tracing_setup() -> None:
    """Install the exporter and the Django and Celery instrumentation, once. Forked children (Celery's pool)
    inherit both; the SDK restarts its export thread after a fork by itself."""
    if not settings.OTEL_ENABLED or _configured:
        return
    _configured.append(True)
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # tests may have installed their own
        provider = TracerProvider(
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "music21-platform")})
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one while tracing is on; a no-op otherwise."""
    if not settings.OTEL_ENABLED:
        return _NULL
    return _span(name, attributes)


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry import trace

    tracer = trace.get_tracer("music21_platform")
    with tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None}) as s:
        yield s
