"""Priority: when capacity is scarce, the most important app waiting claims it first."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from astra.store import Store
from tests.services.app.plane import Plane, plane, spec

#: The apps, by priority: only one fits on the one node the fleet will have.
PRIORITIES = {f"batch-{index:02d}": index % 3 for index in range(11)} | {"ranker": 7}


@pytest.fixture
async def one_worker(store: Store) -> AsyncIterator[Plane]:
    """The plane with an App service reconciling one app at a time, so that the order
    in which it takes them is what decides."""
    async with plane(store, app_workers=1) as started:
        yield started


async def test_the_highest_priority_app_gets_the_scarce_node(one_worker: Plane) -> None:
    control = one_worker
    for app_id, priority in PRIORITIES.items():
        # 8 cores: a node of the fleet (8 cores, 32 GiB) takes one such replica.
        await control.create(
            app_id, spec(replicas=1, cpu_millis=8000, priority=priority, models=((app_id, "1"),))
        )
    for app_id in PRIORITIES:
        app = await control.settled(app_id, placed=0)
        assert app.replica_counts.unplaceable == 1, "no node yet"
    async with control.fleet(1):
        await control.settled("ranker", placed=1)
        for app_id in set(PRIORITIES) - {"ranker"}:
            app = await control.app(app_id)
            assert app.replica_counts.placed == 0 and app.replica_counts.unplaceable == 1
