"""The schedulers of the apps one App-service replica owns.

One :class:`AppScheduler` per owned app, all sharing one :class:`FleetView` and one
:class:`Planner`. The view's nodes come from the Resource service's ``WatchCluster``
stream and its allocations from a store watch; nothing is polled. Reconciling is
level-triggered through a :class:`WorkQueue` of app ids, ordered by priority (highest
first), then age: an event only names the app, and a worker converges it from the
current state, then writes its status. With capacity scarce, the most important apps
waiting claim it first (nothing already placed is preempted). What names
an app:

- its record changed (a spec update, a delete) or this replica became its owner;
- one of its replica records changed (a phase reported by an agent, an eviction);
- a node holding its replicas changed phase (DEAD: the diff re-places them);
- the fleet changed while some of its replicas could not be placed;
- its last reconcile left changes undone (lost races): after a short backoff;
- a replica it retired may time out draining: at that deadline.

After each reconcile it writes the status, then copies each Ray head's address into its
cluster's workers (:mod:`services.app._heads`).

Workers start only once the first node snapshot is in the view: before, every node
would look lost and every replica would be re-placed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from astra import keys, telemetry
from astra.coordination import Follower, Ownership
from astra.records import AppRecord, NodeRecord, Quantity, ReplicaRecord
from astra.server import Tasks
from astra.store import KeyValue, Store, UnavailableError
from scheduling import (
    AppScheduler,
    AppSpec,
    ClusterFeed,
    FleetView,
    Planner,
    ReconcileResult,
    ResourceTarget,
    StoreFeed,
    WorkQueue,
)
from services.app._catalog import Catalog
from services.app._convert import to_spec
from services.app._heads import link_workers
from services.app._repository import AppRepository
from services.app._status import status_of

_log = logging.getLogger(__name__)

#: Seconds between a fleet change and the retry of apps that could not be placed.
_STARVED_DELAY = 0.2
#: Backoff of an app whose reconcile left work undone or failed: first and last delay.
_RETRY_BASE, _RETRY_CAP = 0.05, 5.0


class SchedulerHost:
    """Hosts the schedulers of the apps this replica owns; see the module's documentation.

    Args:
        store: the store.
        catalog: every app record (its listeners are how spec changes arrive).
        ownership: which apps this replica owns.
        cluster: the Resource service to follow ``WatchCluster`` from.
        workers: apps reconciled at once.
    """

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        ownership: Ownership,
        cluster: ResourceTarget,
        *,
        workers: int = 4,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._ownership = ownership
        self._workers = workers
        self.view = FleetView()
        self.planner = Planner(store, self.view)
        self._repository = AppRepository(store)
        self._allocs = StoreFeed(store, self.view, nodes=False)
        self._cluster = ClusterFeed(cluster, self._on_nodes)
        self._replicas = Follower(store, keys.REPLICAS, self._on_replica, mirror=False)
        self._queue = WorkQueue(key=self._urgency)
        self._schedulers: dict[str, AppScheduler] = {}
        self._starved: set[str] = set()
        #: Fleet messages taken in so far: a reconcile that finds an app unplaceable
        #: checks whether the fleet changed while it ran (it saw the fleet before that).
        self._fleet_messages = 0
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._starved_timer: asyncio.TimerHandle | None = None
        self._tasks = Tasks()
        self._feed: asyncio.Task[None] | None = None
        self._metrics: _Metrics | None = None
        catalog.listeners.append(self._on_app)
        ownership.listeners.append(self._rebalance)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the allocations and start following the fleet; workers start once the
        first node snapshot arrives."""
        self._metrics = _Metrics()
        await self._allocs.start()
        await self._replicas.load()
        self._feed = self._tasks.spawn(self._cluster.run(), name="app.cluster-feed")
        self._tasks.spawn(self._replicas.follow(), name="app.replica-events")
        self._tasks.spawn(self._serve(), name="app.workers")

    async def stop_cluster_feed(self) -> None:
        """Stop following ``WatchCluster`` (the fleet stays as last seen), for when the
        Resource service is in this process and is shutting down. Idempotent."""
        if self._feed is not None:
            await self._tasks.cancel(self._feed)

    async def close(self) -> None:
        """Stop every worker and feed. Idempotent."""
        for timer in [*self._timers.values(), self._starved_timer]:
            if timer is not None:
                timer.cancel()
        self._timers.clear()
        await self._tasks.close()
        await self._allocs.close()

    @property
    def synced(self) -> asyncio.Event:
        """Set once the first node snapshot is in the view."""
        return self._cluster.synced

    def owned(self) -> set[str]:
        """The ids of the apps this replica owns now."""
        return {app_id for app_id in self._catalog.apps if self._ownership.owns(app_id)}

    async def _serve(self) -> None:
        await self._cluster.synced.wait()
        self._rebalance()
        async with asyncio.TaskGroup() as group:
            for index in range(self._workers):
                group.create_task(self._work(), name=f"app.worker-{index}")

    # -- events ----------------------------------------------------------------------

    def _urgency(self, app_id: str) -> tuple[int, float]:
        """Apps by priority, highest first, then by age, oldest first."""
        record = self._catalog.apps.get(app_id)
        return (0, 0.0) if record is None else (-record.priority, record.create_time)

    def _enqueue(self, app_ids: Iterable[str]) -> None:
        for app_id in app_ids:
            if self._ownership.owns(app_id):
                self._queue.add(app_id)

    def _on_app(self, app_id: str) -> None:
        self._enqueue((app_id,))

    def _on_replica(self, key: str, kv: KeyValue | None) -> None:
        app_id, _, _ = key.removeprefix(keys.REPLICAS).partition("/")
        self._enqueue((app_id,))

    def _rebalance(self) -> None:
        """Queue every owned app; drop the schedulers of apps owned elsewhere now."""
        for app_id in [app_id for app_id in self._schedulers if not self._ownership.owns(app_id)]:
            self._forget(app_id)
        self._enqueue(list(self._catalog.apps))

    def _on_nodes(self, records: list[NodeRecord], removed: list[str], snapshot: bool) -> None:
        view = self.view
        affected: set[str] = set()
        for node_id in removed:
            node = view.node(node_id)
            if node is not None:
                affected.update(node.apps)
        for record in records:
            node = view.node(record.node_id)
            if node is not None and node.phase != record.phase:
                affected.update(node.apps)
        view.apply_nodes(records, removed, snapshot=snapshot)
        self._fleet_messages += 1
        if snapshot:
            affected.update(self._catalog.apps)
        self._enqueue(affected)
        if self._starved:
            self._retry_starved_soon()

    # -- reconciling -----------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            app_id = await self._queue.get()
            try:
                retry = await self._reconcile(app_id)
            except UnavailableError as exc:
                _log.warning("reconciling apps/%s: the store is unavailable (%s)", app_id, exc)
                retry = True
            except Exception:
                _log.exception("reconciling apps/%s failed", app_id)
                retry = True
            finally:
                self._queue.done(app_id)
            if retry:
                attempt = self._failures.get(app_id, 0)
                self._failures[app_id] = attempt + 1
                self._later(app_id, min(_RETRY_CAP, _RETRY_BASE * 2**attempt))
            else:
                self._failures.pop(app_id, None)

    async def _reconcile(self, app_id: str) -> bool:
        """Converge one app and write its status; whether to try again later."""
        if not self._ownership.owns(app_id):
            self._forget(app_id)
            return False
        record = self._catalog.apps.get(app_id)
        if record is None or record.deleting:
            return await self._free(app_id, deleting=record is not None)
        spec = to_spec(record)
        scheduler = self._schedulers.get(app_id)
        if scheduler is None:
            scheduler = self._schedulers[app_id] = AppScheduler(spec, self.view, self.planner)
        else:
            scheduler.update(spec)
        started, fleet_seen = time.perf_counter(), self._fleet_messages
        result = await scheduler.reconcile()
        if self._metrics is not None:
            self._metrics.record(result, time.perf_counter() - started)
        stored = [
            (kv, ReplicaRecord.from_bytes(kv.value))
            for kv in (await self._store.range(keys.replicas_of(app_id))).kvs
        ]
        replicas = [record for _, record in stored]
        await self._repository.write_status(
            app_id, status_of(spec, result, replicas, self.view.is_lost)
        )
        if result.unplaceable:
            self._starved.add(app_id)
            if self._fleet_messages != fleet_seen:  # a node that came meanwhile may fit it
                self._retry_starved_soon()
        else:
            self._starved.discard(app_id)
        if result.recheck is not None:  # a retired replica's drain may time out then
            self._later(app_id, result.recheck)
        linked = await link_workers(self._store, stored)
        return bool(result.pending) or not linked

    async def _free(self, app_id: str, *, deleting: bool) -> bool:
        """Remove every replica of a deleted app, then its record.

        The store has the last word: when it holds a live record the catalog has not
        seen yet, nothing is freed (the catalog names the app again when it catches up).
        """
        kv = await self._store.get(keys.app(app_id))
        if kv is not None and not AppRecord.from_bytes(kv.value).deleting:
            return False
        scheduler = self._schedulers.pop(app_id, None) or AppScheduler(
            _nothing(app_id), self.view, self.planner
        )
        self._starved.discard(app_id)
        result: ReconcileResult = await scheduler.delete()
        if self._metrics is not None:
            self._metrics.record(result, 0.0)
        if result.pending or await self.planner.read_replicas(app_id):
            return True
        if deleting:
            await self._repository.remove(app_id)
        return False

    def _forget(self, app_id: str) -> None:
        self._schedulers.pop(app_id, None)
        self._starved.discard(app_id)
        self._failures.pop(app_id, None)
        timer = self._timers.pop(app_id, None)
        if timer is not None:
            timer.cancel()

    def _later(self, app_id: str, delay: float) -> None:
        """Queue ``app_id`` again after ``delay`` seconds (once, however often asked)."""
        if app_id not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[app_id] = loop.call_later(delay, self._fire, app_id)

    def _fire(self, app_id: str) -> None:
        self._timers.pop(app_id, None)
        self._enqueue((app_id,))

    def _retry_starved_soon(self) -> None:
        """Queue the starved apps again shortly (once, however often asked)."""
        if self._starved_timer is None:
            loop = asyncio.get_running_loop()
            self._starved_timer = loop.call_later(_STARVED_DELAY, self._retry_starved)

    def _retry_starved(self) -> None:
        self._starved_timer = None
        self._enqueue(list(self._starved))


def _nothing(app_id: str) -> AppSpec:
    """The spec of an app that wants nothing: what frees a deleted app."""
    return AppSpec(app_id=app_id, replicas=0, resources=Quantity())


class _Metrics:
    """The host's OpenTelemetry instruments (no-ops while telemetry is off)."""

    def __init__(self) -> None:
        meter = telemetry.meter("astra.app")
        self._reconciles = meter.create_counter(
            "astra.app.reconciles", description="App reconciles"
        )
        self._placed = meter.create_counter("astra.app.placements", description="Replicas placed")
        self._removed = meter.create_counter("astra.app.removals", description="Replicas removed")
        self._conflicts = meter.create_counter(
            "astra.app.conflicts", description="Placement commits that lost an optimistic race"
        )
        self._duration = meter.create_histogram(
            "astra.app.reconcile.duration", unit="s", description="Time to reconcile one app"
        )

    def record(self, result: ReconcileResult, seconds: float) -> None:
        self._reconciles.add(1, {"converged": result.converged})
        self._placed.add(len(result.placed))
        self._removed.add(len(result.removed))
        self._conflicts.add(result.conflicts)
        if seconds:
            self._duration.record(seconds)
