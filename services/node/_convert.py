"""Conversions between the store's replica records and the API's messages."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from astra._gen.astra.v1 import app_pb2, replica_pb2
from astra.records import ReplicaPhase, ReplicaRecord

_PHASE_PREFIX = "REPLICA_PHASE_"


def phase_from_proto(value: int) -> ReplicaPhase | None:
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
        role=_enum_value(replica_pb2.ReplicaRole, "REPLICA_ROLE_", record.role),
        resources=app_pb2.ReplicaResources(
            cpu_millis=record.resources.cpu_millis,
            memory_bytes=record.resources.memory_bytes,
            gpus=record.resources.gpus,
        ),
        models=[_model_to_proto(model) for model in record.models],
        app_generation=record.app_generation,
        ray_head_address=record.ray_head_address,
        phase=_enum_value(replica_pb2.ReplicaPhase, _PHASE_PREFIX, record.phase),
        endpoint=record.endpoint,
        execution_provider=record.execution_provider,
        message=record.message,
    )
    if record.create_time:
        replica.create_time.CopyFrom(_timestamp(record.create_time))
    if record.update_time:
        replica.update_time.CopyFrom(_timestamp(record.update_time))
    return replica


def _model_to_proto(model: dict[str, object]) -> app_pb2.Model:
    return app_pb2.Model(
        name=str(model.get("name", "")),
        version=str(model.get("version", "")),
        uri=str(model.get("uri", "")),
        sha256=str(model.get("sha256", "")),
        format=_enum_value(app_pb2.ModelFormat, "MODEL_FORMAT_", str(model.get("format", ""))),
    )


def _enum_value(enum: object, prefix: str, name: str) -> int:
    """The number of ``prefix + name`` in a generated enum; 0 (UNSPECIFIED) if unknown."""
    values: dict[str, int] = dict(enum.items())  # type: ignore[attr-defined]
    return values.get(prefix + name, 0)


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
