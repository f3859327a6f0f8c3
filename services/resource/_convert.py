"""Node records in memory, and conversions between them and the API's ``Node``.

In memory a record is kept as :class:`Stored`: its fields packed positionally with
msgpack, the uid as 16 bytes (about half the size of the store's self-describing
encoding, and several times faster to decode), and the ``mod_revision`` it has in the
store, which is also its etag.
The API's output-only extras come from elsewhere: ``allocated`` from the node's alloc
record, ``usage`` and ``heartbeat_time`` from heartbeats held in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack

from astra._gen.astra.v1 import common_pb2, node_pb2
from astra.records import NodePhase, NodeRecord, Quantity
from services.resource._validation import NAME_PREFIX

PHASE_TO_PROTO = {
    NodePhase.READY.value: node_pb2.NODE_PHASE_READY,
    NodePhase.DRAINING.value: node_pb2.NODE_PHASE_DRAINING,
    NodePhase.DEAD.value: node_pb2.NODE_PHASE_DEAD,
}
PHASE_FROM_PROTO: dict[int, str] = {value: phase for phase, value in PHASE_TO_PROTO.items()}
#: Each phase's one string object, shared by every node in memory.
PHASES = {phase.value: phase.value for phase in NodePhase}

_FIELDS = [f.name for f in dataclasses.fields(NodeRecord)]
_CAPACITY = _FIELDS.index("capacity")
_UID = _FIELDS.index("uid")
_HEX_UID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Stored:
    """A node record packed for memory, and its ``mod_revision`` (0: not written yet)."""

    data: bytes
    mod_revision: int

    @classmethod
    def of(cls, record: NodeRecord, mod_revision: int) -> Stored:
        values = [getattr(record, name) for name in _FIELDS]
        capacity = record.capacity
        values[_CAPACITY] = (capacity.cpu_millis, capacity.memory_bytes, capacity.gpus)
        if _HEX_UID.fullmatch(record.uid):
            values[_UID] = bytes.fromhex(record.uid)  # 16 bytes instead of 32 characters
        return cls(msgpack.packb(values, use_bin_type=True), mod_revision)

    @classmethod
    def decode(cls, value: bytes, mod_revision: int) -> Stored:
        """From the store's encoding of the record."""
        return cls.of(NodeRecord.from_bytes(value), mod_revision)

    def record(self) -> NodeRecord:
        """A fresh, mutable copy of the record."""
        values = msgpack.unpackb(self.data, raw=False)
        values[_CAPACITY] = Quantity(*values[_CAPACITY])
        if isinstance(values[_UID], bytes):
            values[_UID] = values[_UID].hex()
        return NodeRecord(*values)

    @property
    def etag(self) -> str:
        """The store revision of the record, or a digest while it waits to be written."""
        if self.mod_revision:
            return str(self.mod_revision)
        return "q" + hashlib.blake2b(self.data, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What an agent declares about its machine; a change of it is a new generation."""

    capacity: Quantity
    address: str
    zone: str = ""
    accelerator: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    agent_version: str = ""

    @classmethod
    def from_proto(cls, node: node_pb2.Node) -> NodeSpec:
        return cls(
            capacity=Quantity(
                node.capacity.cpu_millis, node.capacity.memory_bytes, node.capacity.gpus
            ),
            address=node.address,
            zone=node.zone,
            accelerator=node.accelerator,
            labels=dict(node.labels),
            gpus=[
                {"model": g.model, "memory_bytes": g.memory_bytes, "uuid": g.uuid}
                for g in node.gpus
            ],
            agent_version=node.agent_version,
        )

    def matches(self, record: NodeRecord) -> bool:
        """Whether ``record`` already has this spec."""
        return (
            record.capacity == self.capacity
            and record.address == self.address
            and record.zone == self.zone
            and record.accelerator == self.accelerator
            and record.labels == self.labels
            and record.gpus == self.gpus
            and record.agent_version == self.agent_version
        )

    def apply_to(self, record: NodeRecord) -> None:
        record.capacity = Quantity(
            self.capacity.cpu_millis, self.capacity.memory_bytes, self.capacity.gpus
        )
        record.address = self.address
        record.zone = self.zone
        record.accelerator = self.accelerator
        record.labels = dict(self.labels)
        record.gpus = [dict(gpu) for gpu in self.gpus]
        record.agent_version = self.agent_version


@dataclass(frozen=True, slots=True)
class Usage:
    """A node's last reported usage and when its last heartbeat arrived (wall clock)."""

    cpu_utilization: float
    memory_used_bytes: int
    gpu_utilization: float
    heartbeat_time: float


def node_name(node_id: str) -> str:
    return NAME_PREFIX + node_id


def fill_node(
    target: node_pb2.Node,
    stored: Stored,
    *,
    allocated: Quantity | None = None,
    usage: Usage | None = None,
) -> node_pb2.Node:
    """Fill ``target`` (empty) with the API view of ``stored``."""
    record = stored.record()
    target.name = node_name(record.node_id)
    target.uid = record.uid
    target.labels.update(record.labels)
    target.zone = record.zone
    target.accelerator = record.accelerator
    _fill_resources(target.capacity, record.capacity)
    for gpu in record.gpus:
        target.gpus.add(**gpu)
    target.address = record.address
    target.agent_version = record.agent_version
    target.phase = PHASE_TO_PROTO.get(record.phase, node_pb2.NODE_PHASE_UNSPECIFIED)
    target.phase_reason = record.phase_reason
    if allocated is not None:
        _fill_resources(target.allocated, allocated)
    if usage is not None:
        target.usage.cpu_utilization = usage.cpu_utilization
        target.usage.memory_used_bytes = usage.memory_used_bytes
        target.usage.gpu_utilization = usage.gpu_utilization
        target.heartbeat_time.FromNanoseconds(int(usage.heartbeat_time * 1e9))
    if record.create_time:
        target.create_time.FromNanoseconds(int(record.create_time * 1e9))
    if record.update_time:
        target.update_time.FromNanoseconds(int(record.update_time * 1e9))
    target.generation = record.generation
    target.etag = stored.etag
    return target


def to_node(
    stored: Stored, *, allocated: Quantity | None = None, usage: Usage | None = None
) -> node_pb2.Node:
    """The API view of ``stored``."""
    return fill_node(node_pb2.Node(), stored, allocated=allocated, usage=usage)


def _fill_resources(target: common_pb2.Resources, quantity: Quantity) -> None:
    target.cpu_millis = quantity.cpu_millis
    target.memory_bytes = quantity.memory_bytes
    target.gpus = quantity.gpus
