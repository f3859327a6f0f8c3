"""Many simulated nodes in one process, on the real gRPC API of the node agent.

A :class:`SimFleet` registers ``count`` nodes with RegisterNode and heartbeats them in
batches: one Heartbeat stream and one asyncio task per batch (not per node), each
request carrying the batch's heartbeats, the way a real agent may batch too. Each
node's state is one byte of flags, its uid and its batch's number, so 100k nodes fit
in a few tens of MB. A batch's request is built once and re-sent every interval; it is
rebuilt only when one of its nodes changes (registers, goes silent, leaves, moves).

Directives are followed per node, as an agent would: REREGISTER registers the node
again, DRAIN makes it leave (deregister after ``drain_seconds``), REDIRECT moves it to a
batch heartbeating the named service replica. :meth:`silence` stops a node's heartbeats
(a crash, as the failure detector sees it) and :meth:`drain` makes it leave gracefully.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
from array import array
from dataclasses import dataclass, field
from typing import Self

import grpc

from astra._gen.astra.v1 import (
    common_pb2,
    node_pb2,
    resource_service_pb2,
    resource_service_pb2_grpc,
)
from astra.rpc import Backoff, open_channel, retry_call
from astra.server import Tasks
from node_agent import heartbeat_stream

_log = logging.getLogger(__name__)

_Action = resource_service_pb2.HeartbeatAction

# Per-node flags.
_REGISTERED = 1
_SILENT = 2
_DRAINING = 4
_LEFT = 8

#: Sim nodes' host address: loopback, so nothing ever reaches outside this machine.
SIM_ADDRESS = "127.0.0.1"


@dataclass
class FleetStats:
    """Counters of a fleet's traffic."""

    registrations: int = 0
    refused: int = 0
    heartbeats: int = 0
    requests: int = 0
    stream_failures: int = 0
    left: int = 0
    directives: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(slots=True, eq=False)
class _Batch:
    """Nodes that share one Heartbeat stream to one service replica."""

    number: int
    address: str
    indices: list[int]
    request: resource_service_pb2.HeartbeatRequest | None = None  # None: rebuild

    def invalidate(self) -> None:
        self.request = None


class SimFleet:
    """``count`` simulated nodes named ``nodes/{prefix}{index}`` (zero-padded).

    Use as ``async with SimFleet(address, 10_000) as fleet:`` (registers every node and
    heartbeats until the block ends), or :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        server: str,
        count: int,
        *,
        prefix: str = "sim-",
        batch_size: int = 1000,
        heartbeat_interval: float = 1.0,
        capacity: common_pb2.Resources | None = None,
        zones: tuple[str, ...] = ("sim-a",),
        accelerator: str = "",
        labels: dict[str, str] | None = None,
        registrars: int = 64,
        drain_seconds: float = 0.0,
        call_timeout: float = 10.0,
    ) -> None:
        """
        Args:
            server: ``host:port`` of the Resource service.
            count: how many nodes.
            prefix: the nodes' id prefix.
            batch_size: heartbeats per request (and nodes per stream).
            heartbeat_interval: seconds between beats until the service says otherwise.
            capacity: each node's capacity (default: 8 cores, 32 GiB, no GPU).
            zones: zones dealt round-robin to the nodes.
            accelerator: every node's accelerator type.
            labels: every node's labels, plus ``sim: "true"``.
            registrars: registrations in flight at once.
            drain_seconds: how long a draining node takes to drain before it leaves.
            call_timeout: the deadline of each unary call.
        """
        if count < 1 or batch_size < 1 or registrars < 1:
            raise ValueError("count, batch_size and registrars must be >= 1")
        self.count = count
        self.prefix = prefix
        self._width = len(str(count - 1))
        self._server = server
        self._batch_size = batch_size
        self._interval = heartbeat_interval
        self._capacity = capacity or common_pb2.Resources(cpu_millis=8000, memory_bytes=32 << 30)
        self._zones = zones
        self._accelerator = accelerator
        self._labels = {**(labels or {}), "sim": "true"}
        self._registrars = registrars
        self._drain_seconds = drain_seconds
        self._call_timeout = call_timeout
        self._flags = bytearray(count)
        self._uids: list[str] = [""] * count
        self._batch_of = array("i", [0]) * count
        self._batches: list[_Batch] = []
        self._channels: dict[
            str, tuple[grpc.aio.Channel, resource_service_pb2_grpc.ResourceServiceStub]
        ] = {}
        self._to_register: asyncio.Queue[int] = asyncio.Queue()
        self._queued = bytearray(count)
        self._tasks = Tasks()
        self._registered = 0
        self.stats = FleetStats()

    # -- identity ----------------------------------------------------------------------

    def node_id(self, index: int) -> str:
        return f"{self.prefix}{index:0{self._width}d}"

    def name(self, index: int) -> str:
        """The resource name of node ``index``."""
        return f"nodes/{self.node_id(index)}"

    def index_of(self, name: str) -> int | None:
        """The index of the node named ``name``; ``None`` if it is not one of the fleet's."""
        digits = name.removeprefix("nodes/").removeprefix(self.prefix)
        if len(digits) != self._width or not digits.isdigit() or len(name) != len(self.name(0)):
            return None
        index = int(digits)
        return index if index < self.count else None

    def uid(self, index: int) -> str:
        """The uid of node ``index``'s latest registration."""
        return self._uids[index]

    def address_of(self, index: int) -> str:
        """The Resource service replica node ``index`` heartbeats now."""
        return self._batches[self._batch_of[index]].address

    @property
    def registered(self) -> int:
        """Nodes registered now (and not left)."""
        return self._registered

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Register every node (heartbeating each from its registration on) and return
        once all are registered or refused."""
        for first in range(0, self.count, self._batch_size):
            self._new_batch(
                self._server, list(range(first, min(first + self._batch_size, self.count)))
            )
        for _ in range(self._registrars):
            self._tasks.spawn(self._registrar(), name="programs.sim.registrar")
        for index in range(self.count):
            self._enqueue(index)
        await self._to_register.join()

    async def close(self) -> None:
        """Stop every stream and call; the nodes stay registered until the service finds
        them silent (use :meth:`leave_all` first to deregister them). Idempotent."""
        await self._tasks.close()
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- controls ----------------------------------------------------------------------

    def silence(self, index: int) -> None:
        """Stop node ``index``'s heartbeats (a crash, as the failure detector sees it)."""
        self._set(index, _SILENT)

    def unsilence(self, index: int) -> None:
        """Resume node ``index``'s heartbeats."""
        self._flags[index] &= ~_SILENT
        self._batches[self._batch_of[index]].invalidate()

    def is_silent(self, index: int) -> bool:
        return bool(self._flags[index] & _SILENT)

    def has_left(self, index: int) -> bool:
        """Whether node ``index`` left the fleet (drained and deregistered)."""
        return bool(self._flags[index] & _LEFT)

    async def drain(self, index: int, *, reason: str = "SimDrain") -> None:
        """Make node ``index`` leave gracefully, as its agent would on SIGTERM: DrainNode,
        ``drain_seconds`` of draining with heartbeats going on, then DeleteNode."""
        if self._flags[index] & (_DRAINING | _LEFT):
            return
        self._flags[index] |= _DRAINING
        request = resource_service_pb2.DrainNodeRequest(name=self.name(index), reason=reason)
        stub = self._stub_of(index)
        await retry_call(
            lambda: stub.DrainNode(request, timeout=self._call_timeout),
            what=f"draining {request.name}",
            backoff=Backoff(),
        )
        await self._leave(index)

    async def leave_all(self, *, concurrency: int = 64) -> None:
        """Deregister every node still registered (a clean end of a benchmark)."""
        limit = asyncio.Semaphore(concurrency)

        async def leave(index: int) -> None:
            async with limit:
                await self._deregister(index)

        await asyncio.gather(
            *(leave(index) for index in range(self.count) if not self._flags[index] & _LEFT)
        )

    # -- registration ------------------------------------------------------------------

    def _enqueue(self, index: int) -> None:
        if not self._queued[index] and not self._flags[index] & _LEFT:
            self._queued[index] = 1
            self._to_register.put_nowait(index)

    async def _registrar(self) -> None:
        backoff = Backoff()
        while True:
            index = await self._to_register.get()
            try:
                await self._register(index, backoff)
            except grpc.aio.AioRpcError as exc:
                self.stats.refused += 1
                self._flags[index] |= _LEFT
                _log.warning("%s refused: %s %s", self.name(index), exc.code().name, exc.details())
            finally:
                self._queued[index] = 0
                self._to_register.task_done()

    async def _register(self, index: int, backoff: Backoff) -> None:
        request = resource_service_pb2.RegisterNodeRequest(node=self._node(index))
        while True:
            response = await retry_call(
                functools.partial(
                    self._stub_of(index).RegisterNode, request, timeout=self._call_timeout
                ),
                what=f"registering {request.node.name}",
                backoff=backoff,
            )
            if not response.redirect_address or response.redirect_address == self.address_of(index):
                break
            self._move(index, response.redirect_address)
        if response.heartbeat_interval.ToNanoseconds() > 0:
            self._interval = response.heartbeat_interval.ToNanoseconds() / 1e9
        self._uids[index] = response.node.uid
        if not self._flags[index] & _REGISTERED:
            self._registered += 1
        self._set(index, _REGISTERED)
        self.stats.registrations += 1

    def _node(self, index: int) -> node_pb2.Node:
        return node_pb2.Node(
            name=self.name(index),
            labels=self._labels,
            zone=self._zones[index % len(self._zones)],
            accelerator=self._accelerator,
            capacity=self._capacity,
            address=SIM_ADDRESS,
            agent_version="sim",
        )

    # -- heartbeats --------------------------------------------------------------------

    def _new_batch(self, address: str, indices: list[int]) -> _Batch:
        batch = _Batch(len(self._batches), address, indices)
        self._batches.append(batch)
        for index in indices:
            self._batch_of[index] = batch.number
        self._tasks.spawn(self._heartbeat(batch), name=f"programs.sim.batch-{batch.number}")
        return batch

    async def _heartbeat(self, batch: _Batch) -> None:
        backoff = Backoff()
        await asyncio.sleep(random.uniform(0, self._interval))  # batches spread over the interval
        while True:
            try:
                await heartbeat_stream(
                    self._channel(batch.address)[1],
                    beat=lambda: self._beat(batch),
                    follow=self._follow,
                    interval=lambda: self._interval,
                    healthy=backoff.reset,
                )
            except grpc.aio.AioRpcError as exc:
                self.stats.stream_failures += 1
                _log.debug(
                    "batch %d lost its stream: %s %s", batch.number, exc.code().name, exc.details()
                )
            await backoff.sleep()

    def _beat(self, batch: _Batch) -> resource_service_pb2.HeartbeatRequest | None:
        """The batch's request: built once, rebuilt only after one of its nodes changed.
        Usage is fixed per node (a spread of loads), so an unchanged request is re-sent."""
        if batch.request is None:
            flags, memory = self._flags, self._capacity.memory_bytes
            batch.request = resource_service_pb2.HeartbeatRequest(
                heartbeats=[
                    resource_service_pb2.NodeHeartbeat(
                        node=self.name(index),
                        uid=self._uids[index],
                        usage=node_pb2.NodeUsage(
                            cpu_utilization=(index % 10) / 20,
                            memory_used_bytes=memory * (index % 8) // 16,
                        ),
                    )
                    for index in batch.indices
                    if flags[index] & (_REGISTERED | _SILENT | _LEFT) == _REGISTERED
                ]
            )
        if not batch.request.heartbeats:
            return None
        self.stats.requests += 1
        self.stats.heartbeats += len(batch.request.heartbeats)
        return batch.request

    async def _follow(self, directive: resource_service_pb2.HeartbeatDirective) -> None:
        index = self.index_of(directive.node)
        if index is None or self._flags[index] & _LEFT:
            return
        self.stats.directives[_Action.Name(directive.action)] += 1
        if directive.action == _Action.HEARTBEAT_ACTION_REREGISTER:
            self._unregistered(index)
            self._enqueue(index)
        elif (
            directive.action == _Action.HEARTBEAT_ACTION_DRAIN
            and not self._flags[index] & _DRAINING
        ):
            self._flags[index] |= _DRAINING
            self._tasks.spawn(self._leave(index), name=f"programs.sim.leave-{index}")
        elif directive.action == _Action.HEARTBEAT_ACTION_REDIRECT and directive.redirect_address:
            self._move(index, directive.redirect_address)

    def _move(self, index: int, address: str) -> None:
        """Move node ``index`` to a batch heartbeating ``address``."""
        old = self._batches[self._batch_of[index]]
        if old.address == address:
            return
        old.indices.remove(index)
        old.invalidate()
        target = next(
            (
                batch
                for batch in reversed(self._batches)
                if batch.address == address and len(batch.indices) < self._batch_size
            ),
            None,
        )
        if target is None:
            self._new_batch(address, [index])
        else:
            target.indices.append(index)
            self._batch_of[index] = target.number
            target.invalidate()

    # -- leaving -----------------------------------------------------------------------

    async def _leave(self, index: int) -> None:
        await asyncio.sleep(self._drain_seconds)
        await self._deregister(index)

    async def _deregister(self, index: int) -> None:
        self._unregistered(index)
        self._set(index, _LEFT)  # heartbeats stop first, or the service asks to register again
        request = resource_service_pb2.DeleteNodeRequest(name=self.name(index))
        stub = self._stub_of(index)
        try:
            await retry_call(
                lambda: stub.DeleteNode(request, timeout=self._call_timeout),
                what=f"deleting {request.name}",
                backoff=Backoff(),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
        self.stats.left += 1

    # -- plumbing ----------------------------------------------------------------------

    def _set(self, index: int, flag: int) -> None:
        self._flags[index] |= flag
        self._batches[self._batch_of[index]].invalidate()

    def _unregistered(self, index: int) -> None:
        if self._flags[index] & _REGISTERED:
            self._flags[index] &= ~_REGISTERED
            self._registered -= 1
            self._batches[self._batch_of[index]].invalidate()

    def _stub_of(self, index: int) -> resource_service_pb2_grpc.ResourceServiceStub:
        return self._channel(self.address_of(index))[1]

    def _channel(
        self, address: str
    ) -> tuple[grpc.aio.Channel, resource_service_pb2_grpc.ResourceServiceStub]:
        if address not in self._channels:
            channel = open_channel(address, backoff=Backoff())
            self._channels[address] = (
                channel,
                resource_service_pb2_grpc.ResourceServiceStub(channel),
            )
        return self._channels[address]
