"""Reconcile: what an app wants against what it has, as a :class:`Diff`.

A pure function of the spec, the app's replica records, which nodes are lost and the
time. Ray federation shapes it: every replica belongs to one Ray cluster, whose first
replica (the HEAD) must exist for its workers to be of any use.

- Replicas on a lost node (DEAD or gone) are removed, and replaced.
- A replica that must go while it serves (READY) is *retired*, not removed: it leaves
  its routes at once, its agent drains it (in-flight requests finish), and its record
  is removed once it is DRAINED or FAILED, its node is lost, or ``RETIRE_TIMEOUT`` has
  passed. Until then it holds its resources. A replica that does not serve is removed
  at once.
- Current replicas run the spec's template (:attr:`AppSpec.template`); the others are
  old. A cluster is current when its head is.
- A current cluster without a live head is removed whole and replaced by a new
  cluster, because Ray cannot give a running cluster a new head.
- The spec's clusters (:meth:`AppSpec.cluster_sizes`) go to the largest current
  clusters; surplus clusters go.
- A kept cluster above its size loses its newest workers; below it, it gains workers
  ``{cluster}-{n}`` numbered after its highest, under ids no record of the app has.
- Missing clusters are new: a head ``{cluster}-0`` and workers ``{cluster}-1``... under
  a cluster id ``c{n}`` that no record of the app uses.

**Rollouts.** Old replicas are replaced in steps, within the spec's budgets. New
replicas are placed while the app holds fewer than ``replicas + max_surge`` (old and
retiring ones count: they hold resources). Old replicas leave while the ready ones
stay at least ``replicas - max_unavailable``; an old replica that does not serve
leaves at once. An old cluster is replaced by a new one, replica by replica: the new
cluster grows while the old one shrinks, workers first and its head last (a head
cannot be swapped in place). A spec changed mid-rollout makes the replicas of the
generation in between old too, and those that are not ready yet go first.

Complexity: O(r log r) for r replica records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from astra import quick_init
from astra.records import ReplicaPhase, ReplicaRecord, ReplicaRole
from scheduling._spec import AppSpec

#: Seconds a retired replica may take to drain before its record is removed anyway.
RETIRE_TIMEOUT = 60.0

_SETTLED = frozenset({ReplicaPhase.DRAINED.value, ReplicaPhase.FAILED.value})


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
    """Replicas to remove now: lost, not serving, or retired and drained."""
    retire: list[ReplicaRecord] = field(default_factory=list)
    """Serving replicas to take out of the routes and drain."""
    keep: list[ReplicaRecord] = field(default_factory=list)
    """Current replicas that stay."""
    lost: list[ReplicaRecord] = field(default_factory=list)
    """The replicas of :attr:`remove` that are on a lost node."""
    old: int = 0
    """Old replicas left after this diff (neither removed nor retired)."""
    retiring: int = 0
    """Retired replicas still draining after this diff, :attr:`retire` included."""
    recheck: float | None = None
    """Seconds after which a retired replica's drain times out: reconcile again then."""


def is_ready(record: ReplicaRecord) -> bool:
    """Whether ``record`` serves: READY and not retired."""
    return record.phase == ReplicaPhase.READY.value and not record.retire_time


def is_current(record: ReplicaRecord, spec: AppSpec) -> bool:
    """Whether ``record`` runs what ``spec`` asks (records from before templates
    existed: the same models and resources)."""
    if record.template:
        return record.template == spec.template
    return record.resources == spec.resources and record.models == [
        dict(model) for model in spec.models
    ]


def _ordinal(replica_id: str) -> int:
    """The number after the last ``-`` of a replica id (-1 when there is none)."""
    _, _, tail = replica_id.rpartition("-")
    return int(tail) if tail.isdigit() else -1


def _member_order(record: ReplicaRecord) -> tuple[bool, int, str]:
    return record.role != ReplicaRole.HEAD, _ordinal(record.replica_id), record.replica_id


def diff(
    spec: AppSpec,
    actual: Iterable[ReplicaRecord],
    is_lost: Callable[[str], bool],
    now: float = 0.0,
) -> Diff:
    """The changes that take ``actual`` (the app's replica records) to ``spec``.

    Args:
        spec: what the app wants.
        actual: every replica record of the app.
        is_lost: whether replicas on a node are gone with it.
        now: the time (seconds since the epoch), for retired replicas' timeouts.
    """
    result = Diff()
    current: dict[str, list[ReplicaRecord]] = {}
    old: dict[str, list[ReplicaRecord]] = {}
    used_clusters, used_ids = set(), set()
    for record in actual:
        used_clusters.add(record.ray_cluster)
        used_ids.add(record.replica_id)
        if is_lost(record.node_id):
            result.lost.append(record)
        elif record.retire_time:
            _settle(record, now, result)
        else:
            clusters = current if is_current(record, spec) else old
            clusters.setdefault(record.ray_cluster, []).append(record)
    result.remove.extend(result.lost)
    # A cluster is current when its head is: its old workers (none, unless written by
    # an older scheduler) are old, its current ones count with it.
    for name in list(current):
        if name in old and _has_head(old[name]):
            old[name].extend(current.pop(name))
    new_slots = _shape(spec, current, used_clusters, used_ids, result)
    headed = {name for name, members in current.items() if _has_head(members)}
    outgoing = _old_clusters(old, headed, result)
    ready = sum(map(is_ready, result.keep)) + sum(
        map(is_ready, (record for members in outgoing for record in members))
    )
    _leave_old(outgoing, max(0, ready - (spec.replicas - spec.max_unavailable)), result)
    held = len(result.keep) + result.old + result.retiring
    room = (
        max(0, spec.replicas + spec.max_surge - held) if (result.old or result.retiring) else None
    )
    result.place.extend(new_slots if room is None else new_slots[:room])
    return result


def _settle(record: ReplicaRecord, now: float, result: Diff) -> None:
    """A retired replica: removed once it settled or timed out, else still retiring."""
    deadline = record.retire_time + RETIRE_TIMEOUT
    if record.phase in _SETTLED or now >= deadline:
        result.remove.append(record)
        return
    _draining(deadline - now, result)


def _draining(left: float, result: Diff) -> None:
    """Count one more retired replica, whose drain times out in ``left`` seconds."""
    result.retiring += 1
    result.recheck = left if result.recheck is None else min(result.recheck, left)


def _leave(record: ReplicaRecord, result: Diff) -> None:
    """Take ``record`` away: retired when it serves, removed at once otherwise."""
    if is_ready(record):
        result.retire.append(record)
        _draining(RETIRE_TIMEOUT, result)
    else:
        result.remove.append(record)


def _has_head(members: Iterable[ReplicaRecord]) -> bool:
    return any(member.role == ReplicaRole.HEAD for member in members)


def _shape(
    spec: AppSpec,
    clusters: dict[str, list[ReplicaRecord]],
    used_clusters: set[str],
    used_ids: set[str],
    result: Diff,
) -> list[Slot]:
    """Fit the current clusters to the spec's sizes; the slots to place, heads first."""
    live = []
    for name, members in clusters.items():
        if _has_head(members):
            live.append((name, sorted(members, key=_member_order)))
        else:
            result.remove.extend(members)
    live.sort(key=lambda item: (-len(item[1]), item[0]))
    sizes = spec.cluster_sizes()
    heads: list[Slot] = []
    new_workers: list[Slot] = []
    for (name, members), size in zip(live, sizes, strict=False):
        head, workers = (
            members[0],
            [member for member in members[1:] if member.role != ReplicaRole.HEAD],
        )
        for member in members[1:]:
            if member.role == ReplicaRole.HEAD:
                _leave(member, result)
        kept = [head, *workers][:size]
        result.keep.extend(kept)
        for member in workers[size - 1 :]:
            _leave(member, result)
        ordinal = max(_ordinal(member.replica_id) for member in members)
        for _ in range(size - len(kept)):
            ordinal += 1
            while f"{name}-{ordinal}" in used_ids:
                ordinal += 1
            new_workers.append(Slot(f"{name}-{ordinal}", name, ReplicaRole.WORKER))
    for _, members in live[len(sizes) :]:
        for member in members:
            _leave(member, result)
    number = 0
    for size in sizes[len(live) :]:
        while f"c{number}" in used_clusters:
            number += 1
        name = f"c{number}"
        used_clusters.add(name)
        heads.append(Slot(f"{name}-0", name, ReplicaRole.HEAD))
        new_workers.extend(
            Slot(f"{name}-{index}", name, ReplicaRole.WORKER) for index in range(1, size)
        )
    return heads + new_workers


def _old_clusters(
    clusters: dict[str, list[ReplicaRecord]], current: set[str], result: Diff
) -> list[list[ReplicaRecord]]:
    """The old clusters with a head, in the order they leave (fewest ready first), each
    in the order its members leave: not serving first, then the newest workers, the
    head last. Old workers of a current cluster leave like them; old replicas without
    any head serve nothing: removed at once."""
    outgoing = []
    for name, members in clusters.items():
        if name not in current and not _has_head(members):
            result.remove.extend(members)
            continue
        members.sort(
            key=lambda record: (
                record.role == ReplicaRole.HEAD,
                is_ready(record),
                -_ordinal(record.replica_id),
                record.replica_id,
            )
        )
        outgoing.append(members)
    outgoing.sort(key=lambda members: (sum(map(is_ready, members)), members[-1].replica_id))
    return outgoing


def _leave_old(outgoing: list[list[ReplicaRecord]], budget: int, result: Diff) -> None:
    """Take old replicas away while ``budget`` (ready replicas beyond the minimum
    available) allows; a head leaves only with the last member of its cluster."""
    for members in outgoing:
        left = len(members)
        for record in members:
            if record.role == ReplicaRole.HEAD and left > 1:
                break  # its workers stay, so does it
            cost = int(is_ready(record))
            if cost > budget:
                continue
            budget -= cost
            left -= 1
            _leave(record, result)
        result.old += left


__all__ = ["RETIRE_TIMEOUT", "Diff", "Slot", "diff", "is_current", "is_ready"]
