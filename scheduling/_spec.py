"""What an app asks the scheduler for: the scheduling side of the proto ``App``.

The App service converts an ``astra.v1.App`` into an :class:`AppSpec` (affinity names
``apps/{id}`` become ids, ``watermark`` 0 becomes the default); the scheduler never sees
protos.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astra.records import Quantity

#: The watermark of PLACEMENT_STRATEGY_WATERMARK when the spec leaves it at 0.
DEFAULT_WATERMARK = 0.7


class Strategy(enum.StrEnum):
    """How to choose among feasible nodes (the proto's ``PlacementStrategy``)."""

    SPREAD = "SPREAD"
    """Prefer the least allocated nodes."""
    PACK = "PACK"
    """Prefer the most allocated nodes that still fit."""
    WATERMARK = "WATERMARK"
    """Pack nodes up to the watermark, spread over nodes above it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppSpec:
    """An app as its scheduler sees it.

    Attributes:
        app_id: the app's id (``apps/{app_id}``).
        replicas: how many replicas to run. With ``workers_per_cluster`` > 0 the App
            service keeps it equal to ``ray_clusters * (1 + workers_per_cluster)``.
        resources: what each replica holds on its node.
        accelerators: acceptable accelerator types, most preferred first. Empty accepts
            any node; replicas without GPUs then go to GPU nodes only when no CPU-only
            node fits.
        node_selector: labels a node must all have.
        affinity: ids of apps whose nodes are preferred.
        anti_affinity: ids of apps whose nodes are never used.
        strategy: how feasible nodes are ranked.
        watermark: the node utilisation (0 to 1) under which WATERMARK packs.
        max_per_node: at most this many replicas on one node; 0 means no limit.
        spread_zones: spread replicas evenly across zones.
        ray_clusters: how many Ray clusters the replicas form (at least 1).
        workers_per_cluster: workers beside each head; 0 shares the replicas evenly.
        priority: higher is more important (work queues may order by it).
        generation: the spec's generation, written into each replica placed for it.
        models: the models every replica serves (name, version, uri, sha256, format).
        max_surge: during a rollout, at most this many replicas beyond ``replicas``
            (new ones placed before old ones leave).
        max_unavailable: during a rollout, at most this many of ``replicas`` may be
            missing from the ready ones (old ones leave before new ones are ready).
        template: output only: the digest of what a replica runs (see :meth:`template_of`);
            replicas placed under another template are replaced by a rollout.
    """

    app_id: str
    replicas: int
    resources: Quantity
    accelerators: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity: frozenset[str] = frozenset()
    anti_affinity: frozenset[str] = frozenset()
    strategy: Strategy = Strategy.WATERMARK
    watermark: float = DEFAULT_WATERMARK
    max_per_node: int = 0
    spread_zones: bool = False
    ray_clusters: int = 1
    workers_per_cluster: int = 0
    priority: int = 0
    generation: int = 0
    models: tuple[Mapping[str, Any], ...] = ()
    max_surge: int = 1
    max_unavailable: int = 0
    template: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if not self.app_id or "/" in self.app_id:
            raise ValueError(f"app_id must be a non-empty id without '/', not {self.app_id!r}")
        if self.replicas < 0 or self.max_per_node < 0 or self.workers_per_cluster < 0:
            raise ValueError("replicas, max_per_node and workers_per_cluster must be >= 0")
        if self.ray_clusters < 1:
            raise ValueError("ray_clusters must be >= 1")
        if self.max_surge < 0 or self.max_unavailable < 0:
            raise ValueError("max_surge and max_unavailable must be >= 0")
        if not self.max_surge and not self.max_unavailable:
            raise ValueError("max_surge and max_unavailable cannot both be 0")
        if not 0.0 < self.watermark <= 1.0:
            raise ValueError(f"watermark must be in (0, 1], not {self.watermark}")
        resources = self.resources
        if min(resources.cpu_millis, resources.memory_bytes, resources.gpus) < 0:
            raise ValueError("resources must be >= 0")
        object.__setattr__(self, "template", self.template_of())

    def template_of(self) -> str:
        """The digest of what a replica of this spec runs and where it may run: the
        models, the resources, and the placement's hard constraints (accelerators, node
        selector, anti-affinity). Labels, priority, the replica count, scoring
        preferences and the Ray shape are not part of it: changing them replaces no
        replica (the Ray shape is met by adding and removing workers)."""
        resources = self.resources
        described = {
            "models": [dict(sorted(model.items())) for model in self.models],
            "resources": [resources.cpu_millis, resources.memory_bytes, resources.gpus],
            "accelerators": list(self.accelerators),
            "node_selector": dict(sorted(self.node_selector.items())),
            "anti_affinity": sorted(self.anti_affinity),
        }
        encoded = json.dumps(described, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def cluster_sizes(self) -> list[int]:
        """How many replicas each Ray cluster has, heads included; sums to :attr:`replicas`.

        With ``workers_per_cluster`` > 0, clusters of ``1 + workers_per_cluster`` are
        filled in turn (the last may be smaller); otherwise the replicas are shared
        evenly between ``ray_clusters`` clusters, the first ones taking the remainder.
        """
        if self.replicas == 0:
            return []
        if self.workers_per_cluster:
            size = 1 + self.workers_per_cluster
            full, rest = divmod(self.replicas, size)
            return [size] * full + ([rest] if rest else [])
        clusters = min(self.ray_clusters, self.replicas)
        base, rest = divmod(self.replicas, clusters)
        return [base + 1] * rest + [base] * (clusters - rest)


__all__ = ["DEFAULT_WATERMARK", "AppSpec", "Strategy"]
