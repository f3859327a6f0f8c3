"""The transitions of a node's record: pure functions of the stored record.

A transition is applied twice: when it is submitted, to the newest record this replica
knows (to answer the caller, and to fail early on an unknown node), and again when it is
written, to the record the store holds then (so a write that lost an optimistic race is
redone on the fresh record). Each is idempotent: applied to its own result it is a no-op,
which makes retrying a write whose fate is unknown safe.
"""

from __future__ import annotations

import abc
import enum
import uuid
from dataclasses import dataclass
from typing import ClassVar

from astra.errors import ConflictError, FailedPreconditionError, NotFoundError
from astra.records import NodePhase, NodeRecord, Quantity
from services.resource._convert import NodeSpec, Stored, node_name


class Verdict(enum.Enum):
    """A transition's result other than a new record."""

    NOOP = "noop"  # the record already is what the transition wants
    DELETE = "delete"  # the node leaves the store


Result = NodeRecord | Verdict


class Transition(abc.ABC):
    """A change of one node's record."""

    #: The metric label of the transition.
    kind: ClassVar[str]

    @abc.abstractmethod
    def apply(self, node_id: str, current: Stored | None, now: float) -> Result:
        """The record after the transition, given the ``current`` one (``None``: absent).

        Raises:
            NotFoundError, FailedPreconditionError, ConflictError: the transition does
                not apply to the current record.
        """


@dataclass(frozen=True, slots=True)
class Register(Transition):
    """Join the fleet, or update the spec (a new generation); a DEAD node becomes READY.

    A DRAINING node stays DRAINING (an agent restarted during its drain keeps draining).
    """

    spec: NodeSpec
    writer: str
    #: The uid of the node if this registration creates it; fixed up front so that a
    #: write redone after a lost race or an outage keeps the uid the caller was given.
    new_uid: str

    kind: ClassVar[str] = "register"

    @classmethod
    def of(cls, spec: NodeSpec, writer: str) -> Register:
        return cls(spec, writer, uuid.uuid4().hex)

    def apply(self, node_id: str, current: Stored | None, now: float) -> Result:
        if current is None:
            record = NodeRecord(
                node_id=node_id,
                uid=self.new_uid,
                capacity=Quantity(),
                phase=NodePhase.READY.value,
                phase_reason="Registered",
                create_time=now,
                update_time=now,
                owner=self.writer,
            )
            self.spec.apply_to(record)
            return record
        record = current.record()
        changed = not self.spec.matches(record)
        revived = record.phase == NodePhase.DEAD.value
        if not changed and not revived:
            return Verdict.NOOP
        if changed:
            self.spec.apply_to(record)
            record.generation += 1
        if revived:
            record.phase, record.phase_reason = NodePhase.READY.value, "Registered"
        record.update_time, record.owner = now, self.writer
        return record


@dataclass(frozen=True, slots=True)
class Drain(Transition):
    """Start draining: idempotent on a DRAINING node, refused on a DEAD one."""

    reason: str
    writer: str

    kind: ClassVar[str] = "drain"

    def apply(self, node_id: str, current: Stored | None, now: float) -> Result:
        if current is None:
            raise NotFoundError(f"node {node_name(node_id)} not found")
        record = current.record()
        if record.phase == NodePhase.DRAINING.value:
            return Verdict.NOOP
        if record.phase == NodePhase.DEAD.value:
            raise FailedPreconditionError(
                f"node {node_name(node_id)} is DEAD ({record.phase_reason}): there is "
                "nothing to drain; delete it, or register it again first"
            )
        record.phase, record.phase_reason = NodePhase.DRAINING.value, self.reason or "Drain"
        record.update_time, record.owner = now, self.writer
        return record


@dataclass(frozen=True, slots=True)
class Dead(Transition):
    """The failure detector's verdict on one incarnation (``uid``) of a node: a no-op if
    the node was removed, registered again under a new uid, or is DEAD already."""

    uid: str
    writer: str
    #: Monotonic time of the node's last heartbeat (for the eviction-time metric).
    last_heard: float = 0.0

    kind: ClassVar[str] = "dead"

    def apply(self, node_id: str, current: Stored | None, now: float) -> Result:
        if current is None:
            return Verdict.NOOP
        record = current.record()
        if record.uid != self.uid or record.phase == NodePhase.DEAD.value:
            return Verdict.NOOP
        record.phase, record.phase_reason = NodePhase.DEAD.value, "HeartbeatTimeout"
        record.update_time, record.owner = now, self.writer
        return record


@dataclass(frozen=True, slots=True)
class Remove(Transition):
    """Leave the fleet; with an ``etag``, only if the record is still that one. A no-op
    on an absent node (so a retried delete succeeds): callers check existence first."""

    etag: str

    kind: ClassVar[str] = "remove"

    def apply(self, node_id: str, current: Stored | None, now: float) -> Result:
        if current is None:
            return Verdict.NOOP
        if self.etag and self.etag != current.etag:
            raise ConflictError(
                f"node {node_name(node_id)} changed since etag {self.etag}: get it again and retry"
            )
        return Verdict.DELETE
