"""EmbeddedStore: etcd's semantics in-process, in memory or persisted to a SQLite file.

How it works:

- **One event loop owns it.** No call awaits between reading the state and changing it,
  so every transaction is atomic and the history is serial without any lock.
- **A write** is prepared against the in-memory keyspace (:mod:`astra.store._mvcc`) and
  applied there at once; it is acknowledged only once it is in the file. The writes
  of every task that runs in one turn of the event loop go to SQLite together, in one
  SQLite transaction (:mod:`astra.store._sqlite`) written from a callback queued behind
  them (group commit): concurrent clients share one commit, a lone client pays one loop
  turn. With WAL and ``synchronous=NORMAL`` a commit is a ``write()`` into the OS's
  cache, tens of microseconds, and an acknowledged write survives the process being
  killed at any instant.
- **Nothing unwritten escapes.** A read returns, and a watch delivers, only once every
  revision it saw is in the file; so no caller ever acts on a write that a crash could
  undo. If SQLite fails (disk full, I/O error), the store closes itself: the writes
  waiting for that commit fail, and reopening the file brings back its last state.
- **Watches** pull from the shared history by revision and sleep on one notification,
  so nothing is queued per watcher: a slow watcher lags behind and, once its revision
  is compacted, gets CompactedError, like an etcd watcher that falls too far behind.
- **Compaction** is automatic: the store keeps the last ``history`` revisions (and up
  to 64 more, so that compaction happens in small steps). Memory then holds the live
  keys plus that window of changes, and the file as many records, one row per revision.
- **Leases** expire from an owned task that sleeps until the next deadline; expiry and
  revocation delete the lease's keys in one revision. Grants are persisted, keepalives
  are not: after a reopen every lease restarts its full TTL, as etcd does after a restart.
  TTLs under 2 seconds are raised to 2, etcd's minimum.
- **Every call lets other tasks run** before it returns, as a call to a server would,
  so a loop of calls never starves the event loop.
- **Closing** writes what is pending, stops the lease task, closes the file and ends
  every watch with StoreError("closed"); later calls raise it too. A reopened store is a
  new object: watch it again from the last revision seen plus one to continue without
  a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
from collections.abc import AsyncGenerator

from astra.store._base import Store
from astra.store._errors import CompactedError, LeaseNotFoundError, StoreError
from astra.store._mvcc import Keyspace, LeaseEntry, Prepared, Row
from astra.store._sqlite import Journal, Synchronous
from astra.store._types import Compare, Event, Lease, Op, RangeResult, TxnResult

_log = logging.getLogger(__name__)

#: Revisions kept by default for reads at a revision and watches from one.
DEFAULT_HISTORY = 100_000
#: etcd's minimum lease TTL, in seconds.
MIN_LEASE_TTL = 2
#: Automatic compaction waits until this many revisions are over the window.
_COMPACT_EVERY = 64
#: Revisions a watcher scans in one step before it lets others run.
_WATCH_STEP = 1024


class EmbeddedStore(Store):
    """The store in this process: see the module's documentation. Open it with :meth:`open`."""

    def __init__(self, keyspace: Keyspace, journal: Journal | None, *, history: int) -> None:
        self._keyspace = keyspace
        self._journal = journal
        self._history = history
        self._closed = ""  # why the store is closed, once it is
        #: The changes waiting for the next commit (only with a file).
        self._batch: _Batch | None = None
        #: The latest revision in the file, which watchers may see.
        self._durable = keyspace.revision
        self._written: asyncio.Event | None = None
        self._deadlines = _Deadlines()
        for lease_id, lease in keyspace.leases.items():
            self._deadlines.set(lease_id, lease.ttl)
        self._expiry = asyncio.get_running_loop().create_task(
            self._expire_leases(), name="astra-lease-expiry"
        )

    @classmethod
    async def open(
        cls,
        path: str | None,
        *,
        history: int = DEFAULT_HISTORY,
        synchronous: Synchronous = "NORMAL",
    ) -> EmbeddedStore:
        """Open the store persisted at ``path`` (created if missing), or in memory only.

        Args:
            path: the SQLite file; ``None`` keeps everything in memory.
            history: how many revisions to keep for old reads and watches.
            synchronous: ``"NORMAL"`` survives the process dying at any instant,
                ``"FULL"`` also survives power loss (one fsync per commit).

        Raises:
            UnavailableError: the file is held by another store or cannot be opened.
            StoreError: the file is not a consistent store.
        """
        if history < 1:
            raise ValueError("history must keep at least one revision")
        if path is None:
            return cls(Keyspace(), None, history=history)
        journal, keyspace = await asyncio.to_thread(Journal.open, path, synchronous=synchronous)
        return cls(keyspace, journal, history=history)

    # -- reads and writes --------------------------------------------------------------

    async def _range(self, key: str, *, prefix: bool, limit: int, revision: int) -> RangeResult:
        self._check_open()
        result = self._keyspace.range(key, prefix=prefix, limit=limit, revision=revision)
        await self._settle()
        return result

    async def _txn(
        self, compares: list[Compare], success: list[Op], failure: list[Op]
    ) -> TxnResult:
        self._check_open()
        prepared = self._keyspace.prepare(compares, success, failure)
        del compares, success, failure  # free the ops before the commit (see Store.txn)
        if prepared.changes:
            self._commit(prepared)
        await self._settle()
        return prepared.txn_result()

    def _commit(self, prepared: Prepared, *, revoked: int = 0) -> None:
        """Apply a prepared write (and the lease it revokes) and queue it for the file;
        compact the oldest history when the window is full."""
        keyspace = self._keyspace
        keyspace.apply(prepared)
        if revoked:
            del keyspace.leases[revoked]
            self._deadlines.discard(revoked)
        if self._journal is None:
            self._durable = keyspace.revision
            self._wake_watchers()
        else:
            batch = self._pending()
            if prepared.changes:
                batch.revisions.append((prepared.revision, prepared.records()))
            if revoked:
                batch.revoked.append(revoked)
        oldest = keyspace.revision - self._history + 1
        if oldest - keyspace.first >= _COMPACT_EVERY:
            self._compact(oldest)

    async def current_revision(self) -> int:
        self._check_open()
        revision = self._keyspace.revision
        await self._settle()
        return revision

    # -- the file ------------------------------------------------------------------------

    def _pending(self) -> _Batch:
        """The changes the next commit writes; the first one schedules that commit."""
        if self._batch is None:
            self._batch = _Batch()
            asyncio.get_running_loop().call_soon(self._flush)
        return self._batch

    def _flush(self) -> None:
        """Write the pending changes in one SQLite transaction; show them to watchers."""
        batch, self._batch = self._batch, None
        if batch is None:  # close() wrote it already
            return
        assert self._journal is not None
        try:
            self._journal.write(
                batch.revisions,
                obsolete=batch.obsolete,
                compacted=batch.compacted,
                granted=batch.granted,
                revoked=batch.revoked,
            )
        except Exception as exc:
            _log.exception("the embedded store cannot write %s; closing it", self._journal.path)
            batch.failure = f"the embedded store closed: {exc}"
            self._shut(batch.failure)
        else:
            self._durable = self._keyspace.revision
            self._wake_watchers()

    async def _settle(self) -> None:
        """Let other tasks run, then return once everything the call saw is in the file.

        The commit of a batch is queued when the batch starts, so it runs before any
        task that joined the batch resumes from here: one loop turn per call.

        Raises:
            StoreError: the file could not be written (the store closed).
        """
        batch = self._batch
        await asyncio.sleep(0)
        if batch is None:
            return
        if self._batch is batch:  # an event loop that ran us before the queued commit
            self._flush()
        if batch.failure:
            raise StoreError(batch.failure)

    # -- compaction ----------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision``.

        Raises:
            CompactedError: the store is already compacted up to or past ``revision``.
            ValueError: ``revision`` is in the future.
        """
        self._check_open()
        keyspace = self._keyspace
        if revision <= keyspace.compacted:
            raise CompactedError(revision, keyspace.compacted)
        if revision > keyspace.revision:
            raise ValueError(
                f"revision {revision} is in the future (the store is at {keyspace.revision})"
            )
        self._compact(revision)
        await self._settle()

    def _compact(self, revision: int) -> None:
        keyspace = self._keyspace
        if self._journal is not None:
            batch = self._pending()
            for row, keys in keyspace.obsolete_rows(revision).items():
                batch.obsolete.setdefault(row, []).extend(keys)
            batch.compacted = revision
        keyspace.compact(revision)

    # -- leases --------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> Lease:
        self._check_open()
        ttl = max(ttl, MIN_LEASE_TTL)
        leases = self._keyspace.leases
        lease_id = 0
        while not lease_id or lease_id in leases:
            lease_id = secrets.randbits(63)
        leases[lease_id] = LeaseEntry(ttl)
        self._deadlines.set(lease_id, ttl)
        if self._journal is not None:
            self._pending().granted.append((lease_id, ttl))
        await self._settle()
        return Lease(lease_id, ttl)

    async def lease_keepalive(self, lease_id: int) -> int:
        self._check_open()
        lease = self._keyspace.leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(lease_id)
        self._deadlines.set(lease_id, lease.ttl)
        await self._settle()
        return lease.ttl

    async def lease_revoke(self, lease_id: int) -> None:
        self._check_open()
        self._revoke(lease_id)
        await self._settle()

    def _revoke(self, lease_id: int) -> None:
        if lease_id in self._keyspace.leases:
            self._commit(self._keyspace.prepare_revoke(lease_id), revoked=lease_id)

    async def _expire_leases(self) -> None:
        """Revoke every lease at its deadline, until cancelled by :meth:`close`."""
        while True:
            for lease_id in self._deadlines.expired():
                self._revoke(lease_id)
            await self._deadlines.wait()

    # -- watch ---------------------------------------------------------------------------

    async def _watch(self, prefix: str, start_revision: int) -> AsyncGenerator[list[Event], None]:
        """Events from the history, one list per stretch of up to ``_WATCH_STEP`` revisions.

        Raises:
            CompactedError: the next revision to deliver was compacted.
            StoreError: the store was closed.
        """
        keyspace = self._keyspace
        revision = start_revision
        while True:
            self._check_open()
            if revision < keyspace.compacted:
                raise CompactedError(revision, keyspace.compacted)
            if revision > self._durable:
                if self._written is None:
                    self._written = asyncio.Event()
                await self._written.wait()
                continue
            until = min(self._durable, revision + _WATCH_STEP - 1)
            events = keyspace.events(prefix, revision, until)
            revision = until + 1
            if events:
                yield events
            else:
                await asyncio.sleep(0)  # a stretch with nothing for this watch: let others run

    def _wake_watchers(self) -> None:
        if self._written is not None:
            self._written.set()
            self._written = None

    # -- lifecycle -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(self._closed)

    async def close(self) -> None:
        """Write what is pending, then release the file and end the watches. Idempotent."""
        self._flush()
        self._shut("the embedded store is closed")
        await asyncio.wait([self._expiry])

    def _shut(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = reason
        self._expiry.cancel()
        self._wake_watchers()
        if self._journal is not None:
            self._journal.close()


class _Batch:
    """Changes applied in memory and not yet in the file, for one commit."""

    __slots__ = ("compacted", "failure", "granted", "obsolete", "revisions", "revoked")

    def __init__(self) -> None:
        self.revisions: list[Row] = []
        self.obsolete: dict[int, list[str]] = {}
        self.compacted = 0
        self.granted: list[tuple[int, int]] = []
        self.revoked: list[int] = []
        #: Why the commit failed, once it did.
        self.failure = ""


class _Deadlines:
    """When each lease expires: a min-heap with lazy deletion (a keepalive pushes a new
    entry, stale ones are skipped when they surface), O(log n) per change."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._when: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []
        self._earlier = asyncio.Event()

    def set(self, lease_id: int, seconds: float) -> None:
        when = self._loop.time() + seconds
        self._when[lease_id] = when
        heapq.heappush(self._heap, (when, lease_id))
        if self._heap[0][1] == lease_id:
            self._earlier.set()

    def discard(self, lease_id: int) -> None:
        self._when.pop(lease_id, None)

    def expired(self) -> list[int]:
        """The leases whose deadline has passed; they are forgotten here."""
        now, heap, expired = self._loop.time(), self._heap, []
        while heap and heap[0][0] <= now:
            when, lease_id = heapq.heappop(heap)
            if self._when.get(lease_id) == when:
                del self._when[lease_id]
                expired.append(lease_id)
        return expired

    async def wait(self) -> None:
        """Sleep until the earliest deadline, or until a new one comes before it."""
        self._earlier.clear()
        delay = self._heap[0][0] - self._loop.time() if self._heap else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._earlier.wait()


__all__ = ["DEFAULT_HISTORY", "MIN_LEASE_TTL", "EmbeddedStore"]
