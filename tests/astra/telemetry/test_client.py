"""Traces across RPCs: the channels' CLIENT spans and the ``traceparent`` servers join."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra.config import OtelSettings
from astra.server import Server
from programs.cli._client import Client

SERVICE = "astra.test.Traced"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def echo(request: bytes, context: Any) -> bytes:
    carrier = {item.key: item.value for item in context.invocation_metadata() or ()}
    return carrier.get("traceparent", "").encode()


async def missing(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort returned")


async def two(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"1"
    yield b"2"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.configure(OtelSettings(exporter="none"), span_exporter=exporter)
    yield exporter
    telemetry.shutdown()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    running = Server("127.0.0.1:0", grace=0.2)
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Missing": grpc.unary_unary_rpc_method_handler(missing),
        "Two": grpc.unary_stream_rpc_method_handler(two),
    }
    running.add_generic_handler(grpc.method_handlers_generic_handler(SERVICE, handlers))
    async with running:
        yield running


class Hop(NamedTuple):
    client: ReadableSpan
    server: ReadableSpan


def hops(exporter: InMemorySpanExporter) -> dict[str, Hop]:
    """Each call's CLIENT span and the SERVER span that is its child, by method name."""
    finished = exporter.get_finished_spans()
    servers = {
        span.parent.span_id: span
        for span in finished
        if span.kind is trace.SpanKind.SERVER and span.parent is not None
    }
    return {
        span.name: Hop(span, servers[span.context.span_id])
        for span in finished
        if span.kind is trace.SpanKind.CLIENT and span.context.span_id in servers
    }


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


async def test_a_traced_channel_carries_the_trace_into_the_servers_span(spans, server):
    async with telemetry.channel(server.address) as channel:
        with telemetry.tracer("test").start_as_current_span("caller") as caller:
            sent = await channel.unary_unary(f"/{SERVICE}/Echo")(b"", timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary(f"/{SERVICE}/Missing")(b"", timeout=5)
            streamed = [m async for m in channel.unary_stream(f"/{SERVICE}/Two")(b"", timeout=5)]
    assert streamed == [b"1", b"2"]
    names = {f"{SERVICE}/{method}" for method in ("Echo", "Missing", "Two")}
    await wait_for(lambda: set(hops(spans)) == names)
    found = hops(spans)
    trace_id = caller.get_span_context().trace_id
    for name, (client, server_span) in found.items():
        assert (
            client.parent is not None and client.parent.span_id == caller.get_span_context().span_id
        )
        assert client.context.trace_id == server_span.context.trace_id == trace_id, name
        assert server_span.parent is not None and server_span.parent.is_remote
        assert client.attributes["server.address"] == server.address
        assert client.attributes["rpc.method"] == name.rsplit("/", 1)[1]
    echo_client = found[f"{SERVICE}/Echo"].client
    assert sent.decode() == f"00-{trace_id:032x}-{echo_client.context.span_id:016x}-03"
    assert echo_client.attributes["rpc.grpc.status_code"] == 0
    failed = found[f"{SERVICE}/Missing"].client
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.status.description == "NOT_FOUND: no such thing"


async def test_the_channels_span_replaces_a_traceparent_the_caller_sent(spans, server):
    theirs = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    async with telemetry.channel(server.address) as channel:
        echoed = await channel.unary_unary(f"/{SERVICE}/Echo")(
            b"", timeout=5, metadata=(("traceparent", theirs), ("x-other", "kept"))
        )
    (client,) = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.CLIENT]
    assert echoed.decode() == f"00-{client.context.trace_id:032x}-{client.context.span_id:016x}-03"
    assert echoed.decode() != theirs


async def test_the_synchronous_cli_client_carries_its_trace_into_the_service(spans, server):
    def call() -> tuple[str, int]:
        with (
            telemetry.tracer("test").start_as_current_span("astra nodes") as command,
            Client(server.address, timeout=5) as client,
        ):
            status = client.health()
            return status, command.get_span_context().trace_id

    status, trace_id = await asyncio.to_thread(call)
    assert status == "SERVING"
    await wait_for(lambda: "grpc.health.v1.Health/Check" in hops(spans))
    client_span, server_span = hops(spans)["grpc.health.v1.Health/Check"]
    assert client_span.context.trace_id == server_span.context.trace_id == trace_id
    assert client_span.attributes["rpc.grpc.status_code"] == 0
    assert server_span.attributes["rpc.grpc.status_code"] == 0


async def test_while_telemetry_is_off_channels_are_plain(server):
    assert not telemetry.enabled()
    theirs = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    async with telemetry.channel(server.address) as channel:
        assert channel._unary_unary_interceptors == []  # nothing runs per call
        echoed = await channel.unary_unary(f"/{SERVICE}/Echo")(
            b"", timeout=5, metadata=(("traceparent", theirs),)
        )
    assert echoed.decode() == theirs  # what the caller sent, untouched
    plain = grpc.insecure_channel(server.address)
    assert telemetry.intercept_channel(plain, server.address) is plain
    plain.close()
