"""Ownership on a real (in-memory) store, in both of its services' modes: the App and
Scheduler services' (a replica owns nothing until it sees its own key) and the Resource
service's (``presume_self``: it always owns what it would own with its key)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from astra.coordination import Ownership
from astra.store import Store, open_store

NAMES = [f"name-{index}" for index in range(200)]


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_store("memory://")
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def running(ownership: Ownership) -> AsyncIterator[Ownership]:
    """Joined and running until the block ends, then left."""
    await ownership.join()
    task = asyncio.create_task(ownership.run())
    try:
        yield ownership
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ownership.leave()


async def until(ownership: Ownership, condition: Callable[[], bool]) -> None:
    """Wait (at most 5 s) until ``condition()`` holds after changes of ``ownership``."""
    changed = asyncio.Event()
    ownership.listeners.append(changed.set)
    try:
        async with asyncio.timeout(5):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        ownership.listeners.remove(changed.set)


async def test_a_replica_owns_nothing_until_it_sees_its_own_key(store: Store) -> None:
    ownership = Ownership(store, service="app", replica_id="a", address="10.0.0.1:7100")
    assert ownership.owner("x") is None and not ownership.owns("x")
    async with running(ownership):
        assert ownership.replicas == ["a"]
        assert all(ownership.owns(name) for name in NAMES)
        assert ownership.address_of("a") == "10.0.0.1:7100"


async def test_with_presume_self_a_replica_owns_its_names_before_its_key_is_seen(
    store: Store,
) -> None:
    ownership = Ownership(store, service="resource", replica_id="a", presume_self=True)
    assert ownership.replicas == []
    assert all(ownership.owner(name) == "a" for name in NAMES)


@pytest.mark.parametrize("presume_self", [False, True])
async def test_replicas_split_the_names_alike_and_take_over_a_leaver(
    store: Store, presume_self: bool
) -> None:
    def replica(replica_id: str) -> Ownership:
        return Ownership(
            store,
            service="resource",
            replica_id=replica_id,
            address=f"{replica_id}:7100",
            presume_self=presume_self,
        )

    async with running(replica("a")) as a:
        async with running(replica("b")) as b:
            await until(a, lambda: a.replicas == ["a", "b"])
            await until(b, lambda: b.replicas == ["a", "b"])
            owners = {name: a.owner(name) for name in NAMES}
            assert owners == {name: b.owner(name) for name in NAMES}
            assert set(owners.values()) == {"a", "b"}  # rendezvous hashing spreads them
            assert a.address_of("b") == "b:7100" and b.address_of("a") == "a:7100"
        await until(a, lambda: a.replicas == ["a"])
        assert all(a.owns(name) for name in NAMES)
        assert a.address_of("b") == ""
