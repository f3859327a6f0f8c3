"""The embedded store's multi-version keyspace: state, history and transactions, in memory.

Plain data structures with no I/O and no awaits (:mod:`astra.store._embedded` drives
them, :mod:`astra.store._sqlite` persists what they produce):

- **State**: ``kvs`` maps each live key to its :class:`KeyValue`; ``keys`` holds the
  same keys sorted, so a prefix range costs O(log n + k).
- **History**: ``history[i]`` is the tuple of events of revision ``first + i``, for
  every revision from the compaction point to the latest. Every revision after the
  initial one has at least one event, so a revision is a list index: a watcher or an
  old read finds its place in O(1).
- **Reads at an older revision** R start from the current state and undo the events
  after R that touch the range: O(log n + k + events after R).
- **Transactions** are prepared against the current state plus an overlay of their
  own earlier operations, without touching anything; the caller persists the prepared
  events and then applies them, so a failure in between leaves memory as it was.
- **Compaction** to revision C drops the history before C, and names the persisted
  rows that reading at C or later can no longer need (see :meth:`Keyspace.obsolete_rows`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from astra.store._errors import CompactedError, LeaseNotFoundError, LimitError, StoreError
from astra.store._types import (
    Compare,
    Delete,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
)

#: One persisted version of a key: (revision, key, value or ``None`` for a deletion,
#: create revision, version, lease).
Row = tuple[int, str, bytes | None, int, int, int]


@dataclass(slots=True)
class Prepared:
    """A transaction evaluated against the keyspace and not applied yet.

    ``revision`` is the store's revision once applied: the next one if ``events`` is
    not empty, else the current one.
    """

    succeeded: bool
    revision: int
    results: list[OpResult]
    events: list[Event]


@dataclass(slots=True)
class LeaseEntry:
    """A live lease: its TTL in seconds and the keys attached to it."""

    ttl: int
    keys: set[str] = field(default_factory=set)


def check_duplicates(ops: Sequence[Op]) -> None:
    """Refuse a branch that writes a key twice, as etcd does: two puts of one key, or a
    put of a key that a delete of the same branch covers."""
    if len(ops) < 2:
        return
    puts = [op.key for op in ops if isinstance(op, Put)]
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
    return key.startswith(delete.key) if delete.prefix else key == delete.key


def _tombstone(key: str, revision: int) -> KeyValue:
    """The ``kv`` of a DELETE event, as etcd reports it."""
    return KeyValue(key, b"", 0, revision, 0)


class Keyspace:
    """Every key's current value, the events since the compaction point, and leases.

    A fresh keyspace is at revision 1 with no events, like a fresh etcd: the first
    write makes revision 2.
    """

    def __init__(self) -> None:
        self.kvs: dict[str, KeyValue] = {}
        self.keys: SortedList = SortedList()
        self.revision = 1
        #: Reads and watches before this revision raise CompactedError (0: never compacted).
        self.compacted = 0
        #: The revision of ``history[0]``; ``first + len(history) == revision + 1``.
        self.first = 2
        self.history: list[tuple[Event, ...]] = []
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
        changes: Mapping[str, KeyValue | None],
        revision: int,
    ) -> RangeResult:
        found = self._scan(key, prefix, changes)
        if not limit:
            return RangeResult(list(found), revision)
        kvs = list(itertools.islice(found, limit))
        return RangeResult(kvs, revision, next(found, None) is not None)

    def _scan(
        self, key: str, prefix: bool, changes: Mapping[str, KeyValue | None]
    ) -> Iterator[KeyValue]:
        """The live values of ``key`` or its prefix, in key order, in the current state
        overridden by ``changes`` (``None``: absent)."""
        kvs = self.kvs
        if not prefix:
            kv = changes[key] if key in changes else kvs.get(key)
            if kv is not None:
                yield kv
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
            kv = changes[k] if k in changes else kvs[k]
            if kv is not None:
                yield kv

    def _undo(self, key: str, prefix: bool, revision: int) -> dict[str, KeyValue | None]:
        """What the keys of the range were at ``revision``, for those changed since."""
        changes: dict[str, KeyValue | None] = {}
        history = self.history
        # The first change of a key after `revision` knows, as its `prev`, the value at it.
        for index in range(max(0, revision + 1 - self.first), len(history)):
            for event in history[index]:
                k = event.kv.key
                if (k.startswith(key) if prefix else k == key) and k not in changes:
                    changes[k] = event.prev
        return changes

    def events(self, prefix: str, start: int, until: int) -> list[Event]:
        """The events under ``prefix`` of revisions ``start`` to ``until`` (retained ones)."""
        history, first = self.history, self.first
        return [
            event
            for index in range(max(0, start - first), until + 1 - first)
            for event in history[index]
            if event.kv.key.startswith(prefix)
        ]

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
        kvs = self.kvs
        succeeded = all(compare.holds_for(kvs.get(compare.key)) for compare in compares)
        return self.prepare_ops(succeeded, success if succeeded else failure)

    def prepare_ops(self, succeeded: bool, ops: Sequence[Op]) -> Prepared:
        """Evaluate ``ops`` in order, each seeing the ones before it. Every result
        reports the revision of the whole transaction, as etcd's do."""
        writes = any(
            isinstance(op, Put) or (isinstance(op, Delete) and self._matches(op)) for op in ops
        )
        draft = _Draft(self, self.revision + 1 if writes else self.revision)
        results = [draft.run(op) for op in ops]
        return Prepared(succeeded, draft.revision, results, draft.events)

    def _matches(self, delete: Delete) -> bool:
        if not delete.prefix:
            return delete.key in self.kvs
        return next(iter(self.keys.irange(minimum=delete.key)), "").startswith(delete.key)

    def apply(self, prepared: Prepared) -> None:
        """Make a prepared transaction's events the current state and history."""
        if not prepared.events:
            return
        for event in prepared.events:
            self._apply(event)
        self.history.append(tuple(prepared.events))
        self.revision = prepared.revision

    def _apply(self, event: Event) -> None:
        kv, prev = event.kv, event.prev
        key = kv.key
        if prev is None:
            self.keys.add(key)
        elif prev.lease and prev.lease in self.leases:
            self.leases[prev.lease].keys.discard(key)
        if event.type is EventType.PUT:
            self.kvs[key] = kv
            if kv.lease in self.leases:
                self.leases[kv.lease].keys.add(key)
        else:
            del self.kvs[key]
            self.keys.remove(key)

    # -- compaction --------------------------------------------------------------------

    def obsolete_rows(self, revision: int) -> list[tuple[int, str]]:
        """The persisted rows (revision, key) that compacting to ``revision`` frees.

        A row stays while some read at or after the compaction point, or some retained
        event's ``prev``, may need it: a value is obsolete once a later change of its
        key falls before the compaction point, and a deletion once it falls before it.
        """
        rows: list[tuple[int, str]] = []
        history = self.history
        for index in range(max(0, revision - self.first)):
            for event in history[index]:
                if event.prev is not None:
                    rows.append((event.prev.mod_revision, event.kv.key))
                if event.type is EventType.DELETE:
                    rows.append((event.kv.mod_revision, event.kv.key))
        return rows

    def compact(self, revision: int) -> None:
        """Forget the events before ``revision``."""
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
        """Rebuild a keyspace from its persisted rows, in the order they were written.

        Rows before ``compacted`` are values still live at the compaction point; the
        others are the retained history, replayed with their previous values.

        Raises:
            StoreError: the retained revisions are not contiguous.
        """
        keyspace = cls()
        keyspace.compacted = compacted
        keyspace.leases = {lease_id: LeaseEntry(ttl) for lease_id, ttl in leases}
        kvs = keyspace.kvs
        group: list[Event] = []
        for revision, key, value, create, version, lease in rows:
            if group and revision != group[0].kv.mod_revision:
                keyspace._restore_revision(group)
                group = []
            if value is None:
                if key not in kvs:
                    raise StoreError(
                        f"store file is inconsistent: {key!r} deleted at {revision} never existed"
                    )
                event = Event(EventType.DELETE, _tombstone(key, revision), kvs[key])
            else:
                event = Event(
                    EventType.PUT,
                    KeyValue(key, value, create, revision, version, lease),
                    kvs.get(key),
                )
            keyspace._apply(event)
            if revision >= compacted:
                group.append(event)
        if group:
            keyspace._restore_revision(group)
        keyspace.revision = max(keyspace.revision, compacted)
        keyspace.first = keyspace.revision + 1 - len(keyspace.history)
        return keyspace

    def _restore_revision(self, events: list[Event]) -> None:
        revision = events[0].kv.mod_revision
        if self.history and revision != self.revision + 1:
            raise StoreError(
                f"store file is inconsistent: revision {revision} follows {self.revision}"
            )
        self.history.append(tuple(events))
        self.revision = revision


class _Draft:
    """The ops of one transaction, applied to an overlay on top of the keyspace."""

    __slots__ = ("created", "events", "keyspace", "overlay", "revision")

    def __init__(self, keyspace: Keyspace, revision: int) -> None:
        self.keyspace = keyspace
        self.revision = revision
        self.overlay: dict[str, KeyValue | None] = {}
        self.events: list[Event] = []
        #: The result of every put that creates its key: results are immutable, and
        #: most puts of a large transaction create keys.
        self.created = PutResult(revision)

    def run(self, op: Op) -> OpResult:
        if isinstance(op, Put):
            return self._put(op)
        if isinstance(op, Delete):
            return self._delete(op)
        return self.keyspace._read(op.key, op.prefix, op.limit, self.overlay, self.revision)

    def _put(self, op: Put) -> PutResult:
        if op.lease and op.lease not in self.keyspace.leases:
            raise LeaseNotFoundError(op.lease)
        overlay = self.overlay
        prev = overlay[op.key] if op.key in overlay else self.keyspace.kvs.get(op.key)
        revision = self.revision
        if prev is None:
            kv = KeyValue(op.key, op.value, revision, revision, 1, op.lease)
        else:
            kv = KeyValue(
                op.key, op.value, prev.create_revision, revision, prev.version + 1, op.lease
            )
        self.overlay[op.key] = kv
        self.events.append(Event(EventType.PUT, kv, prev))
        return self.created if prev is None else PutResult(revision, prev)

    def _delete(self, op: Delete) -> DeleteResult:
        revision = self.revision
        prevs = list(self.keyspace._scan(op.key, op.prefix, self.overlay))
        for prev in prevs:
            self.overlay[prev.key] = None
            self.events.append(Event(EventType.DELETE, _tombstone(prev.key, revision), prev))
        return DeleteResult(revision, len(prevs), prevs)


__all__ = ["Keyspace", "LeaseEntry", "Prepared", "Row", "check_duplicates"]
