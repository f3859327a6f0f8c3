"""Routes: which endpoints serve each model version, with their base weights.

The rules, applied to the replica records and the nodes as they are now:

- A replica serves when it is READY with an endpoint, on a READY node, and not retired
  by its scheduler: a replica on a DRAINING or DEAD node (or an unknown one), or one
  retired (a rollout or a scale-down; it drains next), leaves its routes at once.
- Ray federation: a replica serves only while its Ray cluster does, i.e. while the
  cluster's head exists on a live node (not DEAD, not gone) and is READY or DRAINING.
  A cluster whose head is lost leaves the routes whole, at once; its replacement
  cluster (a new id) serves as soon as its own head and replicas are READY.
- Base weight: the replica's capacity times the performance factor of the hardware it
  runs on. Capacity is its GPUs when it has any (the hardware is then its node's
  accelerator), else its CPU cores (the hardware is the CPU, ``""``); factors come from
  the settings and default to 1.

A model's route record holds every version some replica is placed for; a version with
no serving replica has no endpoints, and a model no replica is placed for has no record.

:class:`RouteTable` keeps the indexes that make a change cost only the models it
touches: O(replicas of the touched models) per recomputed model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from astra.names import DEFAULT_VERSION
from astra.records import (
    NodePhase,
    NodeRecord,
    ReplicaPhase,
    ReplicaRecord,
    ReplicaRole,
    RouteRecord,
)

_SERVING_HEAD = frozenset({ReplicaPhase.READY.value, ReplicaPhase.DRAINING.value})
_LIVE_NODE = frozenset({NodePhase.READY.value, NodePhase.DRAINING.value})


def base_weight(record: ReplicaRecord, node: NodeRecord, factors: Mapping[str, float]) -> float:
    """The replica's capacity times its hardware's performance factor."""
    if record.resources.gpus:
        return record.resources.gpus * factors.get(node.accelerator, 1.0)
    return record.resources.cpu_millis / 1000 * factors.get("", 1.0)


class RouteTable:
    """Nodes and replica records, indexed by model, node and Ray cluster.

    Apply changes with :meth:`set_node`, :meth:`remove_node` and :meth:`set_replica`;
    each marks the models whose routes may have changed, which :meth:`take_dirty` hands
    out and :meth:`route` computes.

    Args:
        factors: per-hardware performance factors (accelerator type, ``""`` for CPU).
    """

    def __init__(self, factors: Mapping[str, float] | None = None) -> None:
        self._factors = dict(factors or {})
        self.nodes: dict[str, NodeRecord] = {}
        self.replicas: dict[str, ReplicaRecord] = {}
        self._by_model: dict[str, set[str]] = {}
        self._by_node: dict[str, set[str]] = {}
        self._by_cluster: dict[tuple[str, str], set[str]] = {}
        self._dirty: set[str] = set()
        self._drains: dict[str, float] = {}

    # -- changes ---------------------------------------------------------------------

    def set_node(self, record: NodeRecord) -> None:
        old = self.nodes.get(record.node_id)
        self.nodes[record.node_id] = record
        if (
            record.phase == NodePhase.DRAINING.value
            and old is not None
            and old.phase == NodePhase.READY.value
            and record.node_id in self._by_node
        ):
            self._drains[record.node_id] = record.update_time
        self._touch_node(record.node_id)

    def remove_node(self, node_id: str) -> None:
        if self.nodes.pop(node_id, None) is not None:
            self._touch_node(node_id)

    def set_replica(self, name: str, record: ReplicaRecord | None) -> None:
        """Add, change (``record``) or remove (``None``) the replica ``name``."""
        old = self.replicas.pop(name, None)
        if old is not None:
            self._unindex(name, old)
            self._touch(old)
        if record is not None:
            self.replicas[name] = record
            self._index(name, record)
            self._touch(record)

    def take_dirty(self) -> set[str]:
        """The models whose routes may have changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def take_drains(self) -> dict[str, float]:
        """The nodes with replicas that turned DRAINING since the last call, with when
        they did (wall-clock seconds, their records' ``update_time``)."""
        drains, self._drains = self._drains, {}
        return drains

    def models(self) -> list[str]:
        """Every model some replica is placed for."""
        return list(self._by_model)

    def touch(self, model: str) -> None:
        """Mark ``model`` (e.g. its stored route was written by someone else)."""
        self._dirty.add(model)

    def touch_all(self) -> None:
        """Mark every model (e.g. after this replica took over new models)."""
        self._dirty.update(self._by_model)

    # -- routes ----------------------------------------------------------------------

    def route(self, model: str) -> RouteRecord | None:
        """The route record of ``model`` now; ``None`` when no replica is placed for it."""
        names = self._by_model.get(model)
        if not names:
            return None
        versions: dict[str, list[dict[str, Any]]] = {}
        for name in sorted(names):
            record = self.replicas[name]
            endpoint = self._endpoint(name, record)
            for served in record.models:
                if served.get("name") != model:
                    continue
                version = str(served.get("version") or DEFAULT_VERSION)
                endpoints = versions.setdefault(version, [])
                if endpoint is not None:
                    endpoints.append(endpoint)
        return RouteRecord(model=model, versions=dict(sorted(versions.items())))

    def _endpoint(self, name: str, record: ReplicaRecord) -> dict[str, Any] | None:
        node = self.nodes.get(record.node_id)
        if record.phase != ReplicaPhase.READY.value or not record.endpoint or record.retire_time:
            return None
        if node is None or node.phase != NodePhase.READY.value or not self._serving(record):
            return None
        return {
            "address": record.endpoint,
            "base_weight": base_weight(record, node, self._factors),
            "replica": name,
            "node": node.node_id,
            "ray_cluster": record.ray_cluster,
            "accelerator": node.accelerator,
            "zone": node.zone,
        }

    def _serving(self, record: ReplicaRecord) -> bool:
        """Whether the replica's Ray cluster serves: its head is alive (module docs)."""
        for name in self._by_cluster.get((record.app_id, record.ray_cluster), ()):
            head = self.replicas[name]
            if head.role != ReplicaRole.HEAD.value:
                continue
            node = self.nodes.get(head.node_id)
            return node is not None and node.phase in _LIVE_NODE and head.phase in _SERVING_HEAD
        return False

    # -- indexes ---------------------------------------------------------------------

    def _index(self, name: str, record: ReplicaRecord) -> None:
        for model in _model_names(record):
            self._by_model.setdefault(model, set()).add(name)
        self._by_node.setdefault(record.node_id, set()).add(name)
        self._by_cluster.setdefault((record.app_id, record.ray_cluster), set()).add(name)

    def _unindex(self, name: str, record: ReplicaRecord) -> None:
        for model in _model_names(record):
            _discard(self._by_model, model, name)
        _discard(self._by_node, record.node_id, name)
        _discard(self._by_cluster, (record.app_id, record.ray_cluster), name)

    def _touch(self, record: ReplicaRecord) -> None:
        """Mark the models of ``record`` and, for a head, of its whole cluster."""
        if record.role == ReplicaRole.HEAD.value:
            members = self._by_cluster.get((record.app_id, record.ray_cluster), ())
            self._mark(self.replicas[name] for name in members)
        self._mark((record,))

    def _touch_node(self, node_id: str) -> None:
        for name in self._by_node.get(node_id, ()):
            self._touch(self.replicas[name])

    def _mark(self, records: Iterable[ReplicaRecord]) -> None:
        for record in records:
            self._dirty.update(_model_names(record))


def _model_names(record: ReplicaRecord) -> set[str]:
    return {str(model.get("name", "")) for model in record.models}


def _discard(index: dict[Any, set[str]], key: Any, name: str) -> None:
    names = index.get(key)
    if names is not None:
        names.discard(name)
        if not names:
            del index[key]
