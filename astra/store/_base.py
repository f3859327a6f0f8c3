"""The store interface every backend implements, and the checks they share.

Semantics are etcd v3's. A backend subclasses :class:`Store` and implements the
``_``-prefixed primitives; request validation, the limits and watch resumption
live here once so that backends cannot disagree on them.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Self

from astra.store._errors import (
    EmptyKeyError,
    TooManyOpsError,
    UnavailableError,
    ValueTooLargeError,
)
from astra.store._types import (
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    Compare,
    Delete,
    DeleteResult,
    Event,
    KeyValue,
    Lease,
    Op,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
)

_log = logging.getLogger(__name__)


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with ``prefix`` (etcd's range_end)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw).decode(errors="surrogateescape")
        raw.pop()
    return "\0"


def check_key(key: str) -> None:
    if not key:
        raise EmptyKeyError()


def check_txn(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> None:
    """Validate a transaction against the limits before it reaches a backend."""
    for branch in (compares, success, failure):
        if len(branch) > MAX_TXN_OPS:
            raise TooManyOpsError(len(branch), MAX_TXN_OPS)
    size = 0  # every key is checked inline: this runs for each item of every transaction
    for compare in compares:
        key, operand = compare._key, compare._operand
        if not key:
            raise EmptyKeyError()
        size += len(key) + (len(operand) if isinstance(operand, bytes) else 8)
    for branch in (success, failure):
        for op in branch:
            key = op._key
            if not key:
                raise EmptyKeyError()
            size += len(key) + (len(op._value) if isinstance(op, Put) else 0)
    if size > MAX_REQUEST_BYTES:
        raise ValueTooLargeError(size, MAX_REQUEST_BYTES)


class Store(abc.ABC):
    """An async key-value store with etcd v3 semantics.

    Every method may raise :class:`UnavailableError` when the backend cannot be
    reached, and :class:`LimitError` for a request over a limit (empty key, more than
    128 operations in a transaction branch, more than 1.5 MiB in one request).
    """

    # -- reads ---------------------------------------------------------------------

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        """The key at ``revision`` (0: the latest), or ``None`` when absent."""
        check_key(key)
        result = await self._range(key, prefix=False, limit=1, revision=revision)
        return result.kvs[0] if result.kvs else None

    async def range(self, prefix: str, *, limit: int = 0, revision: int = 0) -> RangeResult:
        """Keys starting with ``prefix`` in key order, at most ``limit`` (0: all),
        read at ``revision`` (0: the latest). Raises CompactedError for a compacted
        revision. ``more`` tells whether keys beyond the limit exist; page by asking
        again from the last key plus ``"\\0"``."""
        check_key(prefix)
        if limit < 0:
            raise ValueError("limit must be >= 0")
        return await self._range(prefix, prefix=True, limit=limit, revision=revision)

    # -- writes --------------------------------------------------------------------

    async def put(
        self, key: str, value: bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        """Write ``value``; returns the new revision and the previous value if asked."""
        result = await self.txn((), (Put(key, value, lease),))
        put_result = result.results[0]
        assert isinstance(put_result, PutResult)
        return put_result if prev_kv else PutResult(put_result.revision)

    async def delete(self, key: str, *, prefix: bool = False) -> DeleteResult:
        """Delete ``key`` (or every key under it); returns how many went and their values."""
        result = await self.txn((), (Delete(key, prefix),))
        delete_result = result.results[0]
        assert isinstance(delete_result, DeleteResult)
        return delete_result

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Atomically: if every compare holds run ``success``, else run ``failure``.

        All ops of the branch apply at one new revision (none if the branch only
        reads). Results come in op order: PutResult (with ``prev``), DeleteResult
        (with ``prev``), RangeResult for Get.
        """
        check_txn(compares, success, failure)
        # Drop the caller's sequences before waiting: when the caller keeps no reference,
        # the ops are freed as soon as the backend is done with its copies, instead of
        # staying alive (and tracked by the garbage collector) until the commit.
        pending = self._txn(list(compares), list(success), list(failure))
        del compares, success, failure
        return await pending

    # -- leases --------------------------------------------------------------------

    @abc.abstractmethod
    async def lease_grant(self, ttl: int) -> Lease:
        """A new lease that expires ``ttl`` seconds from now unless kept alive."""

    @abc.abstractmethod
    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh a lease to its full TTL; returns the TTL. LeaseNotFoundError if gone."""

    @abc.abstractmethod
    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke a lease now, deleting its keys in one revision. Unknown ids are ignored."""

    # -- watch ---------------------------------------------------------------------

    async def watch(self, prefix: str, *, start_revision: int = 0) -> AsyncIterator[list[Event]]:
        """Changes under ``prefix`` from ``start_revision`` (0: from the next revision).

        Yields lists of events in revision order; a revision is never split across two
        lists. A lost connection is resumed transparently from the last delivered
        revision plus one, so no event is missed or repeated. Raises CompactedError
        when the resume point has been compacted: re-read and watch again.
        """
        check_key(prefix)
        # Pin "from now" to a revision, so a reconnect cannot skip what happened meanwhile.
        next_revision = start_revision or await self.current_revision() + 1
        delay = 0.05
        while True:
            try:
                async with contextlib.aclosing(self._watch(prefix, next_revision)) as session:
                    async for events in session:
                        if events:
                            next_revision = events[-1].kv.mod_revision + 1
                            delay = 0.05
                            yield events
                return
            except UnavailableError as exc:
                _log.warning(
                    "watch on %r lost (%s); resuming at revision %d", prefix, exc, next_revision
                )
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)

    # -- maintenance ---------------------------------------------------------------

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history before ``revision``: reads and watches before it raise CompactedError."""

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The store's latest revision."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- backend primitives --------------------------------------------------------

    @abc.abstractmethod
    async def _range(self, key: str, *, prefix: bool, limit: int, revision: int) -> RangeResult:
        """Read one key or a prefix; ``revision`` 0 is the latest."""

    @abc.abstractmethod
    async def _txn(
        self, compares: list[Compare], success: list[Op], failure: list[Op]
    ) -> TxnResult:
        """Run a validated transaction atomically."""

    @abc.abstractmethod
    def _watch(self, prefix: str, start_revision: int) -> AsyncGenerator[list[Event], None]:
        """One watch session; raises UnavailableError when the connection is lost."""


__all__ = ["Store", "check_key", "check_txn", "prefix_end"]
