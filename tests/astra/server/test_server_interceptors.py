"""The logging and OpenTelemetry interceptors, on real RPCs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NamedTuple

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra.config import OtelSettings
from astra.errors import NotFoundError
from astra.server import TelemetryInterceptor

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


async def not_found(request: bytes, context: object) -> bytes:
    raise NotFoundError("no such app")


async def broken(request: bytes, context: object) -> bytes:
    raise RuntimeError("bug")


async def nested(request: bytes, context: object) -> bytes:
    with telemetry.tracer("test").start_as_current_span("inside"):
        return b"ok"


async def recording(request: bytes, context: object) -> bytes:
    return b"in a span" if trace.get_current_span().is_recording() else b"no span"


async def two(request: bytes, context: object):
    yield b"1"
    yield b"2"


def rpc_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "astra.server.rpc"]


# An aborted call's status reaches the client before the server has unwound the call, so
# its log record and span may come a moment after the client sees the error.


async def test_each_rpc_is_logged_with_method_status_and_duration(serve, caplog, eventually):
    running = await serve(unary={"Missing": not_found, "Broken": broken})
    with caplog.at_level(logging.DEBUG, logger="astra.server.rpc"):
        await running.unary("Echo")(b"x", timeout=5)
        for method in ("Missing", "Broken"):
            with pytest.raises(grpc.aio.AioRpcError):
                await running.unary(method)(b"x", timeout=5)
        await eventually(lambda: len(rpc_records(caplog)) == 3)
    by_method = {record.getMessage().split()[0]: record for record in rpc_records(caplog)}
    methods = ("Echo", "Missing", "Broken")
    ok, missing, failed = (by_method[f"/{running.service}/{method}"] for method in methods)
    levels = (ok.levelno, missing.levelno, failed.levelno)
    assert levels == (logging.DEBUG, logging.INFO, logging.WARNING)
    assert ok.getMessage().startswith("/astra.test.Probe/Echo OK ")
    assert ok.getMessage().endswith("ms")
    assert missing.getMessage().startswith("/astra.test.Probe/Missing NOT_FOUND ")
    assert missing.getMessage().endswith(": no such app")
    assert failed.getMessage().startswith("/astra.test.Probe/Broken INTERNAL ")


class Telemetry(NamedTuple):
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """Telemetry on, exporting to memory; off again after the test."""
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure(OtelSettings(exporter="none"), span_exporter=spans, metric_reader=metrics)
    yield Telemetry(spans, metrics)
    telemetry.shutdown()


def server_spans(exporter: InMemorySpanExporter) -> list:
    """The server spans in the order the calls started."""
    spans = [span for span in exporter.get_finished_spans() if span.kind is trace.SpanKind.SERVER]
    return sorted(spans, key=lambda span: span.start_time)


async def test_a_server_span_per_rpc_with_the_status_code(serve, otel, eventually):
    running = await serve(unary={"Missing": not_found}, stream={"Two": two})
    await running.unary("Echo")(b"x", timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await running.unary("Missing")(b"x", timeout=5)
    assert [message async for message in running.stream("Two")(b"", timeout=5)] == [b"1", b"2"]
    await eventually(lambda: len(server_spans(otel.spans)) == 3)
    echo, missing, streamed = server_spans(otel.spans)
    assert echo.name == "astra.test.Probe/Echo"
    assert dict(echo.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": "astra.test.Probe",
        "rpc.method": "Echo",
        "rpc.grpc.status_code": 0,
    }
    assert missing.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert missing.status.status_code is trace.StatusCode.UNSET  # the caller's error, not ours
    assert streamed.name == "astra.test.Probe/Two"
    assert streamed.attributes["rpc.grpc.status_code"] == 0


async def test_an_internal_error_marks_the_span_and_records_the_exception(serve, otel, eventually):
    running = await serve(unary={"Broken": broken})
    with pytest.raises(grpc.aio.AioRpcError):
        await running.unary("Broken")(b"x", timeout=5)
    await eventually(lambda: len(server_spans(otel.spans)) == 1)
    (span,) = server_spans(otel.spans)
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert span.status.status_code is trace.StatusCode.ERROR
    assert [event.attributes["exception.type"] for event in span.events] == ["RuntimeError"]


async def test_the_span_joins_the_callers_trace_and_parents_the_handlers_spans(serve, otel):
    running = await serve(unary={"Nested": nested, "Recording": recording})
    assert await running.unary("Recording")(b"x", timeout=5) == b"in a span"
    otel.spans.clear()
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    await running.unary("Nested")(b"x", timeout=5, metadata=(("traceparent", traceparent),))
    (server_span,) = server_spans(otel.spans)
    (inside,) = [span for span in otel.spans.get_finished_spans() if span.name == "inside"]
    assert server_span.context.trace_id == int(TRACE_ID, 16)
    assert server_span.parent is not None and server_span.parent.span_id == int(PARENT_SPAN_ID, 16)
    assert server_span.parent.is_remote
    assert inside.parent is not None and inside.parent.span_id == server_span.context.span_id


async def test_rpc_durations_are_recorded(serve, otel):
    running = await serve()
    for _ in range(3):
        await running.unary("Echo")(b"x", timeout=5)
    data = otel.metrics.get_metrics_data()
    (histogram,) = [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "rpc.server.duration"
    ]
    (point,) = histogram.data.data_points
    assert point.count == 3 and point.sum > 0
    assert point.attributes["rpc.method"] == "Echo"
    assert point.attributes["rpc.grpc.status_code"] == 0


class _Details(grpc.HandlerCallDetails):
    method = "/astra.test.Probe/Echo"
    invocation_metadata = ()


async def test_while_telemetry_is_off_handlers_pass_through_untouched(serve):
    assert not telemetry.enabled()
    handler = grpc.unary_unary_rpc_method_handler(nested)

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return handler

    assert await TelemetryInterceptor().intercept_service(continuation, _Details()) is handler
    running = await serve(unary={"Recording": recording})
    assert await running.unary("Recording")(b"x", timeout=5) == b"no span"
