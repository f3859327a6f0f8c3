"""Disaster recovery: the replicas of a node that leaves are placed elsewhere.

- A DEAD (or removed) node: each app's owner in the App service sees the node lost and
  its scheduler removes the replicas there and places new ones, within the same Ray
  cluster for a worker, as a replacement cluster for a head (see
  :mod:`scheduling`).
- A DRAINING node: its replicas still run, so no scheduler treats them as lost. The
  :class:`Evictor` of the Scheduler replica that owns the node removes them through the
  same planner (the node's allocation and the replica records in one transaction);
  their owners then place new ones the same way as for a dead node.

Eviction is level-triggered: a node is looked at again on every change the Resource
service reports for it, and until its allocation is empty.
"""

from __future__ import annotations

import asyncio
import logging

from astra import keys
from astra.coordination import Ownership
from astra.records import NodePhase
from astra.rpc import Backoff
from astra.store import Get, RangeResult, Store, UnavailableError
from scheduling import FleetView, Plan, Planner, Removal, WorkQueue

_log = logging.getLogger(__name__)


class Evictor:
    """Evicts the replicas of the DRAINING nodes this replica owns.

    Args:
        store: the store.
        view: the fleet (nodes and allocations).
        planner: commits the removals (shares ``view``).
        ownership: which nodes this replica looks after.
        workers: nodes evicted at once.
    """

    def __init__(
        self,
        store: Store,
        view: FleetView,
        planner: Planner,
        ownership: Ownership,
        *,
        workers: int = 2,
    ) -> None:
        self._store = store
        self._view = view
        self._planner = planner
        self._ownership = ownership
        self._workers = workers
        self._queue = WorkQueue()
        #: Replicas evicted so far.
        self.evicted = 0

    def look_at(self, node_id: str) -> None:
        """Check ``node_id`` soon (it changed)."""
        node = self._view.node(node_id)
        if node is not None and node.phase == NodePhase.DRAINING and self._ownership.owns(node_id):
            self._queue.add(node_id)

    def look_at_all(self) -> None:
        for node_id in list(self._view.nodes):
            self.look_at(node_id)

    async def run(self) -> None:
        """Evict forever."""
        async with asyncio.TaskGroup() as group:
            for index in range(self._workers):
                group.create_task(self._work(), name=f"scheduler.evictor-{index}")

    async def _work(self) -> None:
        while True:
            node_id = await self._queue.get()
            try:
                await self._evict(node_id)
            except Exception:
                _log.exception("evicting nodes/%s failed", node_id)
            finally:
                self._queue.done(node_id)

    async def _evict(self, node_id: str) -> None:
        """Remove every replica of ``node_id`` while it is DRAINING and owned here."""
        backoff = Backoff(base=0.05, cap=2.0)
        while True:
            node = self._view.node(node_id)
            if (
                node is None
                or node.phase != NodePhase.DRAINING
                or not self._ownership.owns(node_id)
            ):
                return
            try:
                plan = await self._plan(node_id)
                if not plan:
                    return
                outcome = await self._planner.commit(plan)
            except UnavailableError as exc:
                _log.warning("cannot evict nodes/%s now: %s", node_id, exc)
            else:
                self.evicted += len(outcome.removed)
                if outcome.removed:
                    _log.info(
                        "evicted %d replicas of DRAINING nodes/%s", len(outcome.removed), node_id
                    )
                if not outcome.unremoved:
                    continue  # read again: something may have been placed meanwhile
            await backoff.sleep()

    async def _plan(self, node_id: str) -> Plan:
        """The removal of everything the node's allocation names, read fresh."""
        read = (await self._store.txn((), [Get(keys.alloc(node_id))])).results[0]
        assert isinstance(read, RangeResult)
        self._view.apply_alloc(node_id, read.kvs[0] if read.kvs else None, observed=read.revision)
        node = self._view.node(node_id)
        plan = Plan()
        if node is not None:
            for name in node.allocation().replicas:
                _, app_id, _, replica_id = name.split("/", 3)
                plan.remove(Removal(app_id, replica_id, node_id))
        return plan
