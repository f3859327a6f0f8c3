"""The Node service's gRPC servicer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Self

import grpc

from astra._gen.astra.v1 import node_service_pb2, node_service_pb2_grpc
from astra.messages import replica_to_proto
from astra.server import Server, Violations
from astra.store import CompactedError, Store
from services.node._hub import AssignmentHub, Delta, Subscription
from services.node._names import node_id
from services.node._status import parse_reports, write_statuses

_log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


class NodeService(node_service_pb2_grpc.NodeServiceServicer):
    """Hands each node agent the replicas placed on its node and writes their status.

    Start it before serving and close it after (or ``async with``): it owns the one
    store watch that feeds every assignment stream (see :class:`AssignmentHub`).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._hub = AssignmentHub(store)

    async def start(self) -> None:
        """Start watching the store. Idempotent."""
        await self._hub.start()

    async def close(self) -> None:
        """Stop watching; open assignment streams end with UNAVAILABLE. Idempotent."""
        await self._hub.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def add_to(self, server: Server) -> None:
        """Serve this servicer on ``server``."""
        server.add_servicer(
            self,
            node_service_pb2_grpc.add_NodeServiceServicer_to_server,
            node_service_pb2.DESCRIPTOR.services_by_name["NodeService"],
        )

    async def WatchAssignments(
        self, request: node_service_pb2.WatchAssignmentsRequest, context: Context
    ) -> AsyncIterator[node_service_pb2.WatchAssignmentsResponse]:
        violations = Violations()
        node = node_id(request.node)
        violations.check(node is not None, "node", "must be nodes/{node_id}")
        violations.check(request.start_revision >= 0, "start_revision", "must be >= 0")
        violations.raise_if_any()
        assert node is not None
        try:
            subscription, delta = await self._hub.subscribe(node, request.start_revision)
        except (CompactedError, ValueError) as exc:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, f"{exc}; watch again from 0")
        try:
            first = await self._response(subscription, delta, snapshot=not request.start_revision)
            assert first is not None
            yield first
            while True:
                response = await self._response(
                    subscription, await subscription.next(), snapshot=False
                )
                if response is not None:
                    yield response
        finally:
            self._hub.unsubscribe(subscription)

    async def ReportReplicaStatus(
        self, request: node_service_pb2.ReportReplicaStatusRequest, context: Context
    ) -> node_service_pb2.ReportReplicaStatusResponse:
        node, updates = parse_reports(request)
        removed = await write_statuses(self._store, node, updates)
        return node_service_pb2.ReportReplicaStatusResponse(removed_replicas=removed)

    async def _response(
        self, subscription: Subscription, delta: Delta, *, snapshot: bool
    ) -> node_service_pb2.WatchAssignmentsResponse | None:
        """The message for ``delta``: records not in the events are read at its
        revision; ``None`` when nothing is left to tell (and it is not a first message)."""
        first = snapshot or bool(delta.unchanged_since)
        missing = [name for name, record in delta.upserts.items() if record is None]
        fetched = await self._hub.read(missing, delta.revision) if missing else {}
        response = node_service_pb2.WatchAssignmentsResponse(
            revision=delta.revision, snapshot=snapshot, removed_replicas=sorted(delta.removed)
        )
        for name in sorted(delta.upserts):
            record = delta.upserts[name]
            if record is None:
                if name not in fetched:
                    continue  # named by the allocation before its record exists: sent when written
                record, mod_revision = fetched[name]
                if mod_revision < delta.unchanged_since and name in delta.previous:
                    subscription.sent(name, record)
                    continue  # the resuming agent has it already
            if record.node_id != subscription.node_id:
                _log.warning(
                    "nodes/%s's allocation names %s, placed on nodes/%s",
                    subscription.node_id,
                    name,
                    record.node_id,
                )
                continue
            subscription.sent(name, record)
            response.replicas.append(replica_to_proto(record))
        if first or response.replicas or response.removed_replicas:
            return response
        return None
