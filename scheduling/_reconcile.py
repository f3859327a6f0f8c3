"""Reconcile: what an app wants against what it has, as a :class:`Diff`.

A pure function of the spec, the app's replica records and which nodes are lost.
Ray federation shapes it: every replica belongs to one Ray cluster, whose first
replica (the HEAD) must exist for its workers to be of any use.

- Replicas on a lost node (DEAD or gone) are removed, and replaced.
- A cluster without a live head is removed whole and replaced by a new cluster,
  because Ray cannot give a running cluster a new head.
- The spec's clusters (:meth:`AppSpec.cluster_sizes`) go to the largest live
  clusters; surplus clusters are removed.
- A kept cluster above its size loses its newest workers; below it, it gains workers
  ``{cluster}-{n}`` numbered after its highest, under ids no record of the app has.
- Missing clusters are new: a head ``{cluster}-0`` and workers ``{cluster}-1``... under
  a cluster id ``c{n}`` that no record of the app uses.

Complexity: O(r log r) for r replica records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from astra import quick_init
from astra.records import ReplicaRecord, ReplicaRole
from scheduling._spec import AppSpec


@quick_init  # one per replica placed
@dataclass(frozen=True, slots=True)
class Slot:
    """A wanted replica that is not placed yet."""

    replica_id: str
    ray_cluster: str
    role: ReplicaRole


@dataclass(slots=True)
class Diff:
    """What to change so that the app's replicas match its spec."""

    place: list[Slot] = field(default_factory=list)
    """Replicas to place, heads first."""
    remove: list[ReplicaRecord] = field(default_factory=list)
    """Replicas to remove: surplus, of dropped or headless clusters, or lost."""
    keep: list[ReplicaRecord] = field(default_factory=list)
    """Replicas that stay."""
    lost: list[ReplicaRecord] = field(default_factory=list)
    """The replicas of :attr:`remove` that are on a lost node."""


def _ordinal(replica_id: str) -> int:
    """The number after the last ``-`` of a replica id (-1 when there is none)."""
    _, _, tail = replica_id.rpartition("-")
    return int(tail) if tail.isdigit() else -1


def _member_order(record: ReplicaRecord) -> tuple[bool, int, str]:
    return record.role != ReplicaRole.HEAD, _ordinal(record.replica_id), record.replica_id


def diff(spec: AppSpec, actual: Iterable[ReplicaRecord], is_lost: Callable[[str], bool]) -> Diff:
    """The changes that take ``actual`` (the app's replica records) to ``spec``.

    Args:
        spec: what the app wants.
        actual: every replica record of the app.
        is_lost: whether replicas on a node are gone with it.
    """
    result = Diff()
    clusters: dict[str, list[ReplicaRecord]] = {}
    used_clusters, used_ids = set(), set()
    for record in actual:
        used_clusters.add(record.ray_cluster)
        used_ids.add(record.replica_id)
        if is_lost(record.node_id):
            result.lost.append(record)
        else:
            clusters.setdefault(record.ray_cluster, []).append(record)
    result.remove.extend(result.lost)
    live = []
    for name, members in clusters.items():
        if any(member.role == ReplicaRole.HEAD for member in members):
            live.append((name, sorted(members, key=_member_order)))
        else:
            result.remove.extend(members)
    live.sort(key=lambda item: (-len(item[1]), item[0]))
    sizes = spec.cluster_sizes()
    new_workers: list[Slot] = []
    for (name, members), size in zip(live, sizes, strict=False):
        head, workers = (
            members[0],
            [member for member in members[1:] if member.role != ReplicaRole.HEAD],
        )
        result.remove.extend(member for member in members[1:] if member.role == ReplicaRole.HEAD)
        kept = [head, *workers][:size]
        result.keep.extend(kept)
        result.remove.extend(workers[size - 1 :])
        ordinal = max(_ordinal(member.replica_id) for member in members)
        for _ in range(size - len(kept)):
            ordinal += 1
            while f"{name}-{ordinal}" in used_ids:
                ordinal += 1
            new_workers.append(Slot(f"{name}-{ordinal}", name, ReplicaRole.WORKER))
    for _, members in live[len(sizes) :]:
        result.remove.extend(members)
    number = 0
    for size in sizes[len(live) :]:
        while f"c{number}" in used_clusters:
            number += 1
        name = f"c{number}"
        used_clusters.add(name)
        result.place.append(Slot(f"{name}-0", name, ReplicaRole.HEAD))
        new_workers.extend(
            Slot(f"{name}-{index}", name, ReplicaRole.WORKER) for index in range(1, size)
        )
    result.place.extend(new_workers)
    return result


__all__ = ["Diff", "Slot", "diff"]
