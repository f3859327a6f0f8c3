"""Server lifecycle, health checking and reflection, over real gRPC on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from astra.server import Server
from astra.testing import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


async def check(channel: grpc.aio.Channel, service: str = "") -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return response.status


async def test_port_zero_reports_the_port_actually_bound(serve):
    running = await serve()
    assert running.server.port > 0
    assert running.server.address == f"127.0.0.1:{running.server.port}"
    assert await running.unary("Echo")(b"hello", timeout=5) == b"hello"


async def test_health_serves_the_server_and_each_registered_service(serve):
    running = await serve()
    assert await check(running.channel) == SERVING
    assert await check(running.channel, running.service) == SERVING
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(running.channel, "astra.test.Unknown")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_status_is_settable_per_service(serve):
    running = await serve()
    await running.server.set_serving(running.service, False)
    assert await check(running.channel, running.service) == NOT_SERVING
    assert await check(running.channel) == SERVING
    await running.server.set_serving(running.service, True)
    assert await check(running.channel, running.service) == SERVING


async def test_status_set_before_start_is_the_initial_one():
    server = Server()
    await server.set_serving("astra.test.Warming", False)
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        assert await check(channel, "astra.test.Warming") == NOT_SERVING
        assert await check(channel) == SERVING


async def test_health_watchers_see_not_serving_before_the_server_drains(serve):
    running = await serve()
    health = health_pb2_grpc.HealthStub(running.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await asyncio.wait_for(watch.read(), 5)).status == SERVING
    shutdown = asyncio.create_task(running.server.shutdown(grace=10))
    assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
    watch.cancel()  # the last in-flight RPC: the drain ends now, well before the grace
    started = time.monotonic()
    await asyncio.wait_for(shutdown, 5)
    assert time.monotonic() - started < 5
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(running.channel)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def reflected_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    call = stub.ServerReflectionInfo(iter([request]), timeout=5)
    (response,) = [response async for response in call]
    return {service.name for service in response.list_services_response.service}


async def test_reflection_lists_every_service(serve):
    running = await serve()
    listed = await reflected_services(running.channel)
    assert listed == {running.service, HEALTH, REFLECTION}
    assert set(running.server.service_names) == listed


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    async def Export(self, request, context):
        rejected = len(request.resource_spans)
        return trace_service_pb2.ExportTraceServiceResponse(
            partial_success=trace_service_pb2.ExportTracePartialSuccess(rejected_spans=rejected)
        )


async def test_a_generated_servicer_is_served_checked_and_reflected():
    descriptor = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]
    server = Server()
    add_to_server = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    server.add_servicer(Traces(), add_to_server, descriptor)
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[{}, {}])
        response = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)
        assert response.partial_success.rejected_spans == 2
        assert await check(channel, descriptor.full_name) == SERVING
        assert await reflected_services(channel) == {descriptor.full_name, HEALTH, REFLECTION}


async def test_in_flight_rpc_finishes_within_the_grace_period(serve):
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: bytes, context: object) -> bytes:
        entered.set()
        await release.wait()
        return b"done"

    running = await serve(unary={"Slow": slow})
    call = asyncio.ensure_future(running.unary("Slow")(b"", timeout=10))
    await asyncio.wait_for(entered.wait(), 5)
    shutdown = asyncio.create_task(running.server.shutdown(grace=10))
    await asyncio.sleep(0)
    assert not shutdown.done()
    release.set()
    assert await asyncio.wait_for(call, 5) == b"done"
    await asyncio.wait_for(shutdown, 5)


async def test_rpc_longer_than_the_grace_period_is_cancelled(serve):
    entered = asyncio.Event()

    async def stuck(request: bytes, context: object) -> bytes:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    running = await serve(unary={"Stuck": stuck})
    call = asyncio.ensure_future(running.unary("Stuck")(b"", timeout=10))
    await asyncio.wait_for(entered.wait(), 5)
    started = time.monotonic()
    await asyncio.wait_for(running.server.shutdown(grace=0.2), 5)
    assert time.monotonic() - started < 2
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


async def test_shutdown_is_idempotent_and_concurrent_callers_share_it(serve):
    running = await serve()
    waiter = asyncio.create_task(running.server.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    await asyncio.wait_for(asyncio.gather(*(running.server.shutdown(grace=1) for _ in range(3))), 5)
    await asyncio.wait_for(waiter, 5)
    await running.server.shutdown()  # again: returns at once


async def test_async_with_starts_and_shuts_down():
    async with Server() as server, grpc.aio.insecure_channel(server.address) as channel:
        assert await check(channel) == SERVING
    await asyncio.wait_for(server.wait(), 1)


async def test_serve_forever_shuts_down_when_cancelled():
    address = f"127.0.0.1:{free_port()}"
    server = Server(address)
    serving = asyncio.create_task(server.serve_forever())
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        response = await health.Check(request, timeout=5, wait_for_ready=True)
    assert response.status == SERVING
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    await asyncio.wait_for(server.wait(), 1)


async def test_lifecycle_misuse_is_an_error(serve):
    idle = Server()
    with pytest.raises(RuntimeError, match="not started"):
        _ = idle.port
    running = await serve()
    with pytest.raises(RuntimeError, match="before start"):
        late = grpc.method_handlers_generic_handler("astra.test.Late", {})
        running.server.add_generic_handler(late)
    with pytest.raises(RuntimeError, match="started once"):
        await running.server.start()
    twice = Server()
    twice.add_generic_handler(grpc.method_handlers_generic_handler("astra.test.Twice", {}))
    with pytest.raises(ValueError, match="registered twice"):
        twice.add_generic_handler(grpc.method_handlers_generic_handler("astra.test.Twice", {}))


async def test_a_busy_port_is_an_oserror():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        server = Server(address)
        with pytest.raises(OSError, match=f"cannot listen on {address}"):
            await server.start()
        await server.shutdown()


async def test_background_tasks_are_cancelled_and_awaited_after_the_drain(serve):
    running = await serve()
    cleaned_up = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    task = running.server.spawn(forever(), name="forever")
    await asyncio.sleep(0)
    await running.server.shutdown(grace=1)
    assert task.cancelled() and cleaned_up.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        running.server.spawn(forever(), name="too-late")


async def test_a_failing_background_task_is_logged(serve, eventually, caplog):
    running = await serve()

    async def broken() -> None:
        raise ValueError("the reason it broke")

    with caplog.at_level(logging.ERROR, logger="astra.server"):
        running.server.spawn(broken(), name="broken-task")
        await eventually(lambda: any("broken-task" in r.getMessage() for r in caplog.records))
    record = next(record for record in caplog.records if "broken-task" in record.getMessage())
    assert record.exc_info is not None and "the reason it broke" in str(record.exc_info[1])
    assert await running.unary("Echo")(b"still serving", timeout=5) == b"still serving"
