"""Plans: what a scheduler decided, before anything is written.

A :class:`Plan` holds placements and removals. It is handed to the planner, which
commits it (see ``_planner``); a scheduler sizes a plan to about one transaction with
:meth:`Plan.has_room`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astra import quick_init
from astra.records import Quantity, ReplicaRole
from astra.store import MAX_TXN_OPS


def replica_name(app_id: str, replica_id: str) -> str:
    """A replica's resource name, the key of ``AllocRecord.replicas``."""
    return f"apps/{app_id}/replicas/{replica_id}"


@quick_init  # one per replica placed
@dataclass(frozen=True, slots=True)
class Placement:
    """Put replica ``replica_id`` of ``app_id`` on ``node_id``, as a member of Ray cluster
    ``ray_cluster`` placed for the app's generation ``app_generation``."""

    app_id: str
    replica_id: str
    node_id: str
    ray_cluster: str
    role: ReplicaRole
    resources: Quantity
    app_generation: int = 0
    models: tuple[Mapping[str, Any], ...] = ()
    template: str = ""

    @property
    def name(self) -> str:
        return replica_name(self.app_id, self.replica_id)


@quick_init  # one per replica removed
@dataclass(frozen=True, slots=True)
class Removal:
    """Take replica ``replica_id`` of ``app_id`` off ``node_id`` and delete its record."""

    app_id: str
    replica_id: str
    node_id: str

    @property
    def name(self) -> str:
        return replica_name(self.app_id, self.replica_id)


@dataclass(slots=True)
class Plan:
    """Placements and removals to commit together.

    Transaction cost: a touched node costs one compare, one put and one read (on
    failure); a placement one compare and one put; a removal one delete.
    """

    placements: list[Placement] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)

    def place(self, placement: Placement) -> None:
        self.placements.append(placement)
        self.nodes.add(placement.node_id)

    def remove(self, removal: Removal) -> None:
        self.removals.append(removal)
        self.nodes.add(removal.node_id)

    def has_room(self, limit: int = MAX_TXN_OPS) -> bool:
        """Whether one more change on a new node still fits in one transaction branch."""
        return len(self.nodes) + len(self.placements) + len(self.removals) + 2 <= limit

    def __bool__(self) -> bool:
        return bool(self.placements or self.removals)


__all__ = ["Placement", "Plan", "Removal", "replica_name"]
