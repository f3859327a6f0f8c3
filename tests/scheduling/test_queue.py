"""WorkQueue: names deduplicated, never handed to two workers at once."""

from __future__ import annotations

import asyncio

from scheduling import WorkQueue


def test_a_name_is_queued_once_however_often_it_is_added() -> None:
    queue = WorkQueue()
    for name in ("a", "b", "a", "a"):
        queue.add(name)
    assert len(queue) == 2
    assert [queue.try_get(), queue.try_get(), queue.try_get()] == ["a", "b", None]
    assert queue.active == 2


def test_a_name_added_while_worked_on_comes_back_when_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.try_get() == "a"
    queue.add("a")
    queue.add("a")
    assert queue.try_get() is None  # not handed out twice
    queue.done("a")
    assert queue.try_get() == "a"
    queue.done("a")
    assert queue.try_get() is None and queue.active == 0


async def test_get_waits_for_a_name() -> None:
    queue = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.add("a")
    assert await asyncio.wait_for(waiter, 5) == "a"


def test_with_a_key_names_come_out_smallest_first_and_in_order_among_equals() -> None:
    priority = {"low": 0, "high": 9, "mid": 5, "low2": 0, "high2": 9}
    queue = WorkQueue(key=lambda name: -priority[name])
    for name in ("low", "high", "mid", "low2", "high2", "low"):
        queue.add(name)
    assert len(queue) == 5
    assert queue.try_get() == "high"
    queue.add("high")  # while worked on: back when done, behind its equal
    queue.done("high")
    assert [queue.try_get() for _ in range(6)] == ["high2", "high", "mid", "low", "low2", None]
    assert queue.active == 5
