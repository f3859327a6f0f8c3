"""The nodes this replica owns, with their liveness and usage: heartbeats land here only.

Nothing here is written to the store. A heartbeat costs one dict lookup, a uid compare,
a float store for the new deadline and a few usage compares: O(1), no allocation unless
the usage moved enough to be worth telling subscribers (:data:`USAGE_STEP`). Memory per
member: an eight-slot object, the uid's hash and the memory figure, about 160 bytes
(deadlines of a batch and utilizations are shared float objects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from astra import LongLived
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.records import NodePhase
from astra.server import Violations
from services.resource._convert import PHASES, Usage
from services.resource._detector import Clock, DeadlineWheel
from services.resource._validation import check_usage

DRAINING = NodePhase.DRAINING.value
DEAD = NodePhase.DEAD.value

#: A utilization change below this is not news; nor is a memory change below 1/20.
USAGE_STEP = 0.05
#: Utilizations are kept to a thousandth, as one shared float object per value: a node's
#: usage then costs no memory of its own but its memory figure.
_FRACTIONS = [step / 1000 for step in range(1001)]


class Member:
    """A node owned by this replica."""

    __slots__ = ("cpu", "deadline", "gpu", "memory", "name", "phase", "slot", "uid_hash")

    def __init__(self, name: str, uid: str, phase: str, deadline: float) -> None:
        self.name = name
        #: ``hash(uid)``: what each heartbeat's uid is checked against (a 64-bit number
        #: instead of the 32-character uid itself, for memory).
        self.uid_hash = hash(uid)
        self.phase = phase
        #: When the node is dead unless heard from, in the registry clock's time.
        self.deadline = deadline
        self.slot: list[Member] | None = None
        #: The last usage reported, utilizations to a thousandth (``cpu`` is ``None``
        #: until a heartbeat arrives).
        self.cpu: float | None = None
        self.memory = 0
        self.gpu = 0.0

    def is_incarnation(self, uid: str) -> bool:
        """Whether ``uid`` is the uid this member was tracked under."""
        return hash(uid) == self.uid_hash


#: The slow path of a heartbeat the table cannot answer alone (unknown member or uid):
#: gets the heartbeat and its index, returns the member to record it on or a directive.
SlowPath = Callable[[rs.NodeHeartbeat, int], "Member | rs.HeartbeatDirective"]


class Registry:
    """Members by node name, their deadlines in a :class:`DeadlineWheel`."""

    def __init__(self, *, dead_after: float, wheel: DeadlineWheel, clock: Clock) -> None:
        self.dead_after = dead_after
        self.members: dict[str, Member] = {}
        self._wheel = wheel
        self._clock = clock
        self._usage_changed: set[str] = set()
        #: Members live long: once there are many, the garbage collector leaves them be.
        self.long_lived = LongLived()

    def track(self, name: str, uid: str, phase: str, deadline: float) -> Member:
        """Own ``name`` (or update it): watched for silence unless DEAD. O(1).

        ``deadline`` is in the time of the registry's clock (see :meth:`deadline`)."""
        phase = PHASES.get(phase, phase)
        member = self.members.get(name)
        if member is None:
            member = self.members[name] = Member(name, uid, phase, deadline)
            self.long_lived.grew_to(len(self.members))
            earlier = False
        else:
            earlier = deadline < member.deadline
            member.uid_hash, member.phase, member.deadline = hash(uid), phase, deadline
        if phase == DEAD:
            self._wheel.unschedule(member)
        elif member.slot is None or earlier:
            self._wheel.schedule(member)  # the wheel only re-checks deadlines that moved later
        return member

    def deadline(self, after: float) -> float:
        """The deadline ``after`` seconds from now, in the registry's clock."""
        return self._clock.now() + after

    def forget(self, name: str) -> None:
        """Stop owning ``name``."""
        member = self.members.pop(name, None)
        if member is not None:
            self._wheel.unschedule(member)
            self._usage_changed.discard(name)

    def ingest(
        self, heartbeats: Sequence[rs.NodeHeartbeat], slow: SlowPath
    ) -> list[rs.HeartbeatDirective]:
        """Record a batch of heartbeats received now; returns the directives for the
        nodes that must act. O(len(heartbeats)), about a microsecond each: this is the
        hottest loop of the service, hence its locals.

        Raises:
            InvalidArgumentError: a usage is out of range (``heartbeats[3].usage.cpu_utilization``).
        """
        deadline = self._clock.now() + self.dead_after
        find = self.members.get
        usage_changed = self._usage_changed
        directives: list[rs.HeartbeatDirective] = []
        for index, heartbeat in enumerate(heartbeats):
            member = find(heartbeat.node)
            if member is None or member.uid_hash != hash(heartbeat.uid):
                found = slow(heartbeat, index)
                if isinstance(found, rs.HeartbeatDirective):
                    directives.append(found)
                    continue
                member = found
            phase = member.phase
            if phase is DEAD:
                directives.append(dead_directive(heartbeat.node))
                continue
            member.deadline = deadline
            usage = heartbeat.usage
            cpu, memory, gpu = usage.cpu_utilization, usage.memory_used_bytes, usage.gpu_utilization
            if not (0.0 <= cpu <= 1.0 and 0.0 <= gpu <= 1.0 and memory >= 0):
                _reject_usage(usage, index)
            known = member.cpu
            if (
                known is None
                or not -USAGE_STEP < cpu - known < USAGE_STEP
                or not -USAGE_STEP < gpu - member.gpu < USAGE_STEP
                or abs(memory - member.memory) * 20 > member.memory
            ):
                member.cpu, member.gpu = (
                    _FRACTIONS[round(cpu * 1000)],
                    _FRACTIONS[round(gpu * 1000)],
                )
                member.memory = memory
                usage_changed.add(member.name)
            if phase is DRAINING:
                directives.append(
                    rs.HeartbeatDirective(
                        node=heartbeat.node,
                        action=rs.HEARTBEAT_ACTION_DRAIN,
                        message="the node is draining: take no new work and finish what runs",
                    )
                )
        return directives

    def usage(self, name: str) -> Usage | None:
        """The usage last reported by ``name``, if it heartbeated since this replica owns it."""
        member = self.members.get(name)
        if member is None or member.cpu is None:
            return None
        heard = self._clock.to_wall(member.deadline - self.dead_after)
        return Usage(member.cpu, member.memory, member.gpu, heard)

    def take_usage_changed(self) -> set[str]:
        """Nodes whose usage moved (by :data:`USAGE_STEP`) since the last call."""
        changed, self._usage_changed = self._usage_changed, set()
        return changed


def _reject_usage(usage: node_pb2.NodeUsage, index: int) -> None:
    violations = Violations()
    check_usage(violations.at("heartbeats").at(index).at("usage"), usage)
    violations.raise_if_any()


def dead_directive(name: str) -> rs.HeartbeatDirective:
    return rs.HeartbeatDirective(
        node=name,
        action=rs.HEARTBEAT_ACTION_REREGISTER,
        message=f"{name} was declared DEAD after missing heartbeats; its work was moved "
        "elsewhere: register again (RegisterNode) and start afresh",
    )
