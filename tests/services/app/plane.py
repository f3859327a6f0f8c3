"""A control plane in the test process: Resource, Node and App services (and the
Scheduler service, when asked) on one port (loopback unless told) over one store."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from astra import keys
from astra._gen.astra.v1 import (
    app_pb2,
    app_service_pb2,
    app_service_pb2_grpc,
    common_pb2,
    node_service_pb2,
    node_service_pb2_grpc,
    replica_pb2,
    resource_service_pb2_grpc,
    scheduler_service_pb2_grpc,
)
from astra.records import AllocRecord, AppRecord, NodeRecord, ReplicaRecord
from astra.server import Server
from astra.store import Store
from astra.testing import free_port
from programs.sim import SimFleet
from services.app import AppService
from services.node import NodeService
from services.resource import ResourceService
from services.scheduler import SchedulerService
from tests.node_agent.waiting import eventually

#: Fast membership for tests: beats every 0.2 s, dead after 1 s of silence.
HEARTBEAT_INTERVAL = 0.2
DEAD_AFTER = 1.0
GIB = 1 << 30


class Plane:
    """The services at :attr:`address`, with a stub per API."""

    def __init__(self, store: Store, address: str) -> None:
        self.store = store
        self.address = address
        self.channel = grpc.aio.insecure_channel(address)
        self.apps = app_service_pb2_grpc.AppServiceStub(self.channel)
        self.resources = resource_service_pb2_grpc.ResourceServiceStub(self.channel)
        self.nodes = node_service_pb2_grpc.NodeServiceStub(self.channel)
        self.scheduler = scheduler_service_pb2_grpc.SchedulerServiceStub(self.channel)
        self.app_service: AppService | None = None

    def use_apps_at(self, address: str) -> grpc.aio.Channel:
        """Send AppService calls to ``address`` (an App replica of its own); returns the
        channel, for the caller to close."""
        channel = grpc.aio.insecure_channel(address)
        self.apps = app_service_pb2_grpc.AppServiceStub(channel)
        return channel

    def fleet(self, count: int, *, prefix: str = "cpu-", **options: object) -> SimFleet:
        """``count`` simulated nodes heartbeating this plane (8 cores, 32 GiB each by default)."""
        return SimFleet(
            self.address, count, prefix=prefix, heartbeat_interval=HEARTBEAT_INTERVAL, **options
        )

    async def app(self, app_id: str) -> app_pb2.App:
        response = await self.apps.GetApp(app_service_pb2.GetAppRequest(name=f"apps/{app_id}"))
        return response.app

    async def create(self, app_id: str, app: app_pb2.App) -> app_pb2.App:
        request = app_service_pb2.CreateAppRequest(app_id=app_id, app=app)
        return (await self.apps.CreateApp(request)).app

    async def replicas(self, app_id: str) -> list[replica_pb2.Replica]:
        request = app_service_pb2.ListReplicasRequest(parent=f"apps/{app_id}")
        return list((await self.apps.ListReplicas(request)).replicas)

    async def settled(self, app_id: str, *, placed: int, timeout: float = 20.0) -> app_pb2.App:
        """The app once its owner has acted on its current generation and placed ``placed``."""
        found: list[app_pb2.App] = []

        async def check() -> bool:
            app = await self.app(app_id)
            found[:] = [app]
            return app.observed_generation == app.generation and app.replica_counts.placed == placed

        await eventually(check, timeout=timeout, what=f"apps/{app_id} placed {placed}")
        return found[0]

    async def report(
        self, replicas: Sequence[replica_pb2.Replica], phase: int = replica_pb2.REPLICA_PHASE_READY
    ) -> None:
        """Report ``replicas`` in ``phase`` (READY ones at a made-up endpoint), as their
        nodes' agents would."""
        for replica in replicas:
            port = 9000 + int(hashlib.sha256(replica.name.encode()).hexdigest()[:6], 16) % 50000
            endpoint = f"127.0.0.1:{port}" if phase == replica_pb2.REPLICA_PHASE_READY else ""
            await self.nodes.ReportReplicaStatus(
                node_service_pb2.ReportReplicaStatusRequest(
                    node=replica.node,
                    reports=[
                        node_service_pb2.ReplicaStatusReport(
                            replica=replica.name, phase=phase, endpoint=endpoint
                        )
                    ],
                )
            )


@contextlib.asynccontextmanager
async def plane(
    store: Store,
    *,
    host: str = "127.0.0.1",
    app: bool = True,
    scheduler: Mapping[str, Any] | None = None,
    dead_after: float = DEAD_AFTER,
    app_workers: int = 4,
) -> AsyncIterator[Plane]:
    """The services on a free port of ``host``: the App service (reconciling
    ``app_workers`` apps at once) unless not ``app``, and with ``scheduler`` the
    Scheduler service too, built with those options."""
    address = f"{host}:{free_port()}"
    server = Server(address, grace=0.2)
    resource = ResourceService(
        store, address=address, heartbeat_interval=HEARTBEAT_INTERVAL, dead_after=dead_after
    )
    node = NodeService(store)
    resource.add_to(server)
    node.add_to(server)
    result = Plane(store, address)
    if app:
        result.app_service = AppService(
            store,
            resource=address,
            replica_id=f"app-{uuid.uuid4().hex[:6]}",
            lease_ttl=2,
            workers=app_workers,
        )
        result.app_service.add_to(server)
    async with contextlib.AsyncExitStack() as stack:
        await resource.start()
        stack.push_async_callback(resource.shutdown)
        await stack.enter_async_context(node)
        if scheduler is not None:
            service = SchedulerService(store, resource=address, **scheduler)
            service.add_to(server)
            await stack.enter_async_context(service)
        if result.app_service is not None:
            await stack.enter_async_context(result.app_service)
        await stack.enter_async_context(server)
        stack.push_async_callback(result.channel.close)
        yield result


def spec(
    *,
    replicas: int = 2,
    cpu_millis: int = 1000,
    memory_bytes: int = GIB,
    gpus: int = 0,
    accelerators: Sequence[str] = (),
    models: Sequence[tuple[str, str]] = (("resnet", "1"),),
    **fields: object,
) -> app_pb2.App:
    """A valid app: ``replicas`` replicas of ``cpu_millis`` and ``memory_bytes`` serving
    ``models`` (name, version), with more fields as given."""
    return app_pb2.App(
        models=[
            app_pb2.Model(
                name=name,
                version=version,
                uri=f"/models/{name}.onnx",
                sha256="ab" * 32,
                format=app_pb2.MODEL_FORMAT_ONNX,
            )
            for name, version in models
        ],
        replicas=replicas,
        resources=app_pb2.ReplicaResources(
            cpu_millis=cpu_millis, memory_bytes=memory_bytes, gpus=gpus
        ),
        **fields,  # type: ignore[arg-type]
    )


def condition(app: app_pb2.App, kind: str) -> common_pb2.Condition | None:
    return next((item for item in app.conditions if item.type == kind), None)


async def invariants(store: Store) -> dict[str, ReplicaRecord]:
    """Check the placement invariants and return the replica records by name: every
    replica record is named by exactly one allocation (its node's) and every allocation
    entry has its record, and no node holds more than its capacity."""
    allocs = {
        keys.last_segment(kv.key): AllocRecord.from_bytes(kv.value)
        for kv in (await store.range(keys.ALLOC)).kvs
    }
    replicas = {}
    for kv in (await store.range(keys.REPLICAS)).kvs:
        record = ReplicaRecord.from_bytes(kv.value)
        replicas[record.name] = record
    nodes = {
        keys.last_segment(kv.key): NodeRecord.from_bytes(kv.value)
        for kv in (await store.range(keys.NODES)).kvs
    }
    holders: dict[str, list[str]] = {}
    for node_id, alloc in allocs.items():
        for name in alloc.replicas:
            holders.setdefault(name, []).append(node_id)
        if node_id in nodes:
            assert alloc.used().fits_in(nodes[node_id].capacity), f"nodes/{node_id} over-committed"
    for name, record in replicas.items():
        assert holders.get(name) == [record.node_id], f"{name} is allocated on {holders.get(name)}"
    assert holders.keys() <= replicas.keys(), (
        f"allocated without a record: {holders.keys() - replicas.keys()}"
    )
    return replicas


async def app_record(store: Store, app_id: str) -> AppRecord | None:
    kv = await store.get(keys.app(app_id))
    return AppRecord.from_bytes(kv.value) if kv is not None else None
