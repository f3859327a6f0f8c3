"""Backoff with full jitter, and unary calls retried on transient statuses only."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from astra._gen.astra.v1 import resource_service_pb2 as pb
from astra._gen.astra.v1 import resource_service_pb2_grpc
from astra.rpc import TRANSIENT, Backoff, retry_call
from astra.server import Server


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(base=0.1, cap=1.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    ceilings = [min(1.0, 0.1 * 2**attempt) for attempt in range(200)]
    assert all(0.1 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert max(delays[:3]) <= 0.4 and max(delays[10:]) > 0.8  # grows, then spreads over [base, cap]
    assert len({round(delay, 6) for delay in delays[10:]}) > 150  # jittered, not in step
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_base_must_be_positive_and_under_the_cap() -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base=2.0, cap=1.0)


class FlakyResource(resource_service_pb2_grpc.ResourceServiceServicer):
    """A Resource service whose GetNode fails ``failures`` times with ``code``, then
    answers; or, while ``stalled`` is set, never answers."""

    def __init__(self) -> None:
        self.failures = 0
        self.code = grpc.StatusCode.UNAVAILABLE
        self.calls = 0
        self.stalled = False
        self.called = asyncio.Event()

    async def GetNode(
        self, request: pb.GetNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetNodeResponse:
        self.calls += 1
        self.called.set()
        if self.stalled:
            await asyncio.Event().wait()
        if self.calls <= self.failures:
            await context.abort(self.code, f"failure {self.calls}")
        return pb.GetNodeResponse()


@pytest.fixture
async def flaky() -> AsyncIterator[
    tuple[FlakyResource, resource_service_pb2_grpc.ResourceServiceStub]
]:
    servicer = FlakyResource()
    server = Server("127.0.0.1:0", grace=0.1)
    server.add_servicer(
        servicer,
        resource_service_pb2_grpc.add_ResourceServiceServicer_to_server,
        pb.DESCRIPTOR.services_by_name["ResourceService"],
    )
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        yield servicer, resource_service_pb2_grpc.ResourceServiceStub(channel)


@pytest.mark.parametrize("code", sorted(TRANSIENT, key=lambda code: code.name))
async def test_transient_failures_are_retried_until_success(
    flaky: tuple[FlakyResource, resource_service_pb2_grpc.ResourceServiceStub],
    code: grpc.StatusCode,
) -> None:
    """Every transient status, CANCELLED included: a server that stops cancels its calls."""
    servicer, stub = flaky
    servicer.failures, servicer.code = 3, code
    await retry_call(
        lambda: stub.GetNode(pb.GetNodeRequest(name="nodes/a")),
        what="get",
        backoff=Backoff(base=0.01, cap=0.02),
    )
    assert servicer.calls == 4


async def test_a_final_status_is_raised_at_once(
    flaky: tuple[FlakyResource, resource_service_pb2_grpc.ResourceServiceStub],
) -> None:
    servicer, stub = flaky
    servicer.failures, servicer.code = 5, grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await retry_call(
            lambda: stub.GetNode(pb.GetNodeRequest()),
            what="get",
            backoff=Backoff(base=0.01, cap=0.02),
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT and servicer.calls == 1


async def test_retries_stop_at_the_deadline(
    flaky: tuple[FlakyResource, resource_service_pb2_grpc.ResourceServiceStub],
) -> None:
    servicer, stub = flaky
    servicer.failures = 10_000
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await retry_call(
            lambda: stub.GetNode(pb.GetNodeRequest()),
            what="get",
            backoff=Backoff(base=0.05, cap=0.1),
            deadline=start + 0.5,
        )
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - start < 0.6 and 3 <= servicer.calls < 15


async def test_a_call_the_client_cancels_is_not_retried(
    flaky: tuple[FlakyResource, resource_service_pb2_grpc.ResourceServiceStub],
) -> None:
    """The client's own cancel surfaces as asyncio.CancelledError, never as the
    CANCELLED status that is retried."""
    servicer, stub = flaky
    servicer.stalled = True
    task = asyncio.create_task(
        retry_call(
            lambda: stub.GetNode(pb.GetNodeRequest()),
            what="get",
            backoff=Backoff(base=0.01, cap=0.02),
        )
    )
    await asyncio.wait_for(servicer.called.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert servicer.calls == 1
