"""Transitions on their way to the store: in order, batched, held through an outage.

Callers submit a transition; it is applied at once to the newest record this replica
knows (so the caller gets an answer, or an error such as NOT_FOUND, right away) and
queued. One writer takes the queue's head in batches (group commit: everything queued
while a write is in flight, or within a couple of milliseconds of the first, goes in the
same transaction) and writes each batch in one transaction guarded by every record's
``mod_revision``. Before writing, each transition is
applied again to the record the store holds now, so a write that lost a race is redone on
the fresh record, which the failure branch of the transaction returns.

While the store is unavailable the queue holds every transition in order and the writer
retries with backoff; heartbeats are unaffected (they never wait on the store). Callers
that were waiting for a write are told it is held. When the store is back the queue is
written in the order it was submitted; nothing is dropped. A transition whose write had
an unknown fate is simply applied again: every transition is idempotent.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from astra import keys
from astra.errors import AstraError
from astra.records import AllocRecord, NodeRecord
from astra.store import (
    MAX_TXN_OPS,
    Compare,
    Delete,
    Get,
    KeyValue,
    Op,
    Put,
    RangeResult,
    Store,
    StoreError,
    UnavailableError,
)
from services.resource._convert import Stored
from services.resource._transitions import Result, Transition, Verdict
from services.resource._validation import NAME_PREFIX
from services.resource._view import ClusterView

_log = logging.getLogger(__name__)

#: Transitions per transaction: each takes at most two operations per branch.
MAX_BATCH = MAX_TXN_OPS // 2
#: How long the writer waits for more transitions before writing a partial batch.
GROUP_COMMIT_SECONDS = 0.002


class Held(enum.Enum):
    """The outcome of a transition the store could not take yet: it stays queued."""

    HELD = "held"


@dataclass(frozen=True, slots=True)
class Written:
    """The outcome of a transition the store took: the record as written (``None`` when the
    node was removed) at ``revision``; ``revision`` 0 when nothing needed writing."""

    stored: Stored | None
    revision: int


Outcome = Written | Held


@dataclass(eq=False, slots=True)
class _Item:
    name: str
    transition: Transition
    #: What the transition led to when submitted: the record, or DELETE...
    result: NodeRecord | Verdict
    #: ...from the record at this mod_revision (0: absent; -1: a record still queued).
    based_on: int
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted transition: the record it leads to (``preview``, what the caller is
    answered while the store is away) and its outcome once settled."""

    preview: Stored | None
    future: asyncio.Future[Outcome] | None


class Outbox:
    """The ordered queue of transitions and its writer.

    Args:
        store: where records are written.
        view: the fleet as the store holds it (the base of each transition).
        on_written: called with each transition written and the seconds it waited.
    """

    def __init__(
        self,
        store: Store,
        view: ClusterView,
        *,
        on_written: Callable[[Transition, float], None] | None = None,
    ) -> None:
        self._store = store
        self._view = view
        self._on_written = on_written
        self._queue: collections.deque[tuple[_Item, float]] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        #: Per node: the record its last queued transition leads to, and how many are queued.
        self._ahead: dict[str, tuple[Stored | None, int]] = {}
        #: What this writer knows of node keys (packed records), and of alloc keys (as
        #: stored), more recently than the view: key -> (value or None when absent,
        #: mod_revision, revision it was known at), in revision order.
        self._known: dict[str, tuple[bytes | None, int, int]] = {}
        self._known_allocs: dict[str, tuple[bytes | None, int, int]] = {}
        #: False from a failed write until the next successful one.
        self.healthy = True
        self._writing = 0

    # -- callers ---------------------------------------------------------------------

    def current(self, name: str) -> Stored | None:
        """The newest record of node ``name``: its last queued transition's, else the last
        written one until the view has it, else the view's."""
        ahead = self._ahead.get(name)
        if ahead is not None:
            return ahead[0]
        return self._base(keys.NODES + name[len(NAME_PREFIX) :], name)

    def has_queued(self, name: str) -> bool:
        return name in self._ahead

    def __len__(self) -> int:
        """Transitions not written yet (queued or being written)."""
        return len(self._queue) + self._writing

    def submit(self, name: str, transition: Transition) -> Submitted:
        """Apply ``transition`` to the newest record and queue it (unless it is a no-op).

        Raises:
            AstraError: the transition does not apply (e.g. NotFoundError).
        """
        current = self.current(name)
        result = self._apply(transition, name, current)
        if result is Verdict.NOOP:
            return Submitted(current, None)
        based_on = -1 if name in self._ahead else (current.mod_revision if current else 0)
        preview = Stored.of(result, 0) if isinstance(result, NodeRecord) else None
        item = _Item(name, transition, result, based_on)
        self._queue.append((item, time.monotonic()))
        queued = self._ahead.get(name, (None, 0))[1]
        self._ahead[name] = (preview, queued + 1)
        self._idle.clear()
        self._wake.set()
        return Submitted(preview, item.future)

    async def settle(self, submitted: Submitted) -> Outcome:
        """Wait for a submitted transition to be written, unless the store is away (then,
        or if it goes away meanwhile, the transition is held)."""
        if submitted.future is None:
            return Written(submitted.preview, 0)
        if not self.healthy and not submitted.future.done():
            return Held.HELD
        return await asyncio.shield(submitted.future)

    async def flush(self, timeout: float) -> bool:
        """Wait until the queue is empty; ``False`` if it is not within ``timeout``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- the writer ------------------------------------------------------------------

    async def run(self) -> None:
        """Write the queue forever, in order."""
        delay = 0.05
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queue) < MAX_BATCH:
                await asyncio.sleep(GROUP_COMMIT_SECONDS)  # let concurrent callers join the batch
            try:
                await self._write_batch()
                delay = 0.05
            except UnavailableError as exc:
                if self.healthy:
                    _log.warning(
                        "store unavailable (%s): holding %d transitions", exc, len(self._queue)
                    )
                self._hold()
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)

    def _take(self) -> list[tuple[_Item, float]]:
        """The queue's head: up to MAX_BATCH transitions of distinct nodes, in order."""
        batch: list[tuple[_Item, float]] = []
        names: set[str] = set()
        while self._queue and len(batch) < MAX_BATCH and self._queue[0][0].name not in names:
            entry = self._queue.popleft()
            names.add(entry[0].name)
            batch.append(entry)
        return batch

    async def _write_batch(self) -> None:
        batch = self._take()
        self._writing = len(batch)
        try:
            await self._write(batch)
        finally:
            self._writing = 0

    async def _write(self, batch: list[tuple[_Item, float]]) -> None:
        planned: list[tuple[_Item, float, NodeRecord | None, list[str], bool]] = []
        compares: list[Compare] = []
        ops: list[Op] = []
        for item, queued_at in batch:
            try:
                plan = self._plan(item, compares, ops)
            except AstraError as exc:
                self._finish(item, exc)
                continue
            if plan is None:
                continue
            planned.append((item, queued_at, *plan))
        if not planned:
            return
        reads = [Get(key) for *_, touched, _ in planned for key in touched]
        try:
            result = await self._store.txn(compares, ops, reads)
        except UnavailableError:
            self._queue.extendleft((item, queued_at) for item, queued_at, *_ in reversed(planned))
            raise
        except StoreError as exc:  # a limit: a bug here, never worth retrying
            _log.error("writing %d node transitions failed", len(planned), exc_info=exc)
            for item, *_ in planned:
                self._finish(item, exc)
            return
        if not result.succeeded:
            # Someone else changed some of these records: learn them, redo the batch.
            for read, found in zip(reads, result.results, strict=True):
                assert isinstance(found, RangeResult)
                self._learn_read(read.key, found.kvs[0] if found.kvs else None, result.revision)
            self._queue.extendleft((item, queued_at) for item, queued_at, *_ in reversed(planned))
            return
        self.healthy = True
        now = time.monotonic()
        for item, queued_at, record, touched, alloc_deleted in planned:
            stored = None if record is None else Stored.of(record, result.revision)
            self._learn(
                touched[0],
                stored.data if stored else None,
                result.revision if stored else 0,
                result.revision,
            )
            if alloc_deleted:
                self._learn(touched[1], None, 0, result.revision)
            if self._on_written is not None:
                self._on_written(item.transition, now - queued_at)
            self._finish(item, Written(stored, result.revision))
        self._prune_known()

    def _plan(
        self, item: _Item, compares: list[Compare], ops: list[Op]
    ) -> tuple[NodeRecord | None, list[str], bool] | None:
        """Add the compares and ops of ``item`` against the store as last known.

        Returns:
            The record to write (``None``: delete), the keys compared (the node's
            first) and whether the node's alloc is deleted; ``None`` when the
            transition turned out a no-op (then it is finished here).
        """
        node_id = item.name[len(NAME_PREFIX) :]
        node_key = keys.node(node_id)
        current = self._base(node_key, item.name)
        mod_revision = current.mod_revision if current else 0
        # Unchanged since submitted: the transition's result is still what it was.
        result = (
            item.result
            if item.based_on == mod_revision
            else self._apply(item.transition, item.name, current)
        )
        if result is Verdict.NOOP:
            self._finish(item, Written(current, 0))
            return None
        compares.append(Compare.mod_revision(node_key) == mod_revision)
        if isinstance(result, NodeRecord):
            ops.append(Put(node_key, result.to_bytes()))
            return result, [node_key], False
        ops.append(Delete(node_key))
        # The node's alloc goes with it when it holds nothing; one that still holds
        # replicas is the schedulers' to empty (they re-place them) and delete.
        alloc_key = keys.alloc(node_id)
        alloc_mod, alloc_empty = self._alloc_base(alloc_key, item.name)
        compares.append(Compare.mod_revision(alloc_key) == alloc_mod)
        alloc_deleted = bool(alloc_mod and alloc_empty)
        if alloc_deleted:
            ops.append(Delete(alloc_key))
        return None, [node_key, alloc_key], alloc_deleted

    @staticmethod
    def _apply(transition: Transition, name: str, current: Stored | None) -> Result:
        return transition.apply(name[len(NAME_PREFIX) :], current, time.time())

    def _base(self, key: str, name: str) -> Stored | None:
        known = self._known_for(self._known, key, self._view.revision)
        if known is None:
            return self._view.stored(name)
        data, mod_revision = known
        return None if data is None else Stored(data, mod_revision)

    def _alloc_base(self, key: str, name: str) -> tuple[int, bool]:
        """The node's alloc: (mod_revision, 0 when absent; whether it holds no replica)."""
        known = self._known_for(self._known_allocs, key, self._view.alloc_revision)
        if known is not None:
            value, mod_revision = known
            return mod_revision, value is None or not AllocRecord.from_bytes(value).replicas
        alloc = self._view.allocs.get(name)
        return (0, True) if alloc is None else (alloc.mod_revision, alloc.replicas == 0)

    @staticmethod
    def _known_for(
        known: dict[str, tuple[bytes | None, int, int]], key: str, view_revision: int
    ) -> tuple[bytes | None, int] | None:
        """What this writer knows of ``key`` if the view has not caught up with it yet."""
        found = known.get(key)
        if found is None:
            return None
        if view_revision >= found[2]:
            del known[key]
            return None
        return found[0], found[1]

    def _learn_read(self, key: str, kv: KeyValue | None, revision: int) -> None:
        """Know what the failure branch of a transaction read at ``revision``."""
        if kv is None:
            self._learn(key, None, 0, revision)
        elif key.startswith(keys.ALLOC):
            self._learn(key, kv.value, kv.mod_revision, revision)
        else:
            self._learn(
                key, Stored.decode(kv.value, kv.mod_revision).data, kv.mod_revision, revision
            )

    def _learn(self, key: str, value: bytes | None, mod_revision: int, revision: int) -> None:
        """Know ``key`` as of ``revision``; entries stay in revision order (re-inserted)."""
        known = self._known_allocs if key.startswith(keys.ALLOC) else self._known
        known.pop(key, None)
        known[key] = (value, mod_revision, revision)

    def _prune_known(self) -> None:
        """Forget what the watches have caught up with, oldest first: O(forgotten)."""
        for known, caught_up in (
            (self._known, self._view.revision),
            (self._known_allocs, self._view.alloc_revision),
        ):
            while known:
                key, (_, _, revision) = next(iter(known.items()))
                if revision > caught_up:
                    break
                del known[key]

    def _finish(self, item: _Item, outcome: Outcome | BaseException) -> None:
        preview, queued = self._ahead.get(item.name, (None, 0))
        if queued <= 1:
            self._ahead.pop(item.name, None)
        else:
            self._ahead[item.name] = (preview, queued - 1)
        if item.future.done():
            if isinstance(outcome, BaseException):
                _log.warning(
                    "transition %s of %s failed: %s", item.transition.kind, item.name, outcome
                )
            return
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
            item.future.exception()  # retrieved: a caller that stopped waiting is not an error
        else:
            item.future.set_result(outcome)

    def _hold(self) -> None:
        """The store is away: tell every waiting caller its transition is held."""
        self.healthy = False
        for item, _ in self._queue:
            if not item.future.done():
                item.future.set_result(Held.HELD)
