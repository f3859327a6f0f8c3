"""The API's messages from the store's records, where several services answer with the
same message (a replica: ListReplicas of the App service, the Node service's streams)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from astra._gen.astra.v1 import app_pb2, replica_pb2
from astra.records import ReplicaPhase, ReplicaRecord

_PHASE_PREFIX = "REPLICA_PHASE_"


def replica_phase_from_proto(value: int) -> ReplicaPhase | None:
    """The record phase of an API ``ReplicaPhase``; ``None`` for UNSPECIFIED or unknown."""
    try:
        phase = replica_pb2.ReplicaPhase.Name(value).removeprefix(_PHASE_PREFIX)
    except ValueError:  # a number this version does not know
        return None
    return ReplicaPhase(phase) if phase in ReplicaPhase.__members__ else None


def replica_to_proto(record: ReplicaRecord) -> replica_pb2.Replica:
    """The API view of a stored replica."""
    replica = replica_pb2.Replica(
        name=record.name,
        node=f"nodes/{record.node_id}",
        ray_cluster=record.ray_cluster,
        role=enum_value(replica_pb2.ReplicaRole, "REPLICA_ROLE_", record.role),
        resources=app_pb2.ReplicaResources(
            cpu_millis=record.resources.cpu_millis,
            memory_bytes=record.resources.memory_bytes,
            gpus=record.resources.gpus,
        ),
        models=[model_to_proto(model) for model in record.models],
        app_generation=record.app_generation,
        ray_head_address=record.ray_head_address,
        phase=enum_value(replica_pb2.ReplicaPhase, _PHASE_PREFIX, record.phase),
        endpoint=record.endpoint,
        execution_provider=record.execution_provider,
        message=record.message,
        template=record.template,
    )
    if record.retire_time:
        replica.retire_time.CopyFrom(timestamp(record.retire_time))
    if record.create_time:
        replica.create_time.CopyFrom(timestamp(record.create_time))
    if record.update_time:
        replica.update_time.CopyFrom(timestamp(record.update_time))
    return replica


def model_to_proto(model: Mapping[str, object]) -> app_pb2.Model:
    """The API view of a model as records store it (a mapping of its fields)."""
    return app_pb2.Model(
        name=str(model.get("name", "")),
        version=str(model.get("version", "")),
        uri=str(model.get("uri", "")),
        sha256=str(model.get("sha256", "")),
        format=enum_value(app_pb2.ModelFormat, "MODEL_FORMAT_", str(model.get("format", ""))),
    )


class _Enum(Protocol):
    """A generated protobuf enum's wrapper (its ``Value`` lookup)."""

    def Value(self, name: str) -> int: ...


def enum_value(enum: _Enum, prefix: str, name: str) -> str:
    """The value ``prefix + name`` of a generated enum, as the constructors of messages
    take it; ``prefix + "UNSPECIFIED"`` (the zero value) if the enum has no such value."""
    value = prefix + name
    try:
        enum.Value(value)
    except ValueError:
        return prefix + "UNSPECIFIED"
    return value


def timestamp(seconds: float) -> Timestamp:
    """A protobuf ``Timestamp`` of ``seconds`` since the epoch."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
