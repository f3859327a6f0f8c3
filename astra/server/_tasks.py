"""Background tasks owned by one object: started by name, failures logged, all awaited on close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Tasks:
    """A set of named background tasks with one owner, in the spirit of ``asyncio.TaskGroup``
    but long-lived: a task that fails is logged with its traceback (never lost) and the
    others keep running; :meth:`close` cancels whatever is left and awaits it all.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name``, owned until it ends or :meth:`close`.

        Raises:
            RuntimeError: the group is closed (``coro`` is closed, never run).
        """
        if self._closed:
            coro.close()
            raise RuntimeError(f"cannot spawn {name!r}: the task group is closed")
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.error("background task %r failed", task.get_name(), exc_info=error)

    async def cancel(self, task: asyncio.Task[Any]) -> None:
        """Cancel ``task`` (one of this group's) and wait until it has finished."""
        task.cancel()
        await asyncio.wait((task,))

    def __len__(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every running task and wait until all have finished. Idempotent."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
