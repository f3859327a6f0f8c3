"""Replicas pulling from the async broker: real Redis, real ONNX Runtime replicas, and
replica processes killed with SIGKILL in the middle of their requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from astra._gen.astra.v1 import app_pb2
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.broker import FAILED, FINISHED, QUEUED, RUNNING, SUCCEEDED, Broker, Consumer
from astra.models import DemoModel
from astra.testing import RedisProcess
from node_agent.replica import ReplicaServer
from tests.node_agent.replica.conftest import settings
from tests.node_agent.replica.pulling import (
    PullingReplica,
    check_output,
    demo_request,
    unique,
)
from tests.node_agent.waiting import eventually


@pytest.fixture
async def broker(redis_server: RedisProcess) -> AsyncIterator[Broker]:
    async with Broker.from_url(redis_server.url, result_ttl=60.0) as broker:
        yield broker


async def submit(broker: Broker, model: str, count: int) -> dict[str, np.ndarray]:
    """Submit ``count`` demo requests to version 1 of ``model``; returns their batches
    by inference id."""
    submitted = {}
    for seed in range(count):
        request, batch = demo_request(model, seed)
        request.model_version = "1"
        submitted[(await broker.submit(request)).inference_id] = batch
    return submitted


def version_one(model: str) -> pb.ModelInferRequest:
    """A demo request to version 1 of ``model``."""
    request, _ = demo_request(model, 0)
    request.model_version = "1"
    return request


def pulling(
    tmp_path: Path, demo: DemoModel, model: str, redis: RedisProcess, **more: object
) -> ReplicaServer:
    """An in-process replica server of the demo model as ``model``, pulling from
    ``redis``."""
    return ReplicaServer(
        [app_pb2.Model(name=model, uri=str(demo.path), sha256=demo.sha256)],
        settings(tmp_path, redis_url=redis.url, **more),
    )


async def finished(broker: Broker, ids: list[str]) -> bool:
    return all([(await broker.get(i)).state in FINISHED for i in ids])


async def drained(broker: Broker, model: str) -> None:
    """Wait until version 1 of ``model``'s queue is empty. A replica writes an
    inference's result before it acknowledges the entry (so that a crash between the
    two runs it again rather than loses it): a finished inference can still be in the
    queue for a moment."""

    async def empty() -> bool:
        return await broker.backlog(model, "1") == 0

    await eventually(empty, what=f"the queue of {model} drained")


async def test_pulls_no_more_than_its_concurrency(
    tmp_path: Path, demo: DemoModel, broker: Broker, redis_server: RedisProcess
) -> None:
    """A slow replica with room for 2 holds 2 of 7 queued inferences at any time, the
    rest stay queued, and all complete with the model's answers."""
    model = unique("demo")
    submitted = await submit(broker, model, 7)
    server = pulling(
        tmp_path,
        demo,
        model,
        redis_server,
        workers=3,
        broker_concurrency=2,
        service_time=1.0,
        claim_idle=1.0,
    )
    serving = await server.start()
    try:
        puller = server.puller
        assert puller is not None
        observer = Consumer(broker, [(model, "1")], name="observer")
        holding: list[int] = []

        async def two_held() -> bool:
            held = (await observer.pending()).get(puller.consumer.name, 0)
            holding.append(held)
            return held == 2

        async def two_running_five_queued() -> bool:
            states = [(await broker.get(i)).state for i in submitted]
            return (states.count(RUNNING), states.count(QUEUED)) == (2, 5)

        await eventually(two_held, what="the replica holds 2 entries")
        await eventually(two_running_five_queued, what="2 inferences run, 5 wait")
        await eventually(lambda: finished(broker, list(submitted)), timeout=30)
        assert max(holding) <= 2 and puller.peak == 2
        for inference_id, batch in submitted.items():
            inference = await broker.get(inference_id)
            assert inference.state == SUCCEEDED, inference.error
            assert (inference.attempts, inference.replica) == (1, serving.endpoint)
            check_output(demo, inference.response, batch)
        await drained(broker, model)
    finally:
        await server.stop()


async def test_bad_tensors_fail_with_the_status_model_infer_gives(
    tmp_path: Path, demo: DemoModel, broker: Broker, redis_server: RedisProcess
) -> None:
    model = unique("demo")
    request = version_one(model)
    request.inputs[0].datatype = "FP64"
    inference = await broker.submit(request)
    server = pulling(tmp_path, demo, model, redis_server)
    await server.start()
    try:
        done = await broker.wait(inference.inference_id, timeout=20)
        assert done.state == FAILED
        assert done.error.code == 3  # INVALID_ARGUMENT
        assert 'input "input" is FP64, expected FP32' in done.error.message
    finally:
        await server.stop()


async def test_a_replica_killed_mid_request_loses_nothing(
    demo: DemoModel, broker: Broker, redis_server: RedisProcess, tmp_path: Path
) -> None:
    """Two replica processes pull; one is SIGKILLed while it holds two inferences (its
    requests take a minute); the other takes them over once they have been idle for
    claim_idle, and every accepted inference completes with the model's answer."""
    model = unique("demo")
    base = {"host": "127.0.0.1", "cache_dir": str(tmp_path / "cache"), "claim_idle": 1.0}
    base["redis_url"] = redis_server.url
    submitted = await submit(broker, model, 8)
    observer = Consumer(broker, [(model, "1")], name="observer")
    victim = PullingReplica(demo, model, {**base, "broker_concurrency": 2, "service_time": 60})
    survivor: PullingReplica | None = None
    try:
        await victim.ready()

        async def victim_holds_two() -> bool:
            return (await observer.pending()).get(victim.consumer, 0) == 2

        await eventually(victim_holds_two, timeout=30, what="the victim holds 2 entries")
        survivor = PullingReplica(demo, model, {**base, "broker_concurrency": 2})
        await survivor.ready()
        victim.kill()
        await eventually(lambda: finished(broker, list(submitted)), timeout=60)
        taken_over = 0
        for inference_id, batch in submitted.items():
            inference = await broker.get(inference_id)
            assert inference.state == SUCCEEDED, inference.error
            assert inference.replica == survivor.endpoint
            check_output(demo, inference.response, batch)
            taken_over += inference.attempts == 2
        assert taken_over == 2
        await drained(broker, model)
        assert (await observer.pending()).get(victim.consumer, 0) == 0
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()


async def test_a_drain_finishes_what_is_held_and_pulls_no_more(
    tmp_path: Path, demo: DemoModel, broker: Broker, redis_server: RedisProcess
) -> None:
    model = unique("demo")
    ids = list(await submit(broker, model, 3))
    server = pulling(tmp_path, demo, model, redis_server, broker_concurrency=1, service_time=0.5)
    await server.start()
    try:

        async def one_running() -> bool:
            return [(await broker.get(i)).state for i in ids].count(RUNNING) == 1

        await eventually(one_running, what="one inference runs")
        await server.drain()
        states = [(await broker.get(i)).state for i in ids]
        assert sorted(states) == [QUEUED, QUEUED, SUCCEEDED], states
        assert server.puller is not None and server.puller.held == 0
        assert await broker.backlog(model, "1") == 2
    finally:
        await server.stop()


async def test_an_inference_that_kills_every_replica_fails_aborted(
    tmp_path: Path, demo: DemoModel, broker: Broker, redis_server: RedisProcess
) -> None:
    """Delivered 5 times already (each replica died): the 6th fails, without running."""
    model = unique("demo")
    inference = await broker.submit(version_one(model))
    ghost = Consumer(broker, [(model, "1")], name="ghost")
    await ghost.join()
    (delivery,) = await ghost.read(1, block=0.01)
    await broker.redis.xclaim(
        delivery.queue, "replicas", "ghost", 0, [delivery.entry], retrycount=5
    )
    server = pulling(tmp_path, demo, model, redis_server, claim_idle=0.3)
    await server.start()
    try:
        done = await broker.wait(inference.inference_id, timeout=20)
        assert (done.state, done.attempts, done.error.code) == (FAILED, 6, 10)  # ABORTED
        assert "gave up after 5 attempts" in done.error.message
        await drained(broker, model)
    finally:
        await server.stop()
