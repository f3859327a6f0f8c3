"""Process-wide OpenTelemetry configuration: off until :func:`configure` turns it on.

AstraRay keeps its own tracer and meter providers rather than the OTel globals, which can
be set only once per process: tests and embedding programs can reconfigure freely.
Instrumented code asks :func:`tracer` / :func:`meter` at start-up, after ``configure``,
or per use (both are a dictionary lookup); :func:`enabled` is the cheap check hot paths
make before doing any telemetry work at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

from astra.config import OtelSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

_log = logging.getLogger(__name__)


@dataclass
class _State:
    tracer_provider: trace.TracerProvider = field(default_factory=trace.NoOpTracerProvider)
    meter_provider: metrics.MeterProvider = field(default_factory=metrics.NoOpMeterProvider)
    enabled: bool = False
    settings: OtelSettings | None = None
    tracers: dict[str, trace.Tracer] = field(default_factory=dict)
    meters: dict[str, metrics.Meter] = field(default_factory=dict)


_state = _State()


def configure(
    settings: OtelSettings,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> None:
    """Set up tracing and metrics from ``settings``, replacing (and shutting down) any
    previous configuration.

    ``settings.exporter`` picks OTLP over gRPC (endpoint from the settings or
    ``OTEL_EXPORTER_OTLP_ENDPOINT``), the console, or nothing. ``span_exporter`` and
    ``metric_reader`` add exporters of the caller's own, e.g. OTel's in-memory ones in
    tests; spans reach ``span_exporter`` synchronously as they end.
    """
    if settings.exporter == "none" and span_exporter is None and metric_reader is None:
        shutdown()  # off, and the SDK not even imported
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    shutdown()
    exported_spans, exported_metrics = _exporters(settings)
    readers: list[MetricReader] = (
        [] if exported_metrics is None else [PeriodicExportingMetricReader(exported_metrics)]
    )
    if metric_reader is not None:
        readers.append(metric_reader)
    if exported_spans is None and span_exporter is None and not readers:
        return
    resource = Resource.create({"service.name": settings.service_name})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if exported_spans is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(exported_spans))
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    global _state
    _state = _State(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(
            metric_readers=readers, resource=resource, shutdown_on_exit=False
        ),
        enabled=True,
        settings=settings,
    )
    _log.info(
        "OpenTelemetry on: exporter %s for service %s", settings.exporter, settings.service_name
    )


def _exporters(settings: OtelSettings) -> tuple[SpanExporter | None, MetricExporter | None]:
    """The span and metric exporters ``settings.exporter`` asks for (imported only then)."""
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = settings.endpoint
        return OTLPSpanExporter(endpoint=endpoint), OTLPMetricExporter(endpoint=endpoint)
    if settings.exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(), ConsoleMetricExporter()
    return None, None


def shutdown() -> None:
    """Flush and stop exporting; telemetry is off afterwards. Idempotent."""
    global _state
    state, _state = _state, _State()
    if state.enabled:  # the SDK's providers, so the SDK is imported already
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        if isinstance(state.tracer_provider, TracerProvider):
            state.tracer_provider.shutdown()
        if isinstance(state.meter_provider, MeterProvider):
            state.meter_provider.shutdown()


def enabled() -> bool:
    """Whether telemetry is configured; when not, instrumented code should skip it entirely."""
    return _state.enabled


def settings() -> OtelSettings | None:
    """The settings telemetry was configured with while it is on (e.g. for processes
    this one starts), else ``None``."""
    return _state.settings


def tracer(name: str) -> trace.Tracer:
    """The tracer for instrumentation scope ``name`` (a no-op one while telemetry is off)."""
    tracers, provider = _state.tracers, _state.tracer_provider
    return tracers.get(name) or tracers.setdefault(name, provider.get_tracer(name))


def meter(name: str) -> metrics.Meter:
    """The meter for instrumentation scope ``name`` (a no-op one while telemetry is off)."""
    meters, provider = _state.meters, _state.meter_provider
    return meters.get(name) or meters.setdefault(name, provider.get_meter(name))
