"""The backends every conformance test runs against: in memory, SQLite and a real etcd.

Each test gets its own key prefix, so tests sharing the session's etcd never collide.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from astra.store import Store, UnavailableError, open_store
from astra.testing import EtcdProcess


class Backend:
    """A store under test, and how to restart what serves it.

    Restarting keeps the data: etcd's process is stopped and started again under the
    same store object; the SQLite store is closed and its file reopened as a new store
    object; a store in memory has nothing to restart (it *is* this process), so
    restarting it changes nothing.
    """

    def __init__(
        self, name: str, store: Store, prefix: str, restart: Callable[[Store], Awaitable[Store]]
    ) -> None:
        self.name = name
        self.store = store
        self.prefix = prefix
        self._restart = restart

    async def restart(self) -> Store:
        """Restart the backend; returns the store to use from now on."""
        self.store = await self._restart(self.store)
        return self.store


async def _same_store(store: Store) -> Store:
    return store


@pytest.fixture(params=["memory", "sqlite", "etcd"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    prefix = f"/conformance/{uuid.uuid4().hex}/"
    if request.param == "memory":
        opened = Backend("memory", await open_store("memory://"), prefix, _same_store)
    elif request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'state.db'}"

        async def reopen(store: Store) -> Store:
            await store.close()
            return await open_store(url)

        opened = Backend("sqlite", await open_store(url), prefix, reopen)
    else:
        server: EtcdProcess = request.getfixturevalue("etcd_server")

        async def restart_etcd(store: Store) -> Store:
            try:
                await asyncio.to_thread(server.stop)
            finally:
                await asyncio.to_thread(server.start)
            return store

        opened = Backend("etcd", await open_store(server.url), prefix, restart_etcd)
    try:
        yield opened
    finally:
        if request.param == "etcd":
            await asyncio.to_thread(server.start)  # whatever the test did, leave etcd running
            await eventually(lambda: _cleared(opened.store, prefix))
        await opened.store.close()


async def _cleared(store: Store, prefix: str) -> bool:
    await store.delete(prefix, prefix=True)
    return True


async def eventually(check: Callable[[], Awaitable[bool] | bool], *, timeout: float = 20.0) -> None:
    """Wait until ``check()`` is true, tolerating an unavailable store meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
        except UnavailableError:
            pass
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(0.02)
