"""Real astra.server.Server instances on loopback, serving raw-bytes test methods."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from astra.server import Server

#: The test service's name: a generic handler on raw bytes, no proto needed.
PROBE = "astra.test.Probe"


@dataclass
class Running:
    """A started server and a channel to it; every one serves ``Echo``."""

    service = PROBE
    server: Server
    channel: grpc.aio.Channel

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        return self.channel.unary_unary(f"/{PROBE}/{method}")

    def stream(self, method: str) -> grpc.aio.UnaryStreamMultiCallable:
        return self.channel.unary_stream(f"/{PROBE}/{method}")

    def bidi(self, method: str) -> grpc.aio.StreamStreamMultiCallable:
        return self.channel.stream_stream(f"/{PROBE}/{method}")


Serve = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(unary={name: fn}, stream={name: fn}, bidi={name: fn}, **server_kwargs)``
    starts a
    Server with those raw-bytes methods and ``Echo`` under :data:`PROBE`; everything is
    torn down after the test."""
    started: list[Running] = []

    async def start(
        unary: dict[str, Callable[..., Any]] | None = None,
        stream: dict[str, Callable[..., Any]] | None = None,
        bidi: dict[str, Callable[..., Any]] | None = None,
        **server_kwargs: Any,
    ) -> Running:
        handlers = {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        for name, fn in (unary or {}).items():
            handlers[name] = grpc.unary_unary_rpc_method_handler(fn)
        for name, fn in (stream or {}).items():
            handlers[name] = grpc.unary_stream_rpc_method_handler(fn)
        for name, fn in (bidi or {}).items():
            handlers[name] = grpc.stream_stream_rpc_method_handler(fn)
        server = Server("127.0.0.1:0", **server_kwargs)
        server.add_generic_handler(grpc.method_handlers_generic_handler(PROBE, handlers))
        await server.start()
        running = Running(server, grpc.aio.insecure_channel(server.address))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.close()
        await running.server.shutdown(grace=0)


async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


@pytest.fixture
def eventually() -> Callable[[Callable[[], bool]], Awaitable[None]]:
    """``await eventually(condition)``: wait until ``condition()`` holds, 5 s at most."""

    async def wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.01)

    return wait
