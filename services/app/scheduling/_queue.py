"""A work queue of names, for level-triggered reconciling.

An event only names what to look at (``queue.add("app-7")``); a worker takes the name,
reconciles from the current state, and calls :meth:`WorkQueue.done`. A name is queued
at most once however many events name it, and never handed to two workers at once: a
name added while a worker has it is queued again when the worker is done.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkQueue:
    """Deduplicated names to reconcile, first in first out. All methods are O(1)."""

    def __init__(self) -> None:
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._ready = asyncio.Event()

    def add(self, name: str) -> None:
        """Ask for ``name`` to be reconciled (again)."""
        if name in self._queued:
            return
        self._queued.add(name)
        if name not in self._active:
            self._queue.append(name)
            self._ready.set()

    def try_get(self) -> str | None:
        """The next name, now handed to the caller until :meth:`done`; ``None`` if none."""
        if not self._queue:
            return None
        name = self._queue.popleft()
        self._queued.discard(name)
        self._active.add(name)
        if not self._queue:
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
            self._queue.append(name)
            self._ready.set()

    def __len__(self) -> int:
        """Names waiting (not those being worked on)."""
        return len(self._queue)

    @property
    def active(self) -> int:
        """Names handed out and not done yet."""
        return len(self._active)


__all__ = ["WorkQueue"]
