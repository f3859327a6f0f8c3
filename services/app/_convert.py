"""Conversions between the API's ``App``, the stored :class:`AppRecord` and the
scheduler's :class:`AppSpec`.

The etag is a digest of the app's uid and generation: it changes with every change of
the spec (and when an app of the same name is created again), and not with status
writes, so an owner reporting progress never makes a client's guarded update fail.
"""

from __future__ import annotations

import hashlib
from typing import Any

from astra._gen.astra.v1 import app_pb2, common_pb2
from astra.messages import enum_value, model_to_proto, timestamp
from astra.names import DEFAULT_VERSION, app_id_of, app_name
from astra.records import AppRecord, Quantity
from scheduling import DEFAULT_WATERMARK, AppSpec, Strategy
from services.app._validation import DEFAULT_MAX_SURGE

_STRATEGY_PREFIX = "PLACEMENT_STRATEGY_"
_FORMAT_PREFIX = "MODEL_FORMAT_"
_CONDITION_PREFIX = "CONDITION_STATUS_"


def etag(record: AppRecord) -> str:
    """The app's etag (see the module's documentation)."""
    return hashlib.blake2b(f"{record.uid}/{record.generation}".encode(), digest_size=8).hexdigest()


def apply_spec(record: AppRecord, app: app_pb2.App) -> None:
    """Write the spec fields of ``app`` (valid) into ``record``."""
    record.models = [_model_to_record(model) for model in app.models]
    record.replicas = app.replicas
    resources = app.resources
    record.resources = Quantity(resources.cpu_millis, resources.memory_bytes, resources.gpus)
    record.accelerators = list(resources.accelerators)
    placement = app.placement
    record.node_selector = dict(placement.node_selector)
    record.affinity = [app_id_of(name) or name for name in placement.affinity]
    record.anti_affinity = [app_id_of(name) or name for name in placement.anti_affinity]
    strategy = app_pb2.PlacementStrategy.Name(placement.strategy)
    record.strategy = "" if placement.strategy == 0 else strategy.removeprefix(_STRATEGY_PREFIX)
    record.watermark = placement.watermark
    record.max_per_node = placement.max_per_node
    record.spread_zones = placement.spread_zones
    record.ray_clusters = app.ray.clusters
    record.workers_per_cluster = app.ray.workers_per_cluster
    record.priority = app.priority
    record.labels = dict(app.labels)
    rollout = app.rollout
    record.max_surge = rollout.max_surge if rollout.HasField("max_surge") else DEFAULT_MAX_SURGE
    record.max_unavailable = rollout.max_unavailable


def spec_of(record: AppRecord) -> tuple[Any, ...]:
    """The spec fields of ``record``, to compare two records' specs."""
    return (
        record.models,
        record.replicas,
        record.resources,
        record.accelerators,
        record.node_selector,
        record.affinity,
        record.anti_affinity,
        record.strategy,
        record.watermark,
        record.max_per_node,
        record.spread_zones,
        record.ray_clusters,
        record.workers_per_cluster,
        record.priority,
        record.labels,
        record.max_surge,
        record.max_unavailable,
    )


def to_app(record: AppRecord) -> app_pb2.App:
    """The API view of a stored app."""
    app = app_pb2.App(
        name=app_name(record.app_id),
        uid=record.uid,
        models=[model_to_proto(model) for model in record.models],
        replicas=record.replicas,
        resources=app_pb2.ReplicaResources(
            cpu_millis=record.resources.cpu_millis,
            memory_bytes=record.resources.memory_bytes,
            gpus=record.resources.gpus,
            accelerators=record.accelerators,
        ),
        placement=app_pb2.Placement(
            node_selector=record.node_selector,
            affinity=[app_name(app_id) for app_id in record.affinity],
            anti_affinity=[app_name(app_id) for app_id in record.anti_affinity],
            strategy=enum_value(app_pb2.PlacementStrategy, _STRATEGY_PREFIX, record.strategy),
            watermark=record.watermark,
            max_per_node=record.max_per_node,
            spread_zones=record.spread_zones,
        ),
        ray=app_pb2.RayClusterSpec(
            clusters=record.ray_clusters, workers_per_cluster=record.workers_per_cluster
        ),
        priority=record.priority,
        labels=record.labels,
        rollout=app_pb2.RolloutPolicy(
            max_surge=record.max_surge, max_unavailable=record.max_unavailable
        ),
        rollout_status=app_pb2.RolloutStatus(**record.rollout),
        generation=record.generation,
        observed_generation=record.observed_generation,
        reconciling=record.reconciling,
        conditions=[_condition_to_proto(condition) for condition in record.conditions],
        replica_counts=app_pb2.ReplicaCounts(
            desired=record.replicas,
            placed=record.placed,
            ready=record.ready,
            unplaceable=record.unplaceable,
        ),
        etag=etag(record),
    )
    if record.create_time:
        app.create_time.CopyFrom(timestamp(record.create_time))
    if record.update_time:
        app.update_time.CopyFrom(timestamp(record.update_time))
    return app


def to_spec(record: AppRecord) -> AppSpec:
    """What the app's scheduler aims for, the API's zero values replaced by defaults."""
    return AppSpec(
        app_id=record.app_id,
        replicas=record.replicas,
        resources=Quantity(
            record.resources.cpu_millis, record.resources.memory_bytes, record.resources.gpus
        ),
        accelerators=tuple(record.accelerators),
        node_selector=dict(record.node_selector),
        affinity=frozenset(record.affinity),
        anti_affinity=frozenset(record.anti_affinity),
        strategy=Strategy(record.strategy) if record.strategy else Strategy.WATERMARK,
        watermark=record.watermark or DEFAULT_WATERMARK,
        max_per_node=record.max_per_node,
        spread_zones=record.spread_zones,
        ray_clusters=max(record.ray_clusters, 1),
        workers_per_cluster=record.workers_per_cluster,
        priority=record.priority,
        generation=record.generation,
        max_surge=record.max_surge,
        max_unavailable=record.max_unavailable,
        models=tuple(
            {**model, "version": model["version"] or DEFAULT_VERSION} for model in record.models
        ),
    )


def _model_to_record(model: app_pb2.Model) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "uri": model.uri,
        "sha256": model.sha256.lower(),
        "format": app_pb2.ModelFormat.Name(model.format).removeprefix(_FORMAT_PREFIX),
    }


def _condition_to_proto(condition: dict[str, Any]) -> common_pb2.Condition:
    proto = common_pb2.Condition(
        type=condition.get("type", ""),
        status=enum_value(
            common_pb2.ConditionStatus, _CONDITION_PREFIX, condition.get("status", "")
        ),
        reason=condition.get("reason", ""),
        message=condition.get("message", ""),
    )
    if condition.get("last_transition_time"):
        proto.last_transition_time.CopyFrom(timestamp(condition["last_transition_time"]))
    return proto
