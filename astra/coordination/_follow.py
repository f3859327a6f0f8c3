"""Following a store prefix: the one watch loop, and a :class:`Follower` of every key.

:func:`follow_prefix` is the loop every view of the store runs: the watch's events
from a revision on, and a fresh read of the prefix whenever the watch falls behind a
compaction. A :class:`Follower` builds on it to report each key that changed to its
listener, once per change, in revision order: with its new :class:`KeyValue`, or
``None`` when it was deleted. Across a compaction it reports exactly the keys that
differ from what it knew, so listeners never miss a change nor see a stale one. Views
that keep their own compact state (the Resource service's cluster view, the schedulers'
fleet view) call :func:`follow_prefix` directly and reconcile the fresh read themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from astra.store import CompactedError, Event, EventType, KeyValue, RangeResult, Store

_log = logging.getLogger(__name__)

#: Called with a key and its new value (``None``: deleted).
Listener = Callable[[str, KeyValue | None], None]


async def follow_prefix(
    store: Store,
    prefix: str,
    start: int,
    apply: Callable[[list[Event]], None],
    reload: Callable[[RangeResult], None],
) -> None:
    """Call ``apply`` with each batch of events under ``prefix`` after revision ``start``,
    until the watch ends. When the watch falls behind a compaction, ``reload`` gets a
    fresh read of the whole prefix, and the watch goes on from that read's revision.
    """
    while True:
        try:
            async for events in store.watch(prefix, start_revision=start + 1):
                apply(events)
                start = events[-1].kv.mod_revision
            return
        except CompactedError as exc:
            _log.warning("following %s fell behind compaction (%s): re-reading it", prefix, exc)
            result = await store.range(prefix)
            reload(result)
            start = result.revision


class Follower:
    """Follows ``prefix`` for ``listener``; see the module's documentation.

    Args:
        store: the store.
        prefix: the keys to follow.
        listener: told about every change.
        mirror: keep every key's value in :attr:`entries` (otherwise only its
            ``mod_revision`` is kept, to find what changed across a compaction).
    """

    def __init__(
        self, store: Store, prefix: str, listener: Listener, *, mirror: bool = True
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._listener = listener
        self._mirror = mirror
        #: Every key's value (with ``mirror``).
        self.entries: dict[str, KeyValue] = {}
        self._revisions: dict[str, int] = {}
        #: The store revision every change up to which has been reported.
        self.revision = 0
        self._advanced = asyncio.Event()

    async def load(self) -> int:
        """Read the prefix, report every key in it and return the revision read at."""
        result = await self._store.range(self._prefix)
        self._reconcile(result)
        return result.revision

    async def follow(self) -> None:
        """Report changes forever, from the revision after the last one reported."""
        await follow_prefix(self._store, self._prefix, self.revision, self._events, self._reconcile)

    async def caught_up(self, revision: int, timeout: float) -> bool:
        """Wait until every change up to ``revision`` has been reported, at most
        ``timeout`` seconds; returns whether it has."""
        try:
            async with asyncio.timeout(timeout):
                while self.revision < revision:
                    self._advanced.clear()
                    await self._advanced.wait()
        except TimeoutError:
            return False
        return True

    def _events(self, events: list[Event]) -> None:
        for event in events:
            kv = event.kv
            self._apply(kv.key, kv if event.type is EventType.PUT else None)
        self._advance(events[-1].kv.mod_revision)

    def _reconcile(self, result: RangeResult) -> None:
        """Report the keys whose value differs from ``result``, then its revision."""
        present = {kv.key: kv for kv in result.kvs}
        for key in [key for key in self._revisions if key not in present]:
            self._apply(key, None)
        for key, kv in present.items():
            if self._revisions.get(key) != kv.mod_revision:
                self._apply(key, kv)
        self._advance(result.revision)

    def _apply(self, key: str, kv: KeyValue | None) -> None:
        if kv is None:
            self._revisions.pop(key, None)
            self.entries.pop(key, None)
        else:
            self._revisions[key] = kv.mod_revision
            if self._mirror:
                self.entries[key] = kv
        self._listener(key, kv)

    def _advance(self, revision: int) -> None:
        if revision > self.revision:
            self.revision = revision
            self._advanced.set()
