"""Internal records kept in the store, and their compact encoding.

These are not the API: the protos in ``proto/astra/v1`` are what clients see, and
services convert between the two. Records are msgpack maps of their fields, so a
field added later reads as its default from an older record and unknown fields
from a newer one are ignored (rolling upgrades).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import msgpack


class NodePhase(enum.StrEnum):
    READY = "READY"
    DRAINING = "DRAINING"
    DEAD = "DEAD"


@dataclass(slots=True)
class Quantity:
    """An amount of schedulable resources."""

    cpu_millis: int = 0
    memory_bytes: int = 0
    gpus: int = 0

    def fits_in(self, free: Quantity) -> bool:
        return (
            self.cpu_millis <= free.cpu_millis
            and self.memory_bytes <= free.memory_bytes
            and self.gpus <= free.gpus
        )

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(
            self.cpu_millis + other.cpu_millis,
            self.memory_bytes + other.memory_bytes,
            self.gpus + other.gpus,
        )

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(
            self.cpu_millis - other.cpu_millis,
            self.memory_bytes - other.memory_bytes,
            self.gpus - other.gpus,
        )


class Record:
    """Mixin: encode a dataclass record to bytes and back."""

    _nested: ClassVar[dict[str, type]] = {}
    #: Declared for type checkers (a record is a dataclass); @dataclass sets it.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_bytes(self) -> bytes:
        data: bytes = msgpack.packb(_plain(self), use_bin_type=True)
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        raw: dict[str, Any] = msgpack.unpackb(data, raw=False, strict_map_key=False)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in raw.items() if name in known}
        for name, kind in cls._nested.items():
            if isinstance(values.get(name), dict):
                values[name] = kind(**values[name])
        return cls(**values)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(slots=True)
class GpuInfo:
    model: str = ""
    memory_bytes: int = 0
    uuid: str = ""


@dataclass(slots=True)
class NodeRecord(Record):
    """A node's membership, written only on transitions (never per heartbeat)."""

    _nested: ClassVar[dict[str, type]] = {"capacity": Quantity}

    node_id: str
    uid: str
    capacity: Quantity
    address: str = ""
    zone: str = ""
    accelerator: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    agent_version: str = ""
    phase: str = NodePhase.READY.value
    phase_reason: str = ""
    generation: int = 1
    create_time: float = 0.0
    update_time: float = 0.0
    owner: str = ""


@dataclass(slots=True)
class AllocRecord(Record):
    """What is placed on one node: replica name -> (cpu_millis, memory_bytes, gpus).

    The contended object of optimistic commits: a scheduler compares its
    ``mod_revision`` and writes it in the same transaction as the replicas it places.
    """

    node_id: str
    replicas: dict[str, list[int]] = field(default_factory=dict)

    def used(self) -> Quantity:
        total = Quantity()
        for cpu, memory, gpus in self.replicas.values():
            total.cpu_millis += cpu
            total.memory_bytes += memory
            total.gpus += gpus
        return total


class ReplicaPhase(enum.StrEnum):
    """Where a replica is in its life; the names of the proto's ``ReplicaPhase``."""

    PENDING = "PENDING"
    STARTING = "STARTING"
    READY = "READY"
    DRAINING = "DRAINING"
    DRAINED = "DRAINED"
    FAILED = "FAILED"


class ReplicaRole(enum.StrEnum):
    """A replica's role in its Ray cluster; the names of the proto's ``ReplicaRole``."""

    HEAD = "HEAD"
    WORKER = "WORKER"


@dataclass(slots=True)
class ReplicaRecord(Record):
    """One placed replica. Schedulers write its placement (node, cluster, role,
    resources, models) in the same transaction as the node's :class:`AllocRecord`;
    the Node service writes its status (phase, endpoint, ...) from agents' reports.

    ``models`` holds one map per model: name, version, uri, sha256, format.
    ``template`` is the digest of the app spec's parts the replica runs (its scheduler
    compares it to find replicas a rollout replaces; ``""`` in records written before
    templates existed). ``retire_time`` (0: not retiring) is when its scheduler retired
    it: it left its routes then, its agent drains it, and its record goes once DRAINED.
    """

    _nested: ClassVar[dict[str, type]] = {"resources": Quantity}

    app_id: str
    replica_id: str
    node_id: str
    ray_cluster: str = ""
    role: str = ReplicaRole.WORKER.value
    resources: Quantity = field(default_factory=Quantity)
    models: list[dict[str, Any]] = field(default_factory=list)
    app_generation: int = 0
    phase: str = ReplicaPhase.PENDING.value
    endpoint: str = ""
    execution_provider: str = ""
    message: str = ""
    ray_head_address: str = ""
    create_time: float = 0.0
    update_time: float = 0.0
    template: str = ""
    retire_time: float = 0.0

    @property
    def name(self) -> str:
        """The resource name, ``apps/{app_id}/replicas/{replica_id}``: the key of
        :attr:`AllocRecord.replicas`."""
        return f"apps/{self.app_id}/replicas/{self.replica_id}"


@dataclass(slots=True)
class AppRecord(Record):
    """An app's spec and status at ``/astra/v1/apps/{app}``.

    The App service writes the spec (with ``generation`` bumped on every change) and
    ``deleting`` (a tombstone while the app's replicas are being freed); the app's
    owner writes the status. ``models`` holds one map per model (name, version, uri,
    sha256, format); ``conditions`` one map per condition (type, status, reason,
    message, last_transition_time); ``affinity`` and ``anti_affinity`` hold app ids.
    Zero values mean what they mean in the API (``watermark`` 0: the default).
    """

    _nested: ClassVar[dict[str, type]] = {"resources": Quantity}

    app_id: str
    uid: str
    models: list[dict[str, Any]] = field(default_factory=list)
    replicas: int = 0
    resources: Quantity = field(default_factory=Quantity)
    accelerators: list[str] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    affinity: list[str] = field(default_factory=list)
    anti_affinity: list[str] = field(default_factory=list)
    strategy: str = ""
    watermark: float = 0.0
    max_per_node: int = 0
    spread_zones: bool = False
    ray_clusters: int = 0
    workers_per_cluster: int = 0
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    max_surge: int = 1
    max_unavailable: int = 0
    generation: int = 1
    create_time: float = 0.0
    update_time: float = 0.0
    deleting: bool = False
    observed_generation: int = 0
    reconciling: bool = True
    conditions: list[dict[str, Any]] = field(default_factory=list)
    placed: int = 0
    ready: int = 0
    unplaceable: int = 0
    #: The rollout's counts: updated, updated_ready, old, retiring, failed.
    rollout: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class RouteRecord(Record):
    """The serving endpoints of every version of one model, at ``/astra/v1/routes/{model}``.

    ``versions`` maps a version to its endpoints, one map each: address, base_weight,
    replica (its name), node (its id), ray_cluster, accelerator, zone. A version whose
    replicas are placed but none ready has no endpoints; a model no replica serves has
    no record.
    """

    model: str
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
