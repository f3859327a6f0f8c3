"""The Resource service: one replica's servicer and the background work behind it.

How the pieces fit:

- :class:`ClusterView` follows every node record and allocation in the store.
- :class:`Registry` holds the nodes this replica owns (by :class:`Ownership`): their
  deadlines and usage. Heartbeats land there and nowhere else.
- :class:`FailureDetector` finds owned nodes whose deadline passed and submits DEAD.
- :class:`Outbox` writes every transition (joined, spec changed, DRAINING, DEAD,
  removed) in order with optimistic transactions, and holds them while the store is away.
- :class:`Aggregator` turns view changes into WatchCluster deltas every tick.

Decisions worth knowing:

- A heartbeat from a node declared DEAD is answered with a REREGISTER directive: its work
  was re-placed, so the agent registers again (the node becomes READY, same uid) and
  starts afresh rather than silently resuming.
- A node that moves to this replica (its owner died or a replica joined) gets
  ``takeover_grace`` to find its new owner before it can be declared dead.
- DeleteNode removes the node's record and, in the same transaction, its alloc record if
  that holds no replica; an alloc that still holds replicas is left to the schedulers,
  who re-place them and delete it. DEAD nodes stay listed until deleted or re-registered.
- GetNode answers from the newest record this replica knows (including transitions held
  during a store outage); ListNodes and WatchCluster show what the store holds.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, Self

import grpc
from google.protobuf.duration_pb2 import Duration

from astra import telemetry
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra._gen.astra.v1 import resource_service_pb2_grpc as rs_grpc
from astra.coordination import Ownership
from astra.errors import FieldViolation, InvalidArgumentError, NotFoundError
from astra.server import Server, Tasks
from astra.store import CompactedError, Store
from services.resource import _validation as checks
from services.resource._aggregator import Aggregator
from services.resource._convert import (
    PHASE_FROM_PROTO,
    NodeSpec,
    Stored,
    fill_node,
    node_name,
    to_node,
)
from services.resource._detector import Clock, DeadlineWheel, FailureDetector, Watched
from services.resource._outbox import Outbox, Submitted, Written
from services.resource._registry import DEAD, DRAINING, Member, Registry, dead_directive
from services.resource._transitions import Dead, Drain, Register, Remove, Transition
from services.resource._view import ClusterView, ViewNode

_log = logging.getLogger(__name__)

DESCRIPTOR = rs.DESCRIPTOR.services_by_name["ResourceService"]
#: How long a write's caller waits for its own watch to catch up (read-your-writes).
_CATCH_UP_SECONDS = 2.0


class ResourceService(rs_grpc.ResourceServiceServicer):
    """One replica of the Resource service.

    Args:
        store: the control plane's store.
        address: ``host:port`` where agents reach this replica (what redirects name).
        replica_id: unique among replicas; random by default.
        heartbeat_interval: what agents are told to heartbeat at, in seconds.
        dead_after: silence after which a node is DEAD, in seconds.
        takeover_grace: the time a node that moved to this replica gets to be heard
            from before it can be declared dead (default: twice ``dead_after``).
        tick: seconds between WatchCluster deltas.
        lease_ttl: seconds a dead replica keeps its nodes before the others take them.
    """

    def __init__(
        self,
        store: Store,
        *,
        address: str,
        replica_id: str | None = None,
        heartbeat_interval: float = 1.0,
        dead_after: float = 3.0,
        takeover_grace: float | None = None,
        tick: float = 0.1,
        lease_ttl: int = 3,
    ) -> None:
        self.replica_id = replica_id or uuid.uuid4().hex[:12]
        self._heartbeat_interval = Duration()
        self._heartbeat_interval.FromNanoseconds(int(heartbeat_interval * 1e9))
        self._dead_after = dead_after
        self._grace = 2 * dead_after if takeover_grace is None else takeover_grace
        self.view = ClusterView(store)
        tick_seconds = min(0.05, dead_after / 10)
        self.clock = Clock(tolerance=max(0.25, 5 * tick_seconds))
        wheel = DeadlineWheel(tick_seconds, start=self.clock.now())
        self.registry = Registry(dead_after=dead_after, wheel=wheel, clock=self.clock)
        self.detector = FailureDetector(wheel, self._on_dead, clock=self.clock, tick=tick_seconds)
        self.outbox = Outbox(store, self.view, on_written=self._on_written)
        self.ownership = Ownership(
            store,
            service="resource",
            replica_id=self.replica_id,
            address=address,
            ttl=lease_ttl,
            presume_self=True,
        )
        self.aggregator = Aggregator(self.view, self.registry, tick=tick)
        self._tasks = Tasks()
        self._metrics: _Metrics | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the fleet, join the replicas, take over this replica's nodes (with the
        grace period) and start the background work."""
        self._metrics = _Metrics(self)
        await self.view.load()
        await self.ownership.join()
        self.view.listeners.append(self._on_view_change)
        self.ownership.listeners.append(self._rebalance)
        self._rebalance()
        for name, work in (
            ("nodes", self.view.follow_nodes()),
            ("allocs", self.view.follow_allocs()),
            ("ownership", self.ownership.run()),
            ("outbox", self.outbox.run()),
            ("detector", self.detector.run()),
            ("aggregator", self.aggregator.run()),
        ):
            self._tasks.spawn(work, name=f"resource.{name}")
        _log.info(
            "Resource replica %s started with %d nodes", self.replica_id, len(self.view.nodes)
        )

    async def shutdown(self, *, grace: float = 2.0) -> None:
        """Write what is queued (for up to ``grace`` seconds), hand this replica's nodes to
        the others, and stop. Idempotent."""
        if not await self.outbox.flush(grace):
            _log.warning("stopping with %d transitions not written", len(self.outbox))
        await self.ownership.leave()
        await self._tasks.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def add_to(self, server: Server) -> None:
        """Serve this replica on ``server``."""
        server.add_servicer(self, rs_grpc.add_ResourceServiceServicer_to_server, DESCRIPTOR)

    # -- ownership and the view --------------------------------------------------------

    def _adopt(self, entry: ViewNode, deadline: float) -> Member:
        record = entry.stored().record()
        return self.registry.track(entry.name, record.uid, record.phase, deadline)

    def _rebalance(self) -> None:
        """Take the nodes this replica now owns (with grace), drop the others. O(nodes)."""
        deadline = self.registry.deadline(self._grace)
        members = self.registry.members
        for name, entry in self.view.nodes.items():
            owned = self.ownership.owns(name)
            if owned and name not in members and entry.phase != DEAD:
                self._adopt(entry, deadline)
            elif not owned and name in members:
                self.registry.forget(name)

    def _on_view_change(self, name: str, old: ViewNode | None, new: ViewNode | None) -> None:
        """Keep owned members in step with records written by anyone."""
        if new is None:
            self.registry.forget(name)
            return
        if self.outbox.has_queued(name):
            return  # this replica's own transitions of the node are still on their way
        member = self.registry.members.get(name)
        if member is None:
            if new.phase != DEAD and self.ownership.owns(name):
                self._adopt(new, self.registry.deadline(self._grace))
            return
        revived = member.phase == DEAD and new.phase != DEAD
        self._adopt(new, self.registry.deadline(self._grace) if revived else member.deadline)

    def _on_dead(self, node: Watched) -> None:
        assert isinstance(node, Member)
        current = self.outbox.current(node.name)
        record = None if current is None else current.record()
        if record is None:
            self.registry.forget(node.name)
            return
        if not node.is_incarnation(record.uid):  # registered anew behind this member's back
            self.registry.track(
                node.name, record.uid, record.phase, self.registry.deadline(self._dead_after)
            )
            return
        node.phase = DEAD
        _log.info("%s missed its heartbeats for %.1fs: DEAD", node.name, self._dead_after)
        self.outbox.submit(
            node.name, Dead(record.uid, self.replica_id, node.deadline - self._dead_after)
        )

    def _on_written(self, transition: Transition, waited: float) -> None:
        if self._metrics is not None:
            self._metrics.written(transition, waited)

    def _redirect(self, name: str) -> str:
        """The address of the replica that owns ``name`` when it is another one, else ``""``."""
        owner = self.ownership.owner(name)
        return "" if owner in (None, self.replica_id) else self.ownership.address_of(owner)

    async def _settle(self, submitted: Submitted) -> Stored | None:
        """The record a submitted transition led to, once written (then visible to reads
        here), or as held while the store is away."""
        outcome = await self.outbox.settle(submitted)
        if not isinstance(outcome, Written):
            return submitted.preview
        if outcome.revision:
            await self.view.wait_revision(outcome.revision, _CATCH_UP_SECONDS)
        return outcome.stored

    def _node(self, name: str, stored: Stored) -> Any:
        return to_node(stored, allocated=self.view.allocated(name), usage=self.registry.usage(name))

    # -- RPCs ------------------------------------------------------------------------

    async def RegisterNode(
        self, request: rs.RegisterNodeRequest, context: Any
    ) -> rs.RegisterNodeResponse:
        name = node_name(checks.check_register(request))
        redirect = self._redirect(name)
        if redirect:
            return rs.RegisterNodeResponse(
                heartbeat_interval=self._heartbeat_interval, redirect_address=redirect
            )
        stored = await self._settle(
            self.outbox.submit(
                name, Register.of(NodeSpec.from_proto(request.node), self.replica_id)
            )
        )
        assert stored is not None
        node = self._node(name, stored)
        deadline = self.registry.deadline(self._dead_after)
        self.registry.track(
            self.view.canonical(name), node.uid, PHASE_FROM_PROTO[node.phase], deadline
        )
        return rs.RegisterNodeResponse(node=node, heartbeat_interval=self._heartbeat_interval)

    async def Heartbeat(self, request_iterator: Any, context: Any) -> None:
        # context.read(), not the request iterator, which holds on to the last message it
        # gave (a batch can be a thousand heartbeats) until the next one arrives.
        while (request := await context.read()) is not grpc.aio.EOF:
            checks.check_heartbeat_size(request)
            directives = self.registry.ingest(request.heartbeats, self._slow_heartbeat)
            if self._metrics is not None:
                self._metrics.heartbeats.add(len(request.heartbeats))
            del request
            if directives:
                await context.write(rs.HeartbeatResponse(directives=directives))

    def _slow_heartbeat(
        self, heartbeat: rs.NodeHeartbeat, index: int
    ) -> Member | rs.HeartbeatDirective:
        """A heartbeat of a node this replica does not track under that uid."""
        name = heartbeat.node
        if checks.node_id(name) is None:
            raise InvalidArgumentError(
                [FieldViolation(f"heartbeats[{index}].node", 'must be "nodes/{node_id}"')]
            )
        current = self.outbox.current(name)
        if current is None:
            return rs.HeartbeatDirective(
                node=name,
                action=rs.HEARTBEAT_ACTION_REREGISTER,
                message=f"{name} is not registered (NOT_FOUND): call RegisterNode, then "
                "heartbeat with the uid it returns",
            )
        redirect = self._redirect(name)
        if redirect:
            return rs.HeartbeatDirective(
                node=name,
                action=rs.HEARTBEAT_ACTION_REDIRECT,
                redirect_address=redirect,
                message=f"{name} is owned by the Resource replica at {redirect}: heartbeat there",
            )
        record = current.record()
        if record.uid != heartbeat.uid:
            return rs.HeartbeatDirective(
                node=name,
                action=rs.HEARTBEAT_ACTION_REREGISTER,
                message=f"{name} has uid {record.uid}, not {heartbeat.uid or '(none)'}: it was "
                "removed and registered again since; register again",
            )
        if record.phase == DEAD:
            return dead_directive(name)
        deadline = self.registry.deadline(self._dead_after)
        return self.registry.track(self.view.canonical(name), record.uid, record.phase, deadline)

    async def DrainNode(self, request: rs.DrainNodeRequest, context: Any) -> rs.DrainNodeResponse:
        name = node_name(checks.check_drain(request))
        stored = await self._settle(
            self.outbox.submit(name, Drain(request.reason, self.replica_id))
        )
        assert stored is not None
        member = self.registry.members.get(name)
        if member is not None and member.phase != DEAD:
            member.phase = DRAINING
        return rs.DrainNodeResponse(node=self._node(name, stored))

    async def DeleteNode(
        self, request: rs.DeleteNodeRequest, context: Any
    ) -> rs.DeleteNodeResponse:
        name = node_name(checks.check_named(request.name))
        if self.outbox.current(name) is None:
            raise NotFoundError(f"node {name} not found")
        await self._settle(self.outbox.submit(name, Remove(request.etag)))
        self.registry.forget(name)
        return rs.DeleteNodeResponse()

    async def GetNode(self, request: rs.GetNodeRequest, context: Any) -> rs.GetNodeResponse:
        name = node_name(checks.check_named(request.name))
        stored = self.outbox.current(name)
        if stored is None:
            raise NotFoundError(f"node {name} not found")
        return rs.GetNodeResponse(node=self._node(name, stored))

    async def ListNodes(self, request: rs.ListNodesRequest, context: Any) -> rs.ListNodesResponse:
        """Nodes in name order from the view. O(page) without filters; with filters, the
        nodes skipped count too."""
        page_size = checks.check_list(request)
        phase = _phase_filter(request.phase)
        names = (
            self.view.names_from(_decode_token(request.page_token))
            if request.page_token
            else self.view.sorted_names()
        )
        response = rs.ListNodesResponse()
        selector = dict(request.label_selector)
        for name in names:
            entry = self.view.nodes.get(name)
            if entry is None or (phase and entry.phase != phase):
                continue
            if selector and not selector.items() <= entry.stored().record().labels.items():
                continue
            if len(response.nodes) == page_size:
                response.next_page_token = _encode_token(response.nodes[-1].name)
                break
            fill_node(
                response.nodes.add(),
                entry.stored(),
                allocated=self.view.allocated(name),
                usage=self.registry.usage(name),
            )
        return response

    async def WatchCluster(
        self, request: rs.WatchClusterRequest, context: Any
    ) -> AsyncIterator[rs.WatchClusterResponse]:
        if request.start_revision < 0:
            raise InvalidArgumentError([FieldViolation("start_revision", "must be >= 0")])
        try:
            async for message in self.aggregator.watch(request):
                yield message
                del message  # a snapshot can be big: keep no reference while waiting
        except CompactedError as exc:
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"revision {request.start_revision} is older than this replica remembers "
                f"(oldest: {exc.compact_revision}): watch again from 0 for a snapshot",
            )


def _phase_filter(value: int) -> str:
    if not value:
        return ""
    phase = PHASE_FROM_PROTO.get(value)
    if phase is None:
        raise InvalidArgumentError([FieldViolation("phase", f"unknown node phase {value}")])
    return phase


def _encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        name = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        name = ""
    if checks.node_id(name) is None:
        raise InvalidArgumentError(
            [FieldViolation("page_token", "is not a token from a previous ListNodes")]
        )
    return name


class _Metrics:
    """The service's OpenTelemetry instruments (no-ops while telemetry is off)."""

    def __init__(self, service: ResourceService) -> None:
        self._clock = service.clock
        meter = telemetry.meter("astra.resource")
        self.heartbeats = meter.create_counter(
            "astra.resource.heartbeats", description="Node heartbeats received"
        )
        self._transitions = meter.create_counter(
            "astra.resource.transitions", description="Node transitions written to the store"
        )
        self._queued = meter.create_histogram(
            "astra.resource.transition.queued",
            unit="s",
            description="Time from a transition to its write",
        )
        self._eviction = meter.create_histogram(
            "astra.resource.eviction",
            unit="s",
            description="Time from a node's last heartbeat to DEAD in the store",
        )
        meter.create_observable_gauge(
            "astra.resource.nodes",
            callbacks=[lambda options: service.view.pools.observations()],
            description="Nodes by phase",
        )

    def written(self, transition: Transition, waited: float) -> None:
        self._transitions.add(1, {"kind": transition.kind})
        self._queued.record(waited, {"kind": transition.kind})
        if isinstance(transition, Dead):
            self._eviction.record(self._clock.now() - transition.last_heard)
