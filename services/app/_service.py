"""The App service: one replica's servicer and what runs behind it.

- :class:`AppRepository` reads and writes app records (etag, field mask, generation),
  and with them the model versions each app owns (:mod:`services.app._model_owners`):
  CreateApp and UpdateApp claiming a version another app serves answer ALREADY_EXISTS
  (FAILED_PRECONDITION while that app is being deleted).
- :class:`Catalog` holds every app record in memory, for listing and for the owners.
- :class:`Ownership` splits the apps between the live replicas (leases, rendezvous).
- :class:`SchedulerHost` runs one scheduler per owned app and writes their status.

Any replica answers any request; only an app's owner places its replicas.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Self

from astra import keys
from astra._gen.astra.v1 import app_service_pb2 as aps
from astra._gen.astra.v1 import app_service_pb2_grpc as aps_grpc
from astra.coordination import Ownership
from astra.errors import NotFoundError
from astra.messages import replica_to_proto
from astra.names import app_name
from astra.records import AppRecord, ReplicaRecord
from astra.server import Server, Tasks
from astra.store import EventType, Get, RangeResult, Store
from scheduling import ResourceTarget
from services.app import _validation as checks
from services.app._catalog import Catalog
from services.app._convert import to_app
from services.app._host import SchedulerHost
from services.app._pages import decode_token, encode_token, page_size
from services.app._repository import AppRepository

_log = logging.getLogger(__name__)

DESCRIPTOR = aps.DESCRIPTOR.services_by_name["AppService"]
#: How long a write waits for this replica's catalog to hold it, so that a client
#: listing on the replica it wrote through reads its own write.
_CATCH_UP_SECONDS = 2.0


class AppService(aps_grpc.AppServiceServicer):
    """One replica of the App service.

    Args:
        store: the control plane's store.
        resource: the Resource service whose ``WatchCluster`` feeds the schedulers.
        replica_id: unique among the App service's replicas; random by default.
        address: this replica's ``host:port``, advertised with its lease.
        lease_ttl: seconds a dead replica's apps wait before the others take them.
        workers: apps reconciled at once.
        delete_wait: the longest DeleteApp waits for the app's replicas to be freed.
    """

    def __init__(
        self,
        store: Store,
        *,
        resource: ResourceTarget,
        replica_id: str | None = None,
        address: str = "",
        lease_ttl: int = 3,
        workers: int = 4,
        delete_wait: float = 10.0,
    ) -> None:
        self.replica_id = replica_id or uuid.uuid4().hex[:12]
        self._store = store
        self._delete_wait = delete_wait
        self._repository = AppRepository(store)
        self.catalog = Catalog(store)
        self.ownership = Ownership(
            store, service="app", replica_id=self.replica_id, address=address, ttl=lease_ttl
        )
        self.host = SchedulerHost(store, self.catalog, self.ownership, resource, workers=workers)
        self._tasks = Tasks()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the apps, join the replicas and start scheduling the owned apps."""
        await self.catalog.follower.load()
        await self.ownership.join()
        await self.host.start()
        self._tasks.spawn(self.catalog.follower.follow(), name="app.catalog")
        self._tasks.spawn(self.ownership.run(), name="app.ownership")
        _log.info("App replica %s started with %d apps", self.replica_id, len(self.catalog.apps))

    async def shutdown(self) -> None:
        """Stop scheduling and hand this replica's apps to the others. Idempotent."""
        await self.host.close()
        await self._tasks.close()
        await self.ownership.leave()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def add_to(self, server: Server) -> None:
        """Serve this replica on ``server``."""
        server.add_servicer(self, aps_grpc.add_AppServiceServicer_to_server, DESCRIPTOR)

    # -- RPCs ------------------------------------------------------------------------

    async def CreateApp(self, request: aps.CreateAppRequest, context: Any) -> aps.CreateAppResponse:
        app_id = checks.check_create(request)
        record, revision = await self._repository.create(app_id, request.app)
        await self.catalog.follower.caught_up(revision, _CATCH_UP_SECONDS)
        return aps.CreateAppResponse(app=to_app(record))

    async def GetApp(self, request: aps.GetAppRequest, context: Any) -> aps.GetAppResponse:
        record, _ = await self._repository.get(checks.check_named(request.name))
        return aps.GetAppResponse(app=to_app(record))

    async def ListApps(self, request: aps.ListAppsRequest, context: Any) -> aps.ListAppsResponse:
        limit = page_size(request.page_size, default=100, limit=1000)
        after = decode_token("apps", request.page_token)
        records, more = self.catalog.page(after, limit)
        response = aps.ListAppsResponse(apps=[to_app(record) for record in records])
        if more:
            response.next_page_token = encode_token("apps", records[-1].app_id)
        return response

    async def UpdateApp(self, request: aps.UpdateAppRequest, context: Any) -> aps.UpdateAppResponse:
        app_id, paths = checks.check_update(request)
        record, revision = await self._repository.update(
            app_id, request.app, paths, request.app.etag
        )
        await self.catalog.follower.caught_up(revision, _CATCH_UP_SECONDS)
        return aps.UpdateAppResponse(app=to_app(record))

    async def DeleteApp(self, request: aps.DeleteAppRequest, context: Any) -> aps.DeleteAppResponse:
        app_id = checks.check_named(request.name)
        revision = await self._repository.mark_deleting(app_id, request.etag)
        await self.catalog.follower.caught_up(revision, _CATCH_UP_SECONDS)
        remaining = context.time_remaining()
        wait = self._delete_wait if remaining is None else min(self._delete_wait, remaining - 0.1)
        if wait > 0 and not await self._gone(app_id, revision, wait):
            _log.info("%s is still being freed after %.1fs", app_name(app_id), wait)
        return aps.DeleteAppResponse()

    async def ListReplicas(
        self, request: aps.ListReplicasRequest, context: Any
    ) -> aps.ListReplicasResponse:
        app_id = checks.check_named(request.parent, "parent")
        limit = page_size(request.page_size, default=500, limit=5000)
        kind = f"replicas:{app_id}"
        after = decode_token(kind, request.page_token)
        read = await self._store.txn(
            (), [Get(keys.app(app_id)), Get(keys.replicas_of(app_id), prefix=True)]
        )
        app, replicas = read.results
        assert isinstance(app, RangeResult) and isinstance(replicas, RangeResult)
        if not app.kvs or AppRecord.from_bytes(app.kvs[0].value).deleting:
            raise NotFoundError(f"{app_name(app_id)} not found")
        records = [ReplicaRecord.from_bytes(kv.value) for kv in replicas.kvs]
        page = [record for record in records if record.replica_id > after]
        response = aps.ListReplicasResponse(
            replicas=[replica_to_proto(record) for record in page[:limit]]
        )
        if len(page) > limit:
            response.next_page_token = encode_token(kind, page[limit - 1].replica_id)
        return response

    async def _gone(self, app_id: str, revision: int, timeout: float) -> bool:
        """Wait until the record of ``app_id`` is deleted after ``revision``."""
        try:
            async with asyncio.timeout(timeout):
                async for events in self._store.watch(
                    keys.app(app_id), start_revision=revision + 1
                ):
                    if any(
                        event.type is EventType.DELETE and event.kv.key == keys.app(app_id)
                        for event in events
                    ):
                        return True
        except TimeoutError:
            return False
        return False
