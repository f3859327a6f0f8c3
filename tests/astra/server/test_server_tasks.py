"""Owned background tasks, and the event loop AstraRay runs on."""

from __future__ import annotations

import asyncio
import logging

import pytest
import uvloop

from astra.server import Tasks, run


async def test_close_cancels_running_tasks_and_waits_for_their_cleanup():
    tasks = Tasks()
    order: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            order.append(name)

    spawned = [tasks.spawn(worker(name), name=name) for name in ("a", "b")]
    await asyncio.sleep(0)
    assert len(tasks) == 2
    await tasks.close()
    assert sorted(order) == ["a", "b"] and all(task.cancelled() for task in spawned)
    assert len(tasks) == 0
    await tasks.close()  # idempotent


async def test_a_failure_is_logged_once_and_the_others_keep_running(caplog):
    tasks = Tasks()
    survivor = tasks.spawn(asyncio.sleep(3600), name="survivor")

    async def fail() -> None:
        raise RuntimeError("worker crashed")

    with caplog.at_level(logging.ERROR, logger="astra.server"):
        failed = tasks.spawn(fail(), name="crasher")
        await asyncio.wait([failed])
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    (record,) = [record for record in caplog.records if record.name == "astra.server._tasks"]
    assert "crasher" in record.getMessage() and isinstance(record.exc_info[1], RuntimeError)
    assert not survivor.done() and len(tasks) == 1
    await tasks.close()


async def test_spawn_after_close_is_refused_without_leaking_the_coroutine():
    tasks = Tasks()
    await tasks.close()
    coroutine = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="closed"):
        tasks.spawn(coroutine, name="late")
    assert coroutine.cr_frame is None  # closed, so no "never awaited" warning


def test_run_uses_uvloop():
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert issubclass(run(loop_type()), uvloop.Loop)
