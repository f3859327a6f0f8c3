"""The fleet from the Resource service's ``WatchCluster`` stream: a snapshot, then deltas.

:class:`ClusterFeed` is a client of that stream, without heartbeat usage (only
transitions and allocation changes come through). It converts each message into node
records and hands them to its consumer; after a lost connection it resumes from the
revision after the last message, and when the service has forgotten that revision
(OUT_OF_RANGE) it starts again from a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from astra._gen.astra.v1 import node_pb2, resource_service_pb2, resource_service_pb2_grpc
from astra.records import NodePhase, NodeRecord, Quantity
from astra.rpc import Backoff, open_channel

_log = logging.getLogger(__name__)

_NODE_PREFIX = "nodes/"
_PHASES = {
    node_pb2.NODE_PHASE_READY: NodePhase.READY.value,
    node_pb2.NODE_PHASE_DRAINING: NodePhase.DRAINING.value,
    node_pb2.NODE_PHASE_DEAD: NodePhase.DEAD.value,
}

#: Receives one message: changed nodes, removed node ids, and whether it is a snapshot
#: (every node; the ones not in it are gone).
Consumer = Callable[[list[NodeRecord], list[str], bool], None]
#: Where the Resource service is: an address, or a coroutine function that gives it.
ResourceTarget = str | Callable[[], Awaitable[str]]


def node_record(node: node_pb2.Node) -> NodeRecord:
    """The record of a node as ``WatchCluster`` describes it (what schedulers need)."""
    return NodeRecord(
        node_id=node.name.removeprefix(_NODE_PREFIX),
        uid=node.uid,
        capacity=Quantity(node.capacity.cpu_millis, node.capacity.memory_bytes, node.capacity.gpus),
        address=node.address,
        zone=node.zone,
        accelerator=node.accelerator,
        labels=dict(node.labels),
        phase=_PHASES.get(node.phase, NodePhase.DEAD.value),
        phase_reason=node.phase_reason,
        generation=node.generation,
    )


class ClusterFeed:
    """Follows ``WatchCluster`` for ``consumer`` until cancelled.

    Args:
        target: the Resource service's ``host:port``, or a coroutine function that
            returns it (awaited before each connection).
        consumer: told about every message.
    """

    def __init__(self, target: ResourceTarget, consumer: Consumer) -> None:
        self._target = target
        self._consumer = consumer
        self._revision = 0
        #: Set once the first snapshot has been handed to the consumer.
        self.synced = asyncio.Event()

    async def run(self) -> None:
        """Consume the stream forever, reconnecting with backoff."""
        backoff = Backoff(base=0.05, cap=2.0)
        while True:
            address = self._target if isinstance(self._target, str) else await self._target()
            try:
                async with open_channel(address, backoff=backoff) as channel:
                    await self._consume(
                        resource_service_pb2_grpc.ResourceServiceStub(channel), backoff
                    )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.OUT_OF_RANGE:
                    _log.info(
                        "WatchCluster forgot revision %d: starting from a snapshot", self._revision
                    )
                    self._revision = 0
                else:
                    _log.warning(
                        "WatchCluster at %s ended: %s %s", address, exc.code().name, exc.details()
                    )
            except Exception:
                _log.exception("consuming WatchCluster failed: starting again from a snapshot")
                self._revision = 0
            await backoff.sleep()

    async def _consume(
        self, stub: resource_service_pb2_grpc.ResourceServiceStub, backoff: Backoff
    ) -> None:
        start = self._revision + 1 if self._revision else 0
        request = resource_service_pb2.WatchClusterRequest(start_revision=start, omit_usage=True)
        async for message in stub.WatchCluster(request, wait_for_ready=True):
            backoff.reset()
            records = [node_record(node) for node in message.nodes]
            removed = [name.removeprefix(_NODE_PREFIX) for name in message.removed_nodes]
            self._consumer(records, removed, message.snapshot)
            self._revision = max(self._revision, message.revision)
            if (message.snapshot or start) and not self.synced.is_set():
                _log.debug("following WatchCluster from revision %d", self._revision)
                self.synced.set()
