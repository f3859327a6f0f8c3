"""The Scheduler service: one replica's servicer and what runs behind it.

- The fleet comes from the Resource service's ``WatchCluster`` stream (:class:`ClusterFeed`),
  allocations and replica records from store watches; nothing is polled.
- :class:`RouteTable` turns them into routes; :class:`RoutePublisher` writes the routes
  of the models this replica owns to ``/astra/v1/routes/{model}``.
- :class:`Evictor` evicts the replicas of the DRAINING nodes this replica owns.
- GetRoutes and WatchRoutes read the stored routes, so any replica serves any gateway.

Models and nodes are split between the live replicas by :class:`Ownership`. Nothing is
published or evicted before the first node snapshot is in: until then every node would
look gone.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Self

import grpc

from astra import keys
from astra._gen.astra.v1 import scheduler_service_pb2 as ss
from astra._gen.astra.v1 import scheduler_service_pb2_grpc as ss_grpc
from astra.coordination import Follower, Ownership
from astra.names import is_model_name
from astra.records import NodeRecord, ReplicaRecord
from astra.server import Server, Tasks, Violations
from astra.store import KeyValue, Store
from scheduling import ClusterFeed, FleetView, Planner, ResourceTarget, StoreFeed
from services.scheduler._publisher import RoutePublisher
from services.scheduler._recovery import Evictor
from services.scheduler._routes import RouteTable
from services.scheduler._stream import RevisionGoneError, get_routes, watch_routes

_log = logging.getLogger(__name__)

DESCRIPTOR = ss.DESCRIPTOR.services_by_name["SchedulerService"]
#: Models a request may name.
MAX_MODELS = 1000


class SchedulerService(ss_grpc.SchedulerServiceServicer):
    """One replica of the Scheduler service.

    Args:
        store: the control plane's store.
        resource: the Resource service whose ``WatchCluster`` stream feeds it.
        replica_id: unique among the service's replicas; random by default.
        address: this replica's ``host:port``, advertised with its lease.
        lease_ttl: seconds a dead replica's models and nodes wait for a new owner.
        performance: per-hardware performance factors for base weights (accelerator
            type, ``""`` for CPU); 1 when not listed.
        tick: the longest a route change waits to be batched with others, in seconds.
    """

    def __init__(
        self,
        store: Store,
        *,
        resource: ResourceTarget,
        replica_id: str | None = None,
        address: str = "",
        lease_ttl: int = 3,
        performance: Mapping[str, float] | None = None,
        tick: float = 0.02,
    ) -> None:
        self.replica_id = replica_id or uuid.uuid4().hex[:12]
        self._store = store
        self.table = RouteTable(performance)
        self.view = FleetView()
        self.ownership = Ownership(
            store, service="scheduler", replica_id=self.replica_id, address=address, ttl=lease_ttl
        )
        self._allocs = StoreFeed(store, self.view, nodes=False)
        self._cluster = ClusterFeed(resource, self._on_nodes)
        self._replicas = Follower(store, keys.REPLICAS, self._on_replica, mirror=False)
        self._routes = Follower(store, keys.ROUTES, self._on_route)
        self.publisher = RoutePublisher(store, self.table, self.ownership, self._routes, tick=tick)
        self.evictor = Evictor(store, self.view, Planner(store, self.view), self.ownership)
        self.ownership.listeners.append(self._rebalance)
        self._tasks = Tasks()
        self._feed: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load routes, replicas and allocations, join the replicas, start following."""
        await self._routes.load()
        await self._replicas.load()
        await self._allocs.start()
        await self.ownership.join()
        self._feed = self._tasks.spawn(self._cluster.run(), name="scheduler.cluster-feed")
        for name, work in (
            ("routes", self._routes.follow()),
            ("replicas", self._replicas.follow()),
            ("ownership", self.ownership.run()),
            ("recovery", self._recover()),
        ):
            self._tasks.spawn(work, name=f"scheduler.{name}")

    async def stop_cluster_feed(self) -> None:
        """Stop following ``WatchCluster``; routes are kept from the fleet last seen. For a
        Resource service in this process that is shutting down. Idempotent."""
        if self._feed is not None:
            await self._tasks.cancel(self._feed)

    async def shutdown(self) -> None:
        """Stop, and hand this replica's models and nodes to the others. Idempotent."""
        await self._tasks.close()
        await self._allocs.close()
        await self.ownership.leave()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def add_to(self, server: Server) -> None:
        """Serve this replica on ``server``."""
        server.add_servicer(self, ss_grpc.add_SchedulerServiceServicer_to_server, DESCRIPTOR)

    async def _recover(self) -> None:
        await self._cluster.synced.wait()
        self._rebalance()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.publisher.run())
            group.create_task(self.evictor.run())

    # -- feeds -----------------------------------------------------------------------

    def _on_nodes(self, records: list[NodeRecord], removed: list[str], snapshot: bool) -> None:
        if snapshot:
            present = {record.node_id for record in records}
            removed = [node_id for node_id in self.table.nodes if node_id not in present]
        self.view.apply_nodes(records, removed, snapshot=snapshot)
        for node_id in removed:
            self.table.remove_node(node_id)
        for record in records:
            self.table.set_node(record)
            self.evictor.look_at(record.node_id)
        self.publisher.poke()

    def _on_replica(self, key: str, kv: KeyValue | None) -> None:
        app_id, _, replica_id = key.removeprefix(keys.REPLICAS).partition("/")
        record = ReplicaRecord.from_bytes(kv.value) if kv is not None else None
        self.table.set_replica(f"apps/{app_id}/replicas/{replica_id}", record)
        self.publisher.poke()

    def _on_route(self, key: str, kv: KeyValue | None) -> None:
        self.table.touch(keys.last_segment(key))
        self.publisher.poke()

    def _rebalance(self) -> None:
        self.table.touch_all()
        self.publisher.poke()
        self.evictor.look_at_all()

    # -- RPCs ------------------------------------------------------------------------

    async def GetRoutes(self, request: ss.GetRoutesRequest, context: Any) -> ss.GetRoutesResponse:
        return await get_routes(self._store, _check_models(request.models))

    async def WatchRoutes(
        self, request: ss.WatchRoutesRequest, context: Any
    ) -> AsyncIterator[ss.WatchRoutesResponse]:
        violations = Violations()
        violations.check(request.start_revision >= 0, "start_revision", "must be >= 0")
        violations.raise_if_any()
        models = _check_models(request.models)
        try:
            async for message in watch_routes(self._store, models, request.start_revision):
                yield message
        except RevisionGoneError as exc:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, f"{exc}; watch again from 0")


def _check_models(models: Any) -> frozenset[str]:
    violations = Violations()
    names = list(models)
    violations.check(len(names) <= MAX_MODELS, "models", f"must name at most {MAX_MODELS} models")
    for index, name in enumerate(names):
        violations.at("models").check(is_model_name(name), index, "is not a model name")
    violations.raise_if_any()
    return frozenset(names)
