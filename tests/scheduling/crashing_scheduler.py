"""A scheduler process to be killed: places and deletes apps in a loop, for ever.

    python -m tests.scheduling.crashing_scheduler STORE_URL

Plans are large (several transactions each) so that a kill often lands between two
transactions of one plan. After each reconcile it prints how many replicas it has
placed so far, so that a test knows when to kill it without opening the store.
"""

from __future__ import annotations

import asyncio
import random
import sys

from astra.store import open_store
from scheduling import AppScheduler, FleetView, Planner, StoreFeed
from tests.scheduling.fleets import spec

SCHEDULERS = 4


async def main(url: str) -> None:
    async with await open_store(url) as store:
        view = FleetView()
        async with StoreFeed(store, view):
            planner = Planner(store, view)
            placed = 0

            async def churn(index: int) -> None:
                rng = random.Random(index)
                while True:
                    scheduler = AppScheduler(
                        spec(f"app{index}-{rng.randrange(3)}", 300, cpu=100, ray_clusters=3),
                        view,
                        planner,
                        rng=rng,
                    )
                    nonlocal placed
                    placed += len((await scheduler.reconcile()).placed)
                    print(placed, flush=True)
                    await scheduler.delete()

            await asyncio.gather(*(churn(index) for index in range(SCHEDULERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
