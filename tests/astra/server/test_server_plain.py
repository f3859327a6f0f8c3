"""Plain methods: their calls skip the interceptors while these would only log them, and
still end and are logged as through the interceptors."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra.config import OtelSettings
from astra.errors import NotFoundError
from tests.astra.server.conftest import PROBE

PLAIN = (f"/{PROBE}/Fast", f"/{PROBE}/Missing", f"/{PROBE}/Broken", f"/{PROBE}/Refused")


class Counting(grpc.aio.ServerInterceptor):
    """Counts the calls of each method it sees."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def intercept_service(self, continuation, handler_call_details):
        self.seen.append(handler_call_details.method.rpartition("/")[2])
        return await continuation(handler_call_details)


async def fast(request: bytes, context: object) -> bytes:
    return request


async def not_found(request: bytes, context: object) -> bytes:
    raise NotFoundError("no such app")


async def broken(request: bytes, context: object) -> bytes:
    raise RuntimeError("a bug with internals in its message")


async def refused(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "draining", (("x-why", "drain"),))
    raise AssertionError("abort returned")


METHODS = {"Fast": fast, "Missing": not_found, "Broken": broken, "Refused": refused}


def rpc_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "astra.server.rpc"]


async def test_plain_calls_skip_the_interceptors_and_others_do_not(serve, caplog) -> None:
    counting = Counting()
    running = await serve(unary=METHODS, interceptors=(counting,), plain=PLAIN)
    with caplog.at_level(logging.INFO, logger="astra.server.rpc"):
        assert await running.unary("Fast")(b"x", timeout=5) == b"x"
        assert await running.unary("Echo")(b"y", timeout=5) == b"y"
    assert counting.seen == ["Echo"]
    assert rpc_records(caplog) == []  # an OK call is logged at DEBUG only


async def test_plain_failures_get_the_statuses_and_logs_of_the_interceptors(
    serve, caplog, eventually
) -> None:
    counting = Counting()
    running = await serve(unary=METHODS, interceptors=(counting,), plain=PLAIN)
    caught = {}
    with caplog.at_level(logging.INFO, logger="astra.server.rpc"):
        for method in ("Missing", "Broken", "Refused"):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await running.unary(method)(b"x", timeout=5)
            caught[method] = error.value
        await eventually(lambda: len(rpc_records(caplog)) == 3)
    assert counting.seen == []
    statuses = {method: (error.code(), error.details()) for method, error in caught.items()}
    assert statuses == {
        "Missing": (grpc.StatusCode.NOT_FOUND, "no such app"),
        "Broken": (grpc.StatusCode.INTERNAL, "internal error"),
        "Refused": (grpc.StatusCode.UNAVAILABLE, "draining"),
    }
    assert ("x-why", "drain") in tuple(caught["Refused"].trailing_metadata() or ())
    logged = {
        record.getMessage().split()[0].rpartition("/")[2]: record for record in rpc_records(caplog)
    }
    assert {method: record.levelno for method, record in logged.items()} == {
        "Missing": logging.INFO,
        "Broken": logging.WARNING,
        "Refused": logging.WARNING,
    }
    assert logged["Missing"].getMessage().startswith(f"/{PROBE}/Missing NOT_FOUND ")
    assert logged["Refused"].getMessage().endswith("ms: draining")
    bug = [record for record in caplog.records if record.name == "astra.server._errors"]
    assert bug and bug[0].exc_info is not None  # the bug is logged with its traceback


async def test_plain_calls_go_through_the_interceptors_while_logs_are_at_debug(
    serve, caplog, eventually
) -> None:
    counting = Counting()
    running = await serve(unary=METHODS, interceptors=(counting,), plain=PLAIN)
    with caplog.at_level(logging.DEBUG, logger="astra.server.rpc"):
        assert await running.unary("Fast")(b"x", timeout=5) == b"x"
        await eventually(lambda: len(rpc_records(caplog)) == 1)
    assert counting.seen == ["Fast"]
    assert rpc_records(caplog)[0].getMessage().startswith(f"/{PROBE}/Fast OK ")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Telemetry on, exporting spans to memory; off again after the test."""
    exporter = InMemorySpanExporter()
    telemetry.configure(
        OtelSettings(exporter="none"), span_exporter=exporter, metric_reader=InMemoryMetricReader()
    )
    yield exporter
    telemetry.shutdown()


async def test_plain_calls_get_their_server_span_while_telemetry_is_on(
    serve, spans, eventually
) -> None:
    counting = Counting()
    running = await serve(unary=METHODS, interceptors=(counting,), plain=PLAIN)
    assert await running.unary("Fast")(b"x", timeout=5) == b"x"
    assert counting.seen == ["Fast"]

    def server_spans() -> list:
        finished = spans.get_finished_spans()
        return [span for span in finished if span.kind is trace.SpanKind.SERVER]

    await eventually(lambda: len(server_spans()) == 1)
    assert server_spans()[0].name == f"{PROBE}/Fast"
