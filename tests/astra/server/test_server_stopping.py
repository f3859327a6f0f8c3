"""A shutdown stops the process's own clients, then ends the server's streams with
UNAVAILABLE at once instead of waiting the grace for them (over real gRPC on loopback)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from astra.server._interceptors import SHUTTING_DOWN

#: Longer than any test may take: a shutdown waiting for the grace fails by its deadline.
GRACE = 3600.0
#: The deadline for a shutdown that waits for nothing.
DEADLINE = 30.0


async def ended_unavailable(call: grpc.aio.UnaryStreamCall | grpc.aio.StreamStreamCall) -> int:
    """Read ``call`` until it ends, which must be with the shutdown's UNAVAILABLE; how
    many messages came before."""
    count = 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            await asyncio.wait_for(call.read(), DEADLINE)
            count += 1
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == SHUTTING_DOWN
    return count


async def test_streams_end_with_unavailable_when_the_shutdown_begins(serve, caplog):
    closed: list[str] = []

    async def idle(request: bytes, context: object):
        try:
            yield b"first"
            await asyncio.Event().wait()
        finally:
            closed.append("idle")

    async def busy(request: bytes, context: object):
        while True:
            yield b"more"
            await asyncio.sleep(0)

    async def writer(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        await context.write(b"first")
        await asyncio.Event().wait()

    running = await serve(stream={"Idle": idle, "Busy": busy, "Writer": writer}, grace=GRACE)
    calls = [running.stream(name)(b"") for name in ("Idle", "Busy", "Writer")]
    for call in calls:
        await asyncio.wait_for(call.read(), DEADLINE)
    caplog.set_level(logging.INFO, logger="astra.server.rpc")
    await asyncio.wait_for(running.server.shutdown(), DEADLINE)
    idle_call, busy_call, writer_call = calls
    assert await ended_unavailable(idle_call) == 0
    assert await ended_unavailable(writer_call) == 0
    await ended_unavailable(busy_call)  # after whatever was on its way
    assert closed == ["idle"]  # the servicer's generator was closed
    logged = [r for r in caplog.records if r.name == "astra.server.rpc"]
    assert len(logged) == 3 and {r.levelno for r in logged} == {logging.INFO}, logged


async def test_bidirectional_streams_end_with_unavailable_when_the_shutdown_begins(serve):
    """A heartbeat-like reader (context.read / context.write) and an async generator over
    the requests both end at once, not at the end of the grace."""
    read: list[bytes] = []

    async def reader(request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        while (request := await context.read()) is not grpc.aio.EOF:
            read.append(request)
            await context.write(b"ack")

    async def echoing(request_iterator: AsyncIterator[bytes], context: object):
        async for request in request_iterator:
            yield request

    running = await serve(bidi={"Reader": reader, "Echoing": echoing}, grace=GRACE)
    calls = [running.bidi(name)() for name in ("Reader", "Echoing")]
    for call in calls:
        await call.write(b"beat")
        assert await asyncio.wait_for(call.read(), DEADLINE) in (b"ack", b"beat")
    await asyncio.wait_for(running.server.shutdown(), DEADLINE)
    for call in calls:
        assert await ended_unavailable(call) == 0
    assert read == [b"beat"]


async def test_own_clients_stop_before_the_streams_end(serve, caplog):
    """The callbacks of on_shutdown run while the streams still flow; a failing one is
    logged and the others still run."""
    served = asyncio.Event()
    seen: list[str] = []

    async def feed(request: bytes, context: object):
        served.set()
        try:
            while True:
                yield b"tick"
                await asyncio.sleep(0.01)
        finally:
            seen.append("the stream ended")

    running = await serve(stream={"Feed": feed}, grace=GRACE)

    async def follow() -> None:  # this process's own client of the server
        async for _ in running.stream("Feed")(b""):
            pass

    client = asyncio.create_task(follow())

    async def stop_client() -> None:
        seen.append("stopping the client")
        client.cancel()
        await asyncio.wait((client,))

    async def broken() -> None:
        raise RuntimeError("broken callback")

    running.server.on_shutdown(stop_client)
    running.server.on_shutdown(broken)
    await asyncio.wait_for(served.wait(), DEADLINE)
    await asyncio.wait_for(running.server.shutdown(), DEADLINE)
    assert seen == ["stopping the client", "the stream ended"]
    assert client.cancelled()  # cancelled by its owner, not failed by a status
    assert any("a shutdown callback failed" in r.getMessage() for r in caplog.records)
