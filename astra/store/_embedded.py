"""EmbeddedStore: etcd's semantics in-process, in memory or persisted to a SQLite file.

How it works:

- **One event loop owns it.** No call awaits between reading the state and changing it,
  so every transaction is atomic and the history is serial without any lock.
- **A write** is prepared against the in-memory keyspace (:mod:`astra.store._mvcc`),
  committed to SQLite in one SQLite transaction (:mod:`astra.store._sqlite`), and only
  then applied in memory and shown to watchers. The commit runs on the loop's thread
  before the call returns: with WAL and ``synchronous=NORMAL`` it is a ``write()`` into
  the OS's cache, tens of microseconds, and an acknowledged write survives the process
  being killed. A failed commit changes nothing (UnavailableError).
- **Watches** pull from the shared history by revision and sleep on one notification,
  so nothing is queued per watcher: a slow watcher lags behind and, once its revision
  is compacted, gets CompactedError, like an etcd watcher that falls too far behind.
- **Compaction** is automatic: the store keeps the last ``history`` revisions (and up
  to 64 more, so that compaction happens in small steps). Memory then holds the live
  keys plus that window of events, and the file as many rows.
- **Leases** expire from an owned task that sleeps until the next deadline; expiry and
  revocation delete the lease's keys in one revision. Grants are persisted, keepalives
  are not: after a reopen every lease restarts its full TTL, as etcd does after a restart.
  TTLs under 2 seconds are raised to 2, etcd's minimum.
- **Closing** stops the lease task, closes the file and ends every watch with
  StoreError("closed"); later calls raise it too. A reopened store is a new object:
  watch it again from the last revision seen plus one to continue without a gap or a
  repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
from collections.abc import AsyncIterator

from astra.store._base import Store
from astra.store._errors import CompactedError, LeaseNotFoundError, StoreError, UnavailableError
from astra.store._mvcc import Keyspace, LeaseEntry, Prepared
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
#: Seconds before retrying to revoke an expired lease that could not be written.
_REVOKE_RETRY = 1.0


class EmbeddedStore(Store):
    """The store in this process: see the module's documentation. Open it with :meth:`open`."""

    def __init__(self, keyspace: Keyspace, journal: Journal | None, *, history: int) -> None:
        self._keyspace = keyspace
        self._journal = journal
        self._history = history
        self._closed = False
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
                ``"FULL"`` also survives power loss (one fsync per write).

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
        await self._turn()
        return self._keyspace.range(key, prefix=prefix, limit=limit, revision=revision)

    async def _txn(
        self, compares: list[Compare], success: list[Op], failure: list[Op]
    ) -> TxnResult:
        await self._turn()
        prepared = self._keyspace.prepare(compares, success, failure)
        if prepared.events:
            self._commit(prepared)
        return TxnResult(prepared.succeeded, prepared.revision, prepared.results)

    def _commit(self, prepared: Prepared, *, revoked: int = 0) -> None:
        """Persist, then apply, a prepared write (and the lease it revokes); compact
        the oldest history when the window is full."""
        keyspace = self._keyspace
        if self._journal is not None:
            self._journal.write(prepared.events, revoked=(revoked,) if revoked else ())
        keyspace.apply(prepared)
        if revoked:
            del keyspace.leases[revoked]
            self._deadlines.discard(revoked)
        if not prepared.events:
            return
        if self._written is not None:
            self._written.set()
            self._written = None
        oldest = prepared.revision - self._history + 1
        if oldest - keyspace.first >= _COMPACT_EVERY:
            try:
                self._compact(oldest)
            except UnavailableError:  # the write itself is committed: compact next time
                _log.warning("automatic compaction to revision %d failed", oldest, exc_info=True)

    async def current_revision(self) -> int:
        await self._turn()
        return self._keyspace.revision

    # -- compaction ----------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision``.

        Raises:
            CompactedError: the store is already compacted up to or past ``revision``.
            ValueError: ``revision`` is in the future.
        """
        await self._turn()
        keyspace = self._keyspace
        if revision <= keyspace.compacted:
            raise CompactedError(revision, keyspace.compacted)
        if revision > keyspace.revision:
            raise ValueError(
                f"revision {revision} is in the future (the store is at {keyspace.revision})"
            )
        self._compact(revision)

    def _compact(self, revision: int) -> None:
        keyspace = self._keyspace
        if self._journal is not None:
            self._journal.write(obsolete=keyspace.obsolete_rows(revision), compacted=revision)
        keyspace.compact(revision)

    # -- leases --------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> Lease:
        await self._turn()
        ttl = max(ttl, MIN_LEASE_TTL)
        leases = self._keyspace.leases
        lease_id = 0
        while not lease_id or lease_id in leases:
            lease_id = secrets.randbits(63)
        if self._journal is not None:
            self._journal.write(granted=((lease_id, ttl),))
        leases[lease_id] = LeaseEntry(ttl)
        self._deadlines.set(lease_id, ttl)
        return Lease(lease_id, ttl)

    async def lease_keepalive(self, lease_id: int) -> int:
        await self._turn()
        lease = self._keyspace.leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(lease_id)
        self._deadlines.set(lease_id, lease.ttl)
        return lease.ttl

    async def lease_revoke(self, lease_id: int) -> None:
        await self._turn()
        self._revoke(lease_id)

    def _revoke(self, lease_id: int) -> None:
        if lease_id in self._keyspace.leases:
            self._commit(self._keyspace.prepare_revoke(lease_id), revoked=lease_id)

    async def _expire_leases(self) -> None:
        """Revoke every lease at its deadline, until cancelled by :meth:`close`."""
        while True:
            for lease_id in self._deadlines.expired():
                try:
                    self._revoke(lease_id)
                except UnavailableError:
                    _log.warning(
                        "cannot revoke expired lease %#x; retrying", lease_id, exc_info=True
                    )
                    self._deadlines.set(lease_id, _REVOKE_RETRY)
            await self._deadlines.wait()

    # -- watch ---------------------------------------------------------------------------

    async def _watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
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
            if revision > keyspace.revision:
                if self._written is None:
                    self._written = asyncio.Event()
                await self._written.wait()
                continue
            events, revision = keyspace.events(prefix, revision, _WATCH_STEP)
            if events:
                yield events
            else:
                await asyncio.sleep(0)  # a stretch with nothing for this watch: let others run

    # -- lifecycle -----------------------------------------------------------------------

    async def _turn(self) -> None:
        """Let other tasks run first, as a call to a server would: a loop of calls
        never starves the event loop."""
        await asyncio.sleep(0)
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the embedded store is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._expiry.cancel()
        await asyncio.wait([self._expiry])
        if self._written is not None:
            self._written.set()
        if self._journal is not None:
            self._journal.close()


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
