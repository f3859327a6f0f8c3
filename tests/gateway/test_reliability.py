"""Retries, deadlines, drains and ejection, end to end on loopback."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import grpc
import pytest

from astra.testing import free_port
from gateway import IDEMPOTENT, RetryRules
from gateway._endpoints import State
from tests.gateway.conftest import Setup
from tests.gateway.replica import Replica, add_request, served_by
from tests.gateway.route_feed import route
from tests.node_agent.waiting import eventually


async def test_a_drain_under_load_fails_no_request(setup: Setup) -> None:
    replicas = [await setup.replica(name, delay=0.005) for name in ("a", "b", "c")]
    await setup.feed.publish([route("add", "1", *(replica.address for replica in replicas))])
    gateway = await setup.start_gateway()
    stub = setup.stub()
    served: collections.Counter[str] = collections.Counter()
    failures: list[grpc.aio.AioRpcError] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                served[served_by(await stub.ModelInfer(add_request([1.0]), timeout=10))] += 1
            except grpc.aio.AioRpcError as exc:
                failures.append(exc)

    clients = [asyncio.create_task(client()) for _ in range(16)]
    try:
        await eventually(
            lambda: min(served.values(), default=0) >= 20 and len(served) == 3, what="load on all"
        )
        draining = replicas[0]
        drained = asyncio.create_task(draining.drain())  # refuses new requests, finishes the others
        await eventually(lambda: gateway.table.endpoints[draining.address].state is State.DRAINING)
        await drained
        # The Scheduler drops the draining endpoint a moment later, then it stops.
        await setup.feed.publish([route("add", "1", replicas[1].address, replicas[2].address)])
        after = served.copy()
        await eventually(
            lambda: sum(served.values()) >= sum(after.values()) + 200, what="more load"
        )
        await draining.stop()
        await eventually(
            lambda: sum(served.values()) >= sum(after.values()) + 400, what="load without it"
        )
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert failures == []
    assert served["a"] == after["a"], "no request reached the drained replica after it refused one"
    assert draining.refused >= 1


async def test_a_request_that_cannot_connect_is_retried_on_another_endpoint(setup: Setup) -> None:
    live = await setup.replica("live")
    dead = f"127.0.0.1:{free_port()}"
    await setup.feed.publish([route("add", "1", dead, live.address)])
    gateway = await setup.start_gateway()
    stub = setup.stub()
    for _ in range(20):
        assert served_by(await stub.ModelInfer(add_request([1.0]))) == "live"
    # Connection failures count: the dead endpoint is ejected.
    assert gateway.table.endpoints[dead].state is State.EJECTED


async def _broken_and_fine(
    setup: Setup, fault: grpc.StatusCode = grpc.StatusCode.INTERNAL, **options: Any
) -> tuple[Replica, Replica]:
    """Two replicas of one route; the first fails every request with ``fault``."""
    broken = await setup.replica("broken")
    fine = await setup.replica("fine")
    broken.fail_with = fault
    await setup.feed.publish([route("add", "1", broken.address, fine.address)])
    await setup.start_gateway(**options)
    return broken, fine


async def test_a_failure_that_may_have_run_is_not_retried(setup: Setup) -> None:
    broken, fine = await _broken_and_fine(setup)
    stub = setup.stub()
    failed = 0
    for _ in range(6):
        try:
            assert served_by(await stub.ModelInfer(add_request([1.0]))) == "fine"
        except grpc.aio.AioRpcError as exc:
            assert (
                exc.code() == grpc.StatusCode.INTERNAL
                and exc.details() == "broken fails on purpose"
            )
            failed += 1
    assert failed >= 1 and failed == broken.attempts and fine.attempts == 6 - failed


async def test_an_idempotent_request_is_retried_once_on_another_endpoint(setup: Setup) -> None:
    broken, fine = await _broken_and_fine(setup)
    stub = setup.stub()
    for _ in range(6):
        response = await stub.ModelInfer(add_request([1.0]), metadata=((IDEMPOTENT, "true"),))
        assert served_by(response) == "fine"
    assert broken.attempts >= 1 and fine.served == 6


async def test_both_fronts_retry_by_the_rules_they_are_given(setup: Setup) -> None:
    rules = RetryRules(
        idempotent_key="x-twice", idempotent_retry=frozenset({grpc.StatusCode.ABORTED})
    )
    broken, fine = await _broken_and_fine(setup, grpc.StatusCode.ABORTED, rules=rules)
    stub = setup.stub()
    for _ in range(6):
        response = await stub.ModelInfer(add_request([1.0]), metadata=(("x-twice", "1"),))
        assert served_by(response) == "fine"
    tried = broken.attempts
    assert tried >= 1
    failed = 0
    for _ in range(6):  # the default key is not these rules' key
        try:
            await stub.ModelInfer(add_request([1.0]), metadata=((IDEMPOTENT, "true"),))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.ABORTED
            failed += 1
    assert failed >= 1 and failed == broken.attempts - tried and fine.served == 12 - failed


async def test_both_fronts_eject_by_the_rules_they_are_given(setup: Setup) -> None:
    rules = RetryRules(replica_faults=frozenset())
    broken, _ = await _broken_and_fine(setup, rules=rules)
    gateway = setup.gateway
    assert gateway is not None
    stub = setup.stub()
    failures = 0
    for _ in range(40):
        try:
            await stub.ModelInfer(add_request([1.0]))
        except grpc.aio.AioRpcError:
            failures += 1
    # INTERNAL lowers its weight but is no replica fault here: it stays in the routes.
    assert failures > gateway.policy.eject_after
    assert gateway.table.endpoints[broken.address].state is State.READY


async def test_the_clients_deadline_and_metadata_reach_the_replica(setup: Setup) -> None:
    replica = await setup.replica("one")
    await setup.feed.publish([route("add", "1", replica.address)])
    await setup.start_gateway()
    stub = setup.stub()
    await stub.ModelInfer(
        add_request([1.0]), timeout=2.0, metadata=(("traceparent", "00-abc-def-01"),)
    )
    await stub.ModelInfer(add_request([1.0]))
    first, second = replica.time_left
    assert first is not None and 1.0 < first < 2.1 and second is None  # gRPC rounds up a little
    assert replica.metadata[0]["traceparent"] == "00-abc-def-01"


async def test_a_replica_slower_than_the_deadline_times_out_in_time(setup: Setup) -> None:
    replica = await setup.replica("slow", delay=5.0)
    await setup.feed.publish([route("add", "1", replica.address)])
    await setup.start_gateway()
    stub = setup.stub()
    start = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(add_request([1.0]), timeout=0.3)
    assert (
        caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - start < 2.0
    )


async def test_a_failing_endpoint_is_ejected_then_probed_back(setup: Setup) -> None:
    flaky = await setup.replica("flaky")
    steady = await setup.replica("steady")
    await setup.feed.publish([route("add", "1", flaky.address, steady.address)])
    gateway = await setup.start_gateway()
    stub = setup.stub()
    flaky.fail_with = grpc.StatusCode.UNKNOWN
    failures = 0
    for _ in range(40):
        try:
            await stub.ModelInfer(add_request([1.0]))
        except grpc.aio.AioRpcError:
            failures += 1
    assert failures == gateway.policy.eject_after  # then no request went there
    assert gateway.table.endpoints[flaky.address].state is State.EJECTED
    flaky.fail_with = None  # healthy again: the probe brings it back
    await eventually(
        lambda: gateway.table.endpoints[flaky.address].state is State.READY, what="probed back"
    )

    async def serves_again() -> bool:
        return "flaky" in {served_by(await stub.ModelInfer(add_request([1.0]))) for _ in range(20)}

    await eventually(serves_again, what="the ejected endpoint takes requests again")
