"""The planner: commits plans to the store with optimistic concurrency.

The commit protocol, which every writer of placements follows: placing replica R of
app A on node N writes, in one transaction,

- ``/astra/v1/alloc/{N}``: the node's :class:`~astra.records.AllocRecord` with R added,
  guarded by ``mod_revision`` equal to the one the plan was made against (0: absent);
- ``/astra/v1/replicas/{A}/{R}``: R's :class:`~astra.records.ReplicaRecord`, guarded by
  ``version == 0`` so that a replica is never placed twice.

Removing R deletes its record and rewrites N's allocation without it, in one
transaction. A plan's changes are packed into as few transactions as etcd's limits
allow (128 operations per branch, 1.5 MiB per request); a transaction is all or
nothing, so a crash can never leave half of a placement written.

The failure branch reads every compared allocation, so a lost race returns the fresh
allocations in the same round trip. What happens next is the :class:`ConflictMode`:

- ``FINE`` (Omega's resource-fit conflict detection): only placements on nodes that
  changed are checked again against the fresh allocation; those that still fit are
  committed again with everything else, those that do not are handed back to be placed
  elsewhere.
- ``ALL_OR_NOTHING``: every placement of the failed transaction is handed back.
- ``COARSE``: like ``ALL_OR_NOTHING``, and every transaction also compares and bumps
  one sequence key, so that any commit anywhere fails every concurrent one (Omega's
  coarse-grained, sequence-number conflict detection). For measurement only.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from astra import keys
from astra.records import AllocRecord, NodePhase, ReplicaPhase, ReplicaRecord
from astra.store import (
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    Get,
    Op,
    Put,
    RangeResult,
    Store,
)
from scheduling._codec import Amounts, pack, plain_fields_of
from scheduling._model import FleetView, NodeState
from scheduling._plan import Placement, Plan, Removal

#: The key COARSE mode compares and bumps in every transaction.
SEQUENCE_KEY = keys.ROOT + "scheduling/sequence"
#: Room kept under the request size limit for keys, compares and framing.
_REQUEST_BUDGET = MAX_REQUEST_BYTES * 3 // 4
#: Estimated encoded size of one replica record and of one allocation entry.
_RECORD_BYTES = 512
_ENTRY_BYTES = 64


class ConflictMode(enum.StrEnum):
    """What a lost race costs; see the module's documentation."""

    FINE = "fine"
    ALL_OR_NOTHING = "all-or-nothing"
    COARSE = "coarse"


class Rejection(enum.StrEnum):
    """Why a placement of a plan was not committed."""

    NO_LONGER_FITS = "NoLongerFits"
    """Its node changed under the plan and the replica does not fit there any more."""
    NODE_NOT_READY = "NodeNotReady"
    """Its node is not READY (draining, dead or gone)."""
    ALREADY_PLACED = "AlreadyPlaced"
    """The replica exists already: the plan was made from a stale list of replicas."""
    CONFLICT = "Conflict"
    """It lost a race (all-or-nothing or coarse mode, or too many retries)."""


@dataclass(slots=True)
class CommitStats:
    """Counters over every commit of a planner (or several: :meth:`add`)."""

    txns: int = 0
    """Transactions committed."""
    conflicts: int = 0
    """Transactions whose compares failed."""
    placements: int = 0
    removals: int = 0
    allocations: int = 0
    """Allocations (nodes) written by committed transactions."""
    refits: int = 0
    """Placements kept and sent again after a lost race, still fitting (FINE mode)."""
    misfits: int = 0
    """Placements handed back because they no longer fit their changed node."""
    handed_back: int = 0
    """Placements handed back unchecked after a lost race (ALL_OR_NOTHING, COARSE)."""

    def add(self, other: CommitStats) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class CommitOutcome:
    """What became of a plan."""

    placed: list[Placement] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    rejected: list[tuple[Placement, Rejection]] = field(default_factory=list)
    unremoved: list[Removal] = field(default_factory=list)
    """Removals still not committed after ``max_rounds`` lost races."""
    txns: int = 0
    conflicts: int = 0


@dataclass(slots=True)
class _Change:
    """A plan's changes on one node."""

    node_id: str
    placements: list[Placement] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)

    def size(self, base_bytes: int) -> tuple[int, int]:
        """(operations in the largest branch, estimated request bytes)."""
        ops = 1 + len(self.placements) + len(self.removals)
        entries = len(self.placements) + len(self.removals)
        return ops, base_bytes + entries * _ENTRY_BYTES + len(self.placements) * _RECORD_BYTES


@dataclass(slots=True)
class _Txn:
    compares: list[Compare] = field(default_factory=list)
    success: list[Op] = field(default_factory=list)
    failure: list[Op] = field(default_factory=list)
    written: list[_Written] = field(default_factory=list)
    """Every written allocation, in the order of the failure branch's reads."""


@dataclass(slots=True)
class _Written:
    """A new allocation of a transaction, and what it changed."""

    record: AllocRecord
    base_revision: int
    """The mod_revision of the allocation it was made from (0: none)."""
    value: bytes
    placements: list[Placement]
    removed: list[tuple[str, Sequence[int]]]
    """(app id, amounts) of each replica it no longer names."""


class Planner:
    """Commits plans for schedulers that share a :class:`FleetView` (module docs).

    Args:
        store: where plans are committed.
        view: updated with every allocation a commit writes or a lost race reads.
        mode: what a lost race costs.
        max_rounds: lost races a transaction may suffer before its placements are
            handed back (FINE) or its removals reported as not done.
        clock: the time written into replica records.
    """

    def __init__(
        self,
        store: Store,
        view: FleetView,
        *,
        mode: ConflictMode = ConflictMode.FINE,
        max_rounds: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._view = view
        self._mode = mode
        self._max_rounds = max_rounds
        self._clock = clock
        self._sequence_revision = 0
        self._records = _ReplicaRecords()
        self.stats = CommitStats()

    @property
    def view(self) -> FleetView:
        return self._view

    @property
    def mode(self) -> ConflictMode:
        return self._mode

    async def read_replicas(self, app_id: str) -> list[ReplicaRecord]:
        """Every replica record of ``app_id`` now in the store."""
        result = await self._store.range(keys.replicas_of(app_id))
        return [ReplicaRecord.from_bytes(kv.value) for kv in result.kvs]

    async def retire(self, records: Iterable[ReplicaRecord], now: float) -> int:
        """Mark each replica of ``records`` retired at ``now`` (it leaves its routes and
        its agent drains it), unless its record changed since it was read (a status
        report, say) and is retired already or gone; returns how many were marked.
        One transaction per replica, guarded by its record's ``mod_revision`` and
        retried on the fresh record, so a concurrent status write is never lost.
        """
        marked = 0
        for record in records:
            key = keys.replica(record.app_id, record.replica_id)
            for _ in range(self._max_rounds):
                kv = await self._store.get(key)
                if kv is None:
                    break
                fresh = ReplicaRecord.from_bytes(kv.value)
                if fresh.retire_time:
                    break
                fresh.retire_time = fresh.update_time = now
                result = await self._store.txn(
                    (Compare.mod_revision(key) == kv.mod_revision,), (Put(key, fresh.to_bytes()),)
                )
                if result.succeeded:
                    marked += 1
                    break
        return marked

    async def commit(self, plan: Plan) -> CommitOutcome:
        """Commit ``plan``, in as few transactions as the limits allow, one after the other.

        Raises:
            ValueError: the plan places or removes one replica twice.
            UnavailableError: the store could not be reached; what was committed
                before stays committed, the rest is unknown: re-read and reconcile.
        """
        outcome = CommitOutcome()
        for chunk in self._chunks(plan):
            await self._commit_chunk(chunk, outcome)
        return outcome

    # -- packing changes into transactions -------------------------------------------

    def _chunks(self, plan: Plan) -> Iterable[list[_Change]]:
        changes: dict[str, _Change] = {}
        names: set[str] = set()
        items: list[Placement | Removal] = [*plan.placements, *plan.removals]
        for item in items:
            name = item.name
            if name in names:
                raise ValueError(f"plan names {name} twice")
            names.add(name)
            change = changes.get(item.node_id)
            if change is None:
                change = changes[item.node_id] = _Change(item.node_id)
            if isinstance(item, Placement):
                change.placements.append(item)
            else:
                change.removals.append(item)
        extra = 1 if self._mode is ConflictMode.COARSE else 0
        chunk: list[_Change] = []
        ops = size = extra
        for change in (part for whole in changes.values() for part in self._split(whole, extra)):
            change_ops, change_size = change.size(self._alloc_bytes(change.node_id))
            if chunk and (
                ops + change_ops > MAX_TXN_OPS
                or size + change_size > _REQUEST_BUDGET
                or _has_node(chunk, change)
            ):
                yield chunk
                chunk, ops, size = [], extra, extra
            chunk.append(change)
            ops += change_ops
            size += change_size
        if chunk:
            yield chunk

    def _split(self, change: _Change, extra: int) -> Iterable[_Change]:
        """``change`` in parts that each fit one transaction."""
        base = self._alloc_bytes(change.node_id)
        ops, size = change.size(base)
        if ops + extra <= MAX_TXN_OPS and size <= _REQUEST_BUDGET:
            yield change
            return
        per_part = max(
            1,
            min(
                MAX_TXN_OPS - 1 - extra, (_REQUEST_BUDGET - base) // (_RECORD_BYTES + _ENTRY_BYTES)
            ),
        )
        for start in range(0, len(change.placements), per_part):
            yield _Change(change.node_id, placements=change.placements[start : start + per_part])
        for start in range(0, len(change.removals), per_part):
            yield _Change(change.node_id, removals=change.removals[start : start + per_part])

    def _alloc_bytes(self, node_id: str) -> int:
        node = self._view.node(node_id)
        return node.alloc_bytes if node is not None else 0

    # -- one transaction -------------------------------------------------------------

    async def _commit_chunk(self, changes: list[_Change], outcome: CommitOutcome) -> None:
        stats = self.stats
        for round_ in range(self._max_rounds):
            txn = self._build(changes, outcome, first=round_ == 0)
            if not txn.success:
                return
            result = await self._store.txn(txn.compares, txn.success, txn.failure)
            if result.succeeded:
                self._committed(changes, txn, result.revision, outcome)
                return
            outcome.conflicts += 1
            stats.conflicts += 1
            changed = self._refresh(txn, result.results, result.revision)
            if self._mode is not ConflictMode.FINE:
                _hand_back(changes, outcome, Rejection.CONFLICT, stats)
            elif not changed:
                await self._drop_placed(changes, outcome)
        _hand_back(changes, outcome, Rejection.CONFLICT, stats)
        for change in changes:
            outcome.unremoved.extend(change.removals)
            change.removals = []

    def _build(self, changes: list[_Change], outcome: CommitOutcome, *, first: bool) -> _Txn:
        """The transaction for ``changes`` against the view's current allocations.

        Placements that do not fit (any more) are moved from ``changes`` to the
        outcome's rejections: a placement is checked against its node's latest known
        allocation, the fine-grained re-check after a lost race.
        """
        txn, view, records = _Txn(), self._view, self._records
        now = self._clock()
        for change in changes:
            node = view.node(change.node_id)
            base_revision = node.alloc_revision if node is not None else 0
            record = node.allocation() if node is not None else AllocRecord(change.node_id)
            freed = [0, 0, 0]
            removed: list[tuple[str, Sequence[int]]] = []
            for removal in change.removals:
                amounts = record.replicas.pop(removal.name, None)
                if amounts is not None:
                    removed.append((removal.app_id, amounts))
                    freed = [total + amount for total, amount in zip(freed, amounts, strict=True)]
            change.placements = self._fit(change.placements, node, record, freed, outcome)
            if not first:
                self.stats.refits += len(change.placements)
            if change.placements or removed:
                key = keys.alloc(change.node_id)
                value = pack(record)
                txn.compares.append(Compare(key, CompareTarget.MOD, CompareOp.EQUAL, base_revision))
                txn.success.append(Put(key, value))
                txn.failure.append(Get(key))
                txn.written.append(
                    _Written(record, base_revision, value, change.placements, removed)
                )
            for placement in change.placements:
                key = keys.replica(placement.app_id, placement.replica_id)
                txn.compares.append(Compare(key, CompareTarget.VERSION, CompareOp.EQUAL, 0))
                txn.success.append(Put(key, records.encode(placement, now)))
            txn.success.extend(
                Delete(keys.replica(removal.app_id, removal.replica_id))
                for removal in change.removals
            )
        changes[:] = [change for change in changes if change.placements or change.removals]
        if self._mode is ConflictMode.COARSE and txn.success:
            txn.compares.append(Compare.mod_revision(SEQUENCE_KEY) == self._sequence_revision)
            txn.success.append(Put(SEQUENCE_KEY, b""))
            txn.failure.append(Get(SEQUENCE_KEY))
        return txn

    def _fit(
        self,
        placements: list[Placement],
        node: NodeState | None,
        record: AllocRecord,
        freed: list[int],
        outcome: CommitOutcome,
    ) -> list[Placement]:
        """The placements that fit ``node``, whose allocation is ``record`` once its
        removals have ``freed`` (cpu, memory, gpus): they are added to ``record``; the
        others go to the outcome's rejections. O(placements)."""
        if not placements:
            return placements
        if node is None or node.phase != NodePhase.READY:
            outcome.rejected.extend(
                (placement, Rejection.NODE_NOT_READY) for placement in placements
            )
            return []
        replicas = record.replicas
        # What the allocation leaves: the view summarised this very allocation.
        cpu = node.free_cpu + node.held_cpu + freed[0]
        memory = node.free_memory + node.held_memory + freed[1]
        gpus = node.free_gpus + node.held_gpus + freed[2]
        kept = []
        for placement in placements:
            need, name = placement.resources, placement.name
            if name in replicas:
                outcome.rejected.append((placement, Rejection.ALREADY_PLACED))
            elif need.cpu_millis <= cpu and need.memory_bytes <= memory and need.gpus <= gpus:
                cpu, memory, gpus = (
                    cpu - need.cpu_millis,
                    memory - need.memory_bytes,
                    gpus - need.gpus,
                )
                replicas[name] = _amounts(placement)  # type: ignore[assignment]  # AllocRecord says lists; a tuple encodes alike
                kept.append(placement)
            else:
                outcome.rejected.append((placement, Rejection.NO_LONGER_FITS))
                self.stats.misfits += 1
        return kept

    def _committed(
        self, changes: list[_Change], txn: _Txn, revision: int, outcome: CommitOutcome
    ) -> None:
        for written in txn.written:
            self._view.commit_alloc(
                written.record,
                written.value,
                revision=revision,
                base=written.base_revision,
                added=[(placement.app_id, _amounts(placement)) for placement in written.placements],
                removed=written.removed,
            )
        if self._mode is ConflictMode.COARSE:
            self._sequence_revision = revision
        stats = self.stats
        stats.txns += 1
        stats.allocations += len(txn.written)
        outcome.txns += 1
        for change in changes:
            outcome.placed.extend(change.placements)
            outcome.removed.extend(change.removals)
            stats.placements += len(change.placements)
            stats.removals += len(change.removals)

    def _refresh(self, txn: _Txn, results: Sequence[object], revision: int) -> bool:
        """Apply the allocations a failed transaction read; whether any had changed."""
        changed = False
        for written, result in zip(txn.written, results, strict=False):
            assert isinstance(result, RangeResult)
            kv = result.kvs[0] if result.kvs else None
            self._view.apply_alloc(written.record.node_id, kv, observed=revision)
            changed = changed or (kv.mod_revision if kv is not None else 0) != written.base_revision
        if self._mode is ConflictMode.COARSE:
            sequence = results[-1]
            assert isinstance(sequence, RangeResult)
            self._sequence_revision = sequence.kvs[0].mod_revision if sequence.kvs else 0
        return changed

    async def _drop_placed(self, changes: list[_Change], outcome: CommitOutcome) -> None:
        """No allocation changed, so a replica compare failed: hand back the replicas
        that exist already (placed from a stale list of replicas)."""
        placements = [placement for change in changes for placement in change.placements]
        existing: set[str] = set()
        for start in range(0, len(placements), MAX_TXN_OPS):
            batch = placements[start : start + MAX_TXN_OPS]
            reads = await self._store.txn(
                (), [Get(keys.replica(p.app_id, p.replica_id)) for p in batch]
            )
            for placement, result in zip(batch, reads.results, strict=True):
                if isinstance(result, RangeResult) and result.kvs:
                    existing.add(placement.name)
        for change in changes:
            outcome.rejected.extend(
                (p, Rejection.ALREADY_PLACED) for p in change.placements if p.name in existing
            )
            change.placements = [p for p in change.placements if p.name not in existing]


def _amounts(placement: Placement) -> Amounts:
    need = placement.resources
    return _shared_amounts(need.cpu_millis, need.memory_bytes, need.gpus)


@functools.lru_cache(maxsize=4096)
def _shared_amounts(cpu: int, memory: int, gpus: int) -> Amounts:
    """One tuple for all the replicas with these amounts: the view keeps one per replica
    of every allocation, 64 bytes each when not shared."""
    return cpu, memory, gpus


def _has_node(chunk: list[_Change], change: _Change) -> bool:
    return any(other.node_id == change.node_id for other in chunk)


def _hand_back(
    changes: list[_Change], outcome: CommitOutcome, rejection: Rejection, stats: CommitStats
) -> None:
    for change in changes:
        outcome.rejected.extend((placement, rejection) for placement in change.placements)
        stats.handed_back += len(change.placements)
        change.placements = []


class _ReplicaRecords:
    """Encodes the records of placed replicas from one template per app: every field but
    the replica's own (id, node, cluster, role, times) is the same for all the replicas
    an app spec places. The template holds plain values only (resources and models as
    maps), so that msgpack packs a record without calling back into Python. O(fields)
    per record, no dataclass built."""

    #: Templates kept; more apps than this start over (one record built per app again).
    LIMIT = 4096

    def __init__(self) -> None:
        self._templates: dict[str, tuple[Placement, dict[str, object]]] = {}

    def encode(self, placement: Placement, now: float) -> bytes:
        entry = self._templates.get(placement.app_id)
        if entry is None or not _same_spec(entry[0], placement):
            if len(self._templates) >= self.LIMIT:
                self._templates.clear()
            entry = self._templates[placement.app_id] = (
                placement,
                plain_fields_of(_replica_record(placement, now)),
            )
        fields = dict(entry[1])
        fields["replica_id"] = placement.replica_id
        fields["node_id"] = placement.node_id
        fields["ray_cluster"] = placement.ray_cluster
        fields["role"] = placement.role.value
        fields["create_time"] = fields["update_time"] = now
        return pack(fields)


def _same_spec(template: Placement, placement: Placement) -> bool:
    return (
        template.resources is placement.resources
        and template.models is placement.models
        and template.app_generation == placement.app_generation
        and template.template == placement.template
    )


def _replica_record(placement: Placement, now: float) -> ReplicaRecord:
    return ReplicaRecord(
        app_id=placement.app_id,
        replica_id=placement.replica_id,
        node_id=placement.node_id,
        ray_cluster=placement.ray_cluster,
        role=placement.role.value,
        resources=placement.resources,
        models=[dict(model) for model in placement.models],
        app_generation=placement.app_generation,
        template=placement.template,
        phase=ReplicaPhase.PENDING.value,
        create_time=now,
        update_time=now,
    )


__all__ = ["SEQUENCE_KEY", "CommitOutcome", "CommitStats", "ConflictMode", "Planner", "Rejection"]
