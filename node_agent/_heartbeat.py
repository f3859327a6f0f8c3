"""One heartbeat stream to the Resource service, for one node (an agent) or many (a
batch of simulated nodes): the same API either way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from astra._gen.astra.v1 import resource_service_pb2
from node_agent._stubs import ResourceStub


async def heartbeat_stream(
    stub: ResourceStub,
    *,
    beat: Callable[[], resource_service_pb2.HeartbeatRequest | None],
    follow: Callable[[resource_service_pb2.HeartbeatDirective], Awaitable[None]],
    interval: Callable[[], float],
    healthy: Callable[[], None],
) -> None:
    """Open a Heartbeat stream, write ``beat()`` every ``interval()`` seconds on a fixed
    cadence (nothing when it is ``None``) and hand each directive to ``follow`` as it
    arrives.

    ``healthy()`` is called once the stream carried a beat and stayed up for an
    interval (time to reset a backoff). Returns when the server ends the stream.

    Raises:
        grpc.aio.AioRpcError: the stream failed.
        Exception: whatever ``follow`` raised (e.g. to reconnect elsewhere).
    """
    call = stub.Heartbeat()

    async def read() -> None:
        async for response in call:
            for directive in response.directives:
                await follow(directive)

    reader = asyncio.create_task(read(), name="astra.heartbeat.directives")
    loop = asyncio.get_running_loop()
    try:
        wrote = False
        due = loop.time()
        while not reader.done():
            request = beat()
            if request is not None:
                try:
                    await call.write(request)
                except asyncio.InvalidStateError:  # the server ended the stream
                    break
                if wrote:
                    healthy()
                wrote = True
            # On a fixed cadence, so that slow writes do not stretch the period.
            due = max(due + interval(), loop.time())
            await asyncio.wait({reader}, timeout=due - loop.time())
        await reader
    finally:
        reader.cancel()
        call.cancel()
