"""A control plane in the test process for the operator's commands: every service on
one loopback port over an in-memory store, and a simulated fleet of three nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from astra.store import open_store
from tests.services.app.plane import Plane, plane

#: The simulated fleet's node ids: cli-0, cli-1, cli-2 (8 cores, 32 GiB each).
FLEET = ("cli-0", "cli-1", "cli-2")


@pytest.fixture(scope="module")
async def control() -> AsyncIterator[Plane]:
    async with (
        await open_store("memory://") as store,
        plane(store, scheduler={}) as started,
        started.fleet(len(FLEET), prefix="cli-"),
    ):
        yield started
