"""The embedded store's multi-version keyspace: state, history and transactions, in memory.

Plain data structures with no I/O and no awaits (:mod:`astra.store._embedded` drives
them, :mod:`astra.store._sqlite` persists what they produce):

- **Records**: one version of a key is a plain tuple, a :data:`Record`, with the fields
  of :class:`KeyValue` in order; a deletion's is etcd's tombstone (empty value, version
  0). A write builds one tuple per key it changes; the :class:`KeyValue`,
  :class:`Event` and :class:`PutResult` objects are built only for what a caller reads
  (a range, a watch, the results of a transaction), so that a large transaction whose
  results nobody looks at builds no object per key.
- **State**: ``kvs`` maps each live key to its record; ``keys`` holds the same keys
  sorted, so a prefix range costs O(log n + k).
- **History**: ``history[i]`` is the tuple of changes of revision ``first + i``, flat: the
  new record, then the one it replaced (``None`` if it created the key), for every key
  of the revision in order. Tuples of tuples of atoms: the garbage collector stops
  tracking them, so a long history costs its collections nothing. Every revision after
  the initial one has at least one change, so a revision is a list index: a watcher or
  an old read finds its place in O(1).
- **Reads at an older revision** R start from the current state and undo the changes
  after R that touch the range: O(log n + k + changes after R).
- **Transactions** are prepared against the current state plus an overlay of their
  own earlier operations, without touching anything; the caller applies them and
  persists their records, so a failure while preparing leaves memory as it was.
- **Compaction** to revision C drops the history before C, and names the persisted
  records that reading at C or later can no longer need (see :meth:`Keyspace.obsolete_rows`).
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from sortedcontainers import SortedList

from astra.store._errors import CompactedError, LeaseNotFoundError, LimitError, StoreError
from astra.store._types import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    EventType,
    Get,
    KeyValue,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
)

#: One version of a key: (key, value, create revision, mod revision, version, lease),
#: the fields of KeyValue. Version 0 marks a deletion (etcd's tombstone).
Record = tuple[str, bytes, int, int, int, int]
#: One persisted revision: its number and the new records of its keys, in order.
Row = tuple[int, Sequence[Record]]

#: Where a compare's target is in a record, for the compares that test equality.
_FIELD = {
    CompareTarget.MOD: 3,
    CompareTarget.CREATE: 2,
    CompareTarget.VERSION: 4,
    CompareTarget.VALUE: 1,
}
# Enum members are properties of their class in Python 3.11 (over 100 ns a read): the
# loops over every key of a transaction or a watch read them from here.
_MOD, _VALUE, _EQUAL = CompareTarget.MOD, CompareTarget.VALUE, CompareOp.EQUAL
_PUT, _DELETE = EventType.PUT, EventType.DELETE
_READS, _PUTS = frozenset([Get]), frozenset([Put])
_key = operator.attrgetter("_key")


@dataclass(slots=True)
class Prepared:
    """A transaction evaluated against the keyspace and not applied yet.

    ``revision`` is the store's revision once applied: the next one if ``changes`` is
    not empty, else the current one. ``results`` has one entry per op: a put's
    replaced record (``None``: it created the key), the result of any other op.
    """

    succeeded: bool
    revision: int
    results: list[Record | OpResult | None]
    #: new record, replaced record (or None), ... for every key changed.
    changes: list[Record | None]
    #: The new record of every key put, ``None`` for those deleted.
    overlay: dict[str, Record | None]
    #: Whether every change overwrites a live key and no lease is involved, so that
    #: applying the changes is only setting the new records.
    overwrites: bool

    def records(self) -> list[Record]:
        """The new record of every key changed, in order."""
        return cast("list[Record]", self.changes[::2])  # even positions are never None

    def txn_result(self) -> TxnResult:
        """The transaction's result; its op results are built if someone reads them."""
        return TxnResult.deferred(self.succeeded, self.revision, self._build_results)

    def _build_results(self) -> list[OpResult]:
        revision = self.revision
        created = PutResult(revision)
        return [
            created
            if result is None
            else PutResult(revision, KeyValue(*result))
            if isinstance(result, tuple)
            else result
            for result in self.results
        ]


@dataclass(slots=True)
class LeaseEntry:
    """A live lease: its TTL in seconds and the keys attached to it."""

    ttl: int
    keys: set[str] = field(default_factory=set)


def check_duplicates(ops: Sequence[Op]) -> None:
    """Refuse a branch that writes a key twice, as etcd does: two puts of one key, or a
    put of a key that a delete of the same branch covers. O(n); a branch of only reads,
    or only puts of distinct keys, is checked by C loops alone."""
    if len(ops) < 2:
        return
    kinds = set(map(type, ops))
    if kinds <= _READS or (kinds <= _PUTS and len(set(map(_key, ops))) == len(ops)):
        return
    puts = [op._key for op in ops if isinstance(op, Put)]
    deletes = [op for op in ops if isinstance(op, Delete)]
    if len(set(puts)) == len(puts) and not deletes:
        return
    seen: set[str] = set()
    for key in puts:
        if key in seen or any(_covers(delete, key) for delete in deletes):
            raise LimitError(
                f"key {key!r} is written twice in one transaction branch, which etcd refuses"
            )
        seen.add(key)


def _covers(delete: Delete, key: str) -> bool:
    return key.startswith(delete._key) if delete._prefix else key == delete._key


def _holds(compare: Compare, record: Record | None) -> bool:
    """Whether ``compare`` is true for ``record`` (``None``: the key is absent)."""
    if compare._op is _EQUAL and compare._target is not _VALUE:
        return (0 if record is None else record[_FIELD[compare._target]]) == compare._operand
    return compare.holds_for(None if record is None else KeyValue(*record))


def _event(new: Record, prev: Record | None) -> Event:
    return Event(
        _PUT if new[4] else _DELETE,
        KeyValue(*new),
        None if prev is None else KeyValue(*prev),
    )


class Keyspace:
    """Every key's current value, the changes since the compaction point, and leases.

    A fresh keyspace is at revision 1 with no changes, like a fresh etcd: the first
    write makes revision 2.
    """

    def __init__(self) -> None:
        self.kvs: dict[str, Record] = {}
        self.keys: SortedList = SortedList()
        self.revision = 1
        #: Reads and watches before this revision raise CompactedError (0: never compacted).
        self.compacted = 0
        #: The revision of ``history[0]``; ``first + len(history) == revision + 1``.
        self.first = 2
        self.history: list[tuple[Record | None, ...]] = []
        self.leases: dict[int, LeaseEntry] = {}

    # -- reads -------------------------------------------------------------------------

    def range(self, key: str, *, prefix: bool, limit: int, revision: int) -> RangeResult:
        """``key``, or the keys starting with it, at ``revision`` (0: the latest).

        Raises:
            CompactedError: ``revision`` is before the compaction point.
            ValueError: ``revision`` is in the future.
        """
        if revision == 0 or revision == self.revision:
            return self._read(key, prefix, limit, {}, self.revision)
        if revision < self.compacted:
            raise CompactedError(revision, self.compacted)
        if revision > self.revision:
            raise ValueError(
                f"revision {revision} is in the future (the store is at {self.revision})"
            )
        return self._read(key, prefix, limit, self._undo(key, prefix, revision), revision)

    def _read(
        self,
        key: str,
        prefix: bool,
        limit: int,
        changes: Mapping[str, Record | None],
        revision: int,
    ) -> RangeResult:
        found = self._scan(key, prefix, changes)
        if not limit:
            return RangeResult([KeyValue(*record) for record in found], revision)
        kvs = [KeyValue(*record) for record in itertools.islice(found, limit)]
        return RangeResult(kvs, revision, next(found, None) is not None)

    def _scan(
        self, key: str, prefix: bool, changes: Mapping[str, Record | None]
    ) -> Iterator[Record]:
        """The live records of ``key`` or its prefix, in key order, in the current state
        overridden by ``changes`` (``None``: absent)."""
        kvs = self.kvs
        if not prefix:
            record = changes[key] if key in changes else kvs.get(key)
            if record is not None:
                yield record
            return
        current = itertools.takewhile(lambda k: k.startswith(key), self.keys.irange(minimum=key))
        if not changes:
            for k in current:
                yield kvs[k]
            return
        changed = sorted(k for k in changes if k.startswith(key))
        previous = None
        for k in heapq.merge(current, changed):
            if k == previous:
                continue
            previous = k
            record = changes[k] if k in changes else kvs[k]
            if record is not None:
                yield record

    def _undo(self, key: str, prefix: bool, revision: int) -> dict[str, Record | None]:
        """What the keys of the range were at ``revision``, for those changed since."""
        undone: dict[str, Record | None] = {}
        history = self.history
        # The first change of a key after `revision` knows, as its replaced record, the
        # value at it.
        for index in range(max(0, revision + 1 - self.first), len(history)):
            changes = history[index]
            for position in range(0, len(changes), 2):
                new = changes[position]
                assert new is not None
                k = new[0]
                if (k.startswith(key) if prefix else k == key) and k not in undone:
                    undone[k] = changes[position + 1]
        return undone

    def events(self, prefix: str, start: int, until: int) -> list[Event]:
        """The events under ``prefix`` of revisions ``start`` to ``until`` (retained ones)."""
        history, first = self.history, self.first
        events = []
        for index in range(max(0, start - first), until + 1 - first):
            changes = history[index]
            for position in range(0, len(changes), 2):
                new = changes[position]
                assert new is not None
                if new[0].startswith(prefix):
                    events.append(_event(new, changes[position + 1]))
        return events

    # -- transactions ----------------------------------------------------------------

    def prepare(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> Prepared:
        """Evaluate a transaction: the compares, then the chosen branch's ops in order.

        Raises:
            LimitError: a branch writes a key twice.
            LeaseNotFoundError: a put of the chosen branch names an unknown lease.
        """
        check_duplicates(success)
        check_duplicates(failure)
        get = self.kvs.get
        succeeded = True
        for compare in compares:
            record = get(compare._key)
            if compare._target is _MOD and compare._op is _EQUAL:  # an optimistic commit's
                if (0 if record is None else record[3]) != compare._operand:
                    succeeded = False
                    break
            elif not _holds(compare, record):
                succeeded = False
                break
        return self.prepare_ops(succeeded, success if succeeded else failure)

    def prepare_ops(self, succeeded: bool, ops: Sequence[Op]) -> Prepared:
        """Evaluate ``ops`` in order, each seeing the ones before it. Every result
        reports the revision of the whole transaction, as etcd's do.

        A put never finds its key changed earlier in its branch (check_duplicates
        refuses that), so it reads the current state; reads and deletes see the
        branch's earlier writes through the overlay.
        """
        revision = self.revision + 1 if self._writes(ops) else self.revision
        get, leases = self.kvs.get, self.leases
        overlay: dict[str, Record | None] = {}
        changes: list[Record | None] = []
        results: list[Record | OpResult | None] = []
        overwrites = True
        for op in ops:
            if isinstance(op, Put):
                key, lease = op._key, op._lease
                if lease and lease not in leases:
                    raise LeaseNotFoundError(lease)
                prev = get(key)
                if prev is None:
                    new = (key, op._value, revision, revision, 1, lease)
                else:
                    new = (key, op._value, prev[2], revision, prev[4] + 1, lease)
                if prev is None or lease or prev[5]:
                    overwrites = False
                overlay[key] = new
                changes.append(new)
                changes.append(prev)
                results.append(prev)
            elif isinstance(op, Delete):
                deleted = self._delete(op, revision, overlay, changes)
                overwrites = overwrites and not deleted.deleted
                results.append(deleted)
            else:
                results.append(self._read(op._key, op._prefix, op._limit, overlay, revision))
        return Prepared(succeeded, revision, results, changes, overlay, overwrites)

    def _writes(self, ops: Sequence[Op]) -> bool:
        for op in ops:
            if isinstance(op, Put) or (isinstance(op, Delete) and self._matches(op)):
                return True
        return False

    def _delete(
        self,
        op: Delete,
        revision: int,
        overlay: dict[str, Record | None],
        changes: list[Record | None],
    ) -> DeleteResult:
        prevs = list(self._scan(op._key, op._prefix, overlay))
        for prev in prevs:
            key = prev[0]
            overlay[key] = None
            changes.append((key, b"", 0, revision, 0, 0))
            changes.append(prev)
        return DeleteResult(revision, len(prevs), [KeyValue(*prev) for prev in prevs])

    def _matches(self, delete: Delete) -> bool:
        if not delete._prefix:
            return delete._key in self.kvs
        return next(iter(self.keys.irange(minimum=delete._key)), "").startswith(delete._key)

    def apply(self, prepared: Prepared) -> None:
        """Make a prepared transaction's changes the current state and history."""
        if not prepared.changes:
            return
        if prepared.overwrites:
            # overwrites: every key of the overlay was put, none deleted
            self.kvs.update(cast("dict[str, Record]", prepared.overlay))
        else:
            self._apply(prepared.changes)
        self.history.append(tuple(prepared.changes))
        self.revision = prepared.revision

    def _apply(self, changes: Sequence[Record | None]) -> None:
        kvs, keys, leases = self.kvs, self.keys, self.leases
        pairs = iter(changes)
        for new, prev in zip(pairs, pairs, strict=True):
            assert new is not None
            key = new[0]
            if prev is None:
                keys.add(key)
            elif prev[5] and prev[5] in leases:
                leases[prev[5]].keys.discard(key)
            if new[4]:
                kvs[key] = new
                if new[5] and new[5] in leases:
                    leases[new[5]].keys.add(key)
            else:
                del kvs[key]
                keys.remove(key)

    # -- compaction --------------------------------------------------------------------

    def obsolete_rows(self, revision: int) -> dict[int, list[str]]:
        """The persisted records that compacting to ``revision`` frees, as the keys of
        each revision's row.

        A record stays while some read at or after the compaction point, or some
        retained change, may need it: a value is obsolete once a later change of its
        key falls before the compaction point, and a deletion once it falls before it.
        """
        rows: dict[int, list[str]] = {}
        history = self.history
        for index in range(max(0, revision - self.first)):
            changes = history[index]
            for position in range(0, len(changes), 2):
                new, prev = changes[position], changes[position + 1]
                assert new is not None
                if prev is not None:
                    rows.setdefault(prev[3], []).append(prev[0])
                if not new[4]:
                    rows.setdefault(new[3], []).append(new[0])
        return rows

    def compact(self, revision: int) -> None:
        """Forget the changes before ``revision``."""
        dropped = max(0, revision - self.first)
        del self.history[:dropped]
        self.first += dropped
        self.compacted = revision

    # -- leases ------------------------------------------------------------------------

    def prepare_revoke(self, lease_id: int) -> Prepared:
        """Deleting every key of a lease, in one revision."""
        return self.prepare_ops(True, [Delete(key) for key in sorted(self.leases[lease_id].keys)])

    # -- persistence -----------------------------------------------------------------

    @classmethod
    def restore(
        cls, rows: Iterable[Row], *, compacted: int, leases: Iterable[tuple[int, int]]
    ) -> Keyspace:
        """Rebuild a keyspace from its persisted rows, in revision order.

        Rows before ``compacted`` hold values still live at the compaction point; the
        others are the retained history, replayed with the records they replaced.

        Raises:
            StoreError: a deletion of a missing key, or retained revisions that are
                not contiguous.
        """
        keyspace = cls()
        keyspace.compacted = compacted
        keyspace.leases = {lease_id: LeaseEntry(ttl) for lease_id, ttl in leases}
        kvs = keyspace.kvs
        for revision, records in rows:
            changes: list[Record | None] = []
            for record in records:
                prev = kvs.get(record[0])
                if prev is None and not record[4]:
                    raise StoreError(
                        f"store file is inconsistent: {record[0]!r} deleted at {revision} "
                        "never existed"
                    )
                changes.append(record)
                changes.append(prev)
            keyspace._apply(changes)
            if revision >= compacted:
                if keyspace.history and revision != keyspace.revision + 1:
                    raise StoreError(
                        f"store file is inconsistent: revision {revision} follows "
                        f"{keyspace.revision}"
                    )
                keyspace.history.append(tuple(changes))
            keyspace.revision = revision
        keyspace.revision = max(keyspace.revision, compacted)
        keyspace.first = keyspace.revision + 1 - len(keyspace.history)
        return keyspace


__all__ = ["Keyspace", "LeaseEntry", "Prepared", "Record", "Row", "check_duplicates"]
