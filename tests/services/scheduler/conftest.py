"""The whole control plane (Resource, Node, App and Scheduler services) over an
in-memory store, with a performance factor for one accelerator type."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from astra.store import Store, open_store
from tests.services.app.plane import Plane, plane

#: The performance factor of the GPU type the tests use.
A10G_FACTOR = 2.5


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with await open_store("memory://") as opened:
        yield opened


@pytest.fixture
async def control(store: Store) -> AsyncIterator[Plane]:
    async with plane(store, scheduler={"performance": {"nvidia-a10g": A10G_FACTOR}}) as started:
        yield started
