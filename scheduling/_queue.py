"""A work queue of names, for level-triggered reconciling.

An event only names what to look at (``queue.add("app-7")``); a worker takes the name,
reconciles from the current state, and calls :meth:`WorkQueue.done`. A name is queued
at most once however many events name it, and never handed to two workers at once: a
name added while a worker has it is queued again when the worker is done.

With a ``key``, names come out by it, smallest first, and first in first out among
equal keys: the App service orders apps by priority, then age, so that when capacity is
scarce the most important apps are reconciled, and claim it, first. A name's key is
read when it is queued.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any


class WorkQueue:
    """Deduplicated names to reconcile, first in first out, or by ``key`` when given.

    All methods are O(1) without a key, O(log n) with one.

    Args:
        key: orders the queued names, smallest first (e.g. ``(-priority, age)``).
    """

    def __init__(self, *, key: Callable[[str], Any] | None = None) -> None:
        self._key = key
        self._queue: deque[str] = deque()
        self._heap: list[tuple[Any, int, str]] = []
        self._order = itertools.count()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._ready = asyncio.Event()

    def add(self, name: str) -> None:
        """Ask for ``name`` to be reconciled (again)."""
        if name in self._queued:
            return
        self._queued.add(name)
        if name not in self._active:
            self._push(name)

    def try_get(self) -> str | None:
        """The next name, now handed to the caller until :meth:`done`; ``None`` if none."""
        if self._key is None:
            if not self._queue:
                return None
            name = self._queue.popleft()
        else:
            if not self._heap:
                return None
            name = heapq.heappop(self._heap)[2]
        self._queued.discard(name)
        self._active.add(name)
        if not len(self):
            self._ready.clear()
        return name

    async def get(self) -> str:
        """The next name, waiting for one."""
        while (name := self.try_get()) is None:
            await self._ready.wait()
        return name

    def done(self, name: str) -> None:
        """The caller finished with ``name``; it is queued again if added meanwhile."""
        self._active.discard(name)
        if name in self._queued:
            self._push(name)

    def _push(self, name: str) -> None:
        if self._key is None:
            self._queue.append(name)
        else:
            heapq.heappush(self._heap, (self._key(name), next(self._order), name))
        self._ready.set()

    def __len__(self) -> int:
        """Names waiting (not those being worked on)."""
        return len(self._heap) if self._key is not None else len(self._queue)

    @property
    def active(self) -> int:
        """Names handed out and not done yet."""
        return len(self._active)


__all__ = ["WorkQueue"]
