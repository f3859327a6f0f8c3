"""Property tests: 16 schedulers racing for the same nodes keep every invariant.

Over random fleets, specs, conflict modes, view sharing and interleavings:

- no node is ever over-committed (every allocation in the history is replayed);
- no replica is ever placed twice, and allocations agree with replica records;
- every wanted replica is placed or reported unplaceable with a reason, and when a
  scheduler had a view of its own, no node of the final fleet could take it;
- deleting an app frees everything it held, while the others keep racing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random

from hypothesis import HealthCheck, given, settings

from astra import keys
from astra.records import ReplicaRole
from astra.store import Store, open_store
from astra.testing import EtcdProcess
from scheduling import (
    AppScheduler,
    FleetView,
    Planner,
    Reason,
    ReconcileResult,
    StoreFeed,
)
from tests.scheduling.fleets import (
    Holdings,
    JitterStore,
    Scenario,
    assert_consistent,
    assert_history_safe,
    fitting_node,
    holdings,
    scenarios,
    write_nodes,
)

#: Reconciles an app may need before nothing is pending (each one re-reads the store).
SETTLE_ROUNDS = 8


async def settle(scheduler: AppScheduler, *, delete: bool = False) -> ReconcileResult:
    """Reconcile until nothing is left pending (lost races are retried level-triggered)."""
    for _ in range(SETTLE_ROUNDS):
        result = await (scheduler.delete() if delete else scheduler.reconcile())
        if not result.pending:
            return result
    raise AssertionError(f"{scheduler.spec.app_id} still has {result.pending} pending changes")


def check_placed(
    scenario: Scenario, results: list[ReconcileResult], held: Holdings, *, verdicts: bool
) -> None:
    """Every wanted replica is placed or unplaceable with a reason; with ``verdicts``,
    no node of the fleet can take an unplaceable one."""
    specs = {app.app_id: app for app in scenario.apps}
    for result in results:
        app = specs[result.app_id]
        assert result.running + len(result.unplaceable) == result.desired, result
        assert len(held.of_app(app.app_id)) == result.running
        for why in result.unplaceable.values():
            assert why.reason in Reason and why.message
        if not verdicts or not result.unplaceable:
            continue
        node_id = fitting_node(app, held)
        assert node_id is None, (
            f"{app.app_id}: {result.unplaceable} but a replica fits on {node_id}"
        )
        for replica_id, why in result.unplaceable.items():
            if why.reason is Reason.RAY_HEAD_UNPLACEABLE:
                cluster = replica_id.rsplit("-", 1)[0]
                heads = [
                    r
                    for r in held.of_app(app.app_id)
                    if r.ray_cluster == cluster and r.role == ReplicaRole.HEAD
                ]
                assert not heads, f"{replica_id} reported headless but {heads[0].name} is placed"


async def run_scenario(store: Store, scenario: Scenario) -> None:
    since = await store.current_revision() + 1
    await write_nodes(store, scenario.nodes)
    rng = random.Random(scenario.seed)
    views = [FleetView() for _ in range(scenario.views)]
    async with contextlib.AsyncExitStack() as stack:
        for view in views:
            await stack.enter_async_context(StoreFeed(store, view))
        planners = [Planner(store, view, mode=scenario.mode) for view in views]
        schedulers = {
            app.app_id: AppScheduler(
                app,
                planners[index % len(views)].view,
                planners[index % len(views)],
                rng=random.Random(rng.random()),
            )
            for index, app in enumerate(scenario.apps)
        }
        # Phase 1: every app places its replicas at once.
        results = await asyncio.gather(*(settle(scheduler) for scheduler in schedulers.values()))
        held = await holdings(store)
        assert_consistent(held)
        check_placed(scenario, results, held, verdicts=scenario.views == len(scenario.apps))

        # Phase 2: some apps are deleted, some rescaled, the others reconcile again.
        async def change(app_id: str) -> ReconcileResult:
            scheduler = schedulers[app_id]
            if app_id in scenario.rescaled:
                scheduler.update(
                    dataclasses.replace(scheduler.spec, replicas=scenario.rescaled[app_id])
                )
            return await settle(scheduler, delete=app_id in scenario.deleted)

        results = await asyncio.gather(*(change(app_id) for app_id in schedulers))
    held = await holdings(store)
    assert_consistent(held)
    for app_id in scenario.deleted:
        assert not held.of_app(app_id)
        assert not any(
            f"apps/{app_id}/" in name for alloc in held.allocs.values() for name in alloc.replicas
        )
    kept = [result for result in results if result.app_id not in scenario.deleted]
    check_placed(scenario, kept, held, verdicts=False)
    await assert_history_safe(
        store, {node.node_id: node.capacity for node in scenario.nodes}, since=since
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
async def test_schedulers_racing_in_memory_keep_invariants(scenario: Scenario) -> None:
    store = JitterStore(await open_store("memory://"), random.Random(scenario.seed))
    async with store:
        await run_scenario(store, scenario)


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios(max_nodes=12))
async def test_schedulers_racing_on_etcd_keep_invariants(
    own_etcd: EtcdProcess, scenario: Scenario
) -> None:
    async with await open_store(own_etcd.url) as store:
        await store.delete(keys.ROOT, prefix=True)
        await run_scenario(store, scenario)
