"""A real OTLP/gRPC receiver on loopback that keeps what processes export to it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, Self

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


class ReceivedSpan(NamedTuple):
    """One exported span and the ``service.name`` of the process that sent it."""

    service: str
    span: trace_pb2.Span


def _service_name(attributes: Iterable[common_pb2.KeyValue]) -> str:
    return next((kv.value.string_value for kv in attributes if kv.key == "service.name"), "")


class OtlpCollector(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    """Receives OTLP traces and metrics over gRPC on a free loopback port and keeps them:
    point an exporter at :attr:`endpoint`.

    >>> async with OtlpCollector() as collector:
    ...     ...  # a process exports with OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint
    ...     [received.span.name for received in collector.spans]
    """

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        #: (service.name, metric name) of every metric received.
        self.metrics: list[tuple[str, str]] = []
        self._server: grpc.aio.Server | None = None
        self._port = 0

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:port``, as OTLP exporters take it."""
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, server)
        self._port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """Stop receiving. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest
        | metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> (
        trace_service_pb2.ExportTraceServiceResponse
        | metrics_service_pb2.ExportMetricsServiceResponse
    ):
        """Both services' Export: keep the spans or the metrics' names."""
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for resource_spans in request.resource_spans:
                service = _service_name(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    self.spans += [ReceivedSpan(service, span) for span in scope.spans]
            return trace_service_pb2.ExportTraceServiceResponse()
        for resource_metrics in request.resource_metrics:
            service = _service_name(resource_metrics.resource.attributes)
            for scoped in resource_metrics.scope_metrics:
                self.metrics += [(service, metric.name) for metric in scoped.metrics]
        return metrics_service_pb2.ExportMetricsServiceResponse()
