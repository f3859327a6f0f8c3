"""The broker's Redis protocol on a real Redis: records that never lose a result,
capacity-bounded reads over several queues, renewal against take-over, and take-over
of what a silent consumer left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from astra._gen.astra.v1 import async_inference_service_pb2 as apb
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.broker import FAILED, QUEUED, RUNNING, SUCCEEDED, Broker, Consumer
from astra.errors import NotFoundError, ResourceExhaustedError
from astra.testing import RedisProcess
from tests.node_agent.replica.pulling import unique


@pytest.fixture
async def broker(redis_server: RedisProcess) -> AsyncIterator[Broker]:
    async with Broker.from_url(redis_server.url) as broker:
        yield broker


def request(model: str, version: str = "1") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, model_version=version)
    message.inputs.add(name="x", datatype="FP32", shape=[1])
    return message


def state(inference: apb.Inference, new: int) -> apb.Inference:
    changed = apb.Inference()
    changed.CopyFrom(inference)
    changed.state = new  # type: ignore[assignment]
    return changed


async def test_a_result_is_never_replaced_by_an_error_or_a_rerun(broker: Broker) -> None:
    queued = await broker.submit(request(unique("m")))
    assert (await broker.get(queued.inference_id)).state == QUEUED
    assert await broker.put(state(queued, RUNNING), ttl=60)
    done = state(queued, SUCCEEDED)
    done.response.model_name = "m"
    assert await broker.put(done, ttl=60)
    # A duplicate delivery of the same entry: its RUNNING and its failure are refused.
    assert not await broker.put(state(queued, RUNNING), ttl=60)
    assert not await broker.put(state(queued, FAILED), ttl=60)
    assert not await broker.put(done, ttl=60)
    assert await broker.get(queued.inference_id) == done


async def test_a_failure_may_be_replaced_by_a_result(broker: Broker) -> None:
    queued = await broker.submit(request(unique("m")))
    assert await broker.put(state(queued, FAILED), ttl=60)
    assert not await broker.put(state(queued, RUNNING), ttl=60)
    assert await broker.put(state(queued, SUCCEEDED), ttl=60)
    assert (await broker.get(queued.inference_id)).state == SUCCEEDED


async def test_wait_is_woken_by_the_result(broker: Broker) -> None:
    queued = await broker.submit(request(unique("m")))
    waiting = asyncio.create_task(broker.wait(queued.inference_id, timeout=30))
    await asyncio.sleep(0)  # the waiter reads the record first
    await broker.put(state(queued, RUNNING), ttl=60)
    assert not waiting.done()
    await broker.put(state(queued, SUCCEEDED), ttl=60)
    assert (await asyncio.wait_for(waiting, 10)).state == SUCCEEDED
    unfinished = await broker.submit(request(unique("m")))
    assert (await broker.wait(unfinished.inference_id, timeout=0.05)).state == QUEUED


async def test_admission_limit_and_ttl(broker: Broker) -> None:
    model = unique("m")
    broker = Broker(broker.redis, max_backlog=5)  # the same connections
    for _ in range(5):
        await broker.submit(request(model))
    with pytest.raises(ResourceExhaustedError, match="5 inferences queued or running"):
        await broker.submit(request(model))
    assert await broker.backlog(model, "1") == 5
    other = await broker.submit(request(model, "2"))  # each version has its own queue
    await broker.put(state(other, SUCCEEDED), ttl=0.2)
    assert 0 < await broker.redis.pttl(f"astra:inference:{other.inference_id}") <= 200
    with pytest.raises(NotFoundError, match="never submitted, or its record expired"):
        await broker.get("never")


async def test_reads_never_exceed_the_room_over_several_queues(broker: Broker) -> None:
    models = [(unique("m"), "1") for _ in range(3)]
    for model, version in models:
        for _ in range(8):
            await broker.submit(request(model, version))
    consumer = Consumer(broker, models, name="c1")
    await consumer.join()
    for room in (1, 2, 3, 5, 7):
        got = await consumer.read(room, block=0.01)
        assert len(got) == (room if room <= 3 else room - room % 3), room
        for delivery in got:
            await consumer.ack(delivery)
    # Rotation: with room for one, every queue gets its turn.
    seen = {(await consumer.read(1, block=0.01))[0].model for _ in range(3)}
    assert seen == {model for model, _ in models}


async def test_silent_consumers_are_taken_over_and_renewed_ones_are_not(broker: Broker) -> None:
    model = unique("m")
    ids = [(await broker.submit(request(model))).inference_id for _ in range(3)]
    dead = Consumer(broker, [(model, "1")], name="dead", claim_idle=0.2)
    alive = Consumer(broker, [(model, "1")], name="alive", claim_idle=0.2)
    await dead.join()
    held_by_dead = await dead.read(2, block=0.01)
    held_by_alive = await alive.read(5, block=0.01)
    assert len(held_by_dead) == 2 and len(held_by_alive) == 1
    other = Consumer(broker, [(model, "1")], name="other", claim_idle=0.2)
    assert await other.claim(5) == []  # nothing has been idle long enough
    for _ in range(4):  # alive renews; dead does not
        await asyncio.sleep(0.1)
        assert await alive.refresh(held_by_alive) == set()
    claimed = await other.claim(5)
    assert sorted(d.inference_id for d in claimed) == sorted(d.inference_id for d in held_by_dead)
    assert {d.attempts for d in claimed} == {2}
    assert await dead.refresh(held_by_dead) == {d.entry for d in held_by_dead}
    assert await other.pending() == {"dead": 0, "alive": 1, "other": 2}
    assert sorted(ids) == sorted(d.inference_id for d in held_by_dead + held_by_alive)
    other.forget_after = 0.0
    assert await other.forget_dead() == ["dead"]
