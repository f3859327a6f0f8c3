"""Failure detection with deadline buckets, re-checked lazily.

A heartbeat only moves its node's deadline forward (one float store, O(1)); it never
touches the buckets. Each node sits in the bucket of the deadline it had when it was last
scheduled. When a bucket's time passes, each of its nodes is checked once: still silent,
it is dead; heard from since, it moves to the bucket of its current deadline. A node is
re-bucketed at most once per ``dead_after`` however often it heartbeats, so the work per
tick is the nodes whose old deadline fell in that tick (about ``n * tick / dead_after``),
never a scan of the fleet. A node is found dead at most one tick after its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class Clock:
    """Monotonic seconds that leave out the times this process was stalled.

    A detector that could not run on time (the event loop busy, the process not
    scheduled, a long pause) could not read the heartbeats that arrived meanwhile either;
    blaming nodes for that silence would declare healthy nodes dead. So whenever the
    detector's tick is late by more than ``tolerance``, the excess is taken off this
    clock, which deadlines are set and checked in.
    """

    def __init__(self, tolerance: float) -> None:
        self._tolerance = tolerance
        #: Seconds left out so far.
        self.stalled = 0.0

    def now(self) -> float:
        return time.monotonic() - self.stalled

    def late(self, seconds: float) -> None:
        """The detector ran ``seconds`` later than it meant to."""
        if seconds > self._tolerance:
            self.stalled += seconds - self._tolerance
            _log.warning("this process stalled for %.2fs: deadlines move out by as much", seconds)

    def to_wall(self, instant: float) -> float:
        """The wall-clock time of ``instant`` (approximately, across stalls)."""
        return instant + time.time() - self.now()


class Watched(Protocol):
    """What the detector needs of a node: a deadline, and the bucket it sits in."""

    deadline: float
    #: The bucket the node is scheduled in (the list itself: a pointer per node, no
    #: number object); ``None`` when it is not watched.
    slot: list[Any] | None


class DeadlineWheel:
    """Nodes bucketed by deadline, ``resolution`` seconds per bucket, from time ``start``."""

    def __init__(self, resolution: float, *, start: float) -> None:
        self._resolution = resolution
        self._buckets: dict[int, list[Any]] = {}
        self._next = math.floor(start / resolution)

    def schedule(self, node: Watched) -> None:
        """Watch ``node`` until its current deadline. O(1)."""
        slot = max(math.floor(node.deadline / self._resolution) + 1, self._next)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = []
        bucket.append(node)
        node.slot = bucket

    @staticmethod
    def unschedule(node: Watched) -> None:
        """Stop watching ``node``. O(1): its bucket skips it when its time comes."""
        node.slot = None

    def due(self, now: float) -> Iterator[Watched]:
        """The scheduled nodes whose bucket's time has passed by ``now``; each leaves the
        wheel (schedule it again to keep watching it)."""
        last = math.floor(now / self._resolution)
        while self._next <= last:
            slot = self._next
            self._next += 1
            bucket = self._buckets.pop(slot, None)
            for node in bucket or ():
                if node.slot is bucket:
                    node.slot = None
                    yield node

    def __len__(self) -> int:
        """Entries in the buckets, including skipped ones not yet reached."""
        return sum(map(len, self._buckets.values()))


class FailureDetector:
    """Calls ``on_dead(node)`` for each watched node whose deadline has passed.

    Args:
        wheel: the nodes watched, deadlines in ``clock``'s time.
        on_dead: called once per silent node; the node is not watched afterwards.
        clock: told how late each tick runs.
        tick: how often to look, in seconds (detection is at most this late).
    """

    def __init__(
        self, wheel: DeadlineWheel, on_dead: Callable[[Watched], None], *, clock: Clock, tick: float
    ) -> None:
        self._wheel = wheel
        self._on_dead = on_dead
        self._clock = clock
        self._tick = tick

    def check(self, now: float) -> int:
        """Handle every bucket due by ``now``; returns how many nodes were found dead."""
        dead = 0
        for node in self._wheel.due(now):
            if node.deadline <= now:
                dead += 1
                self._on_dead(node)
            else:
                self._wheel.schedule(node)
        return dead

    async def run(self) -> None:
        """Check every tick, forever."""
        expected = time.monotonic() + self._tick
        while True:
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            now = time.monotonic()
            self._clock.late(now - expected)
            expected = now + self._tick
            self.check(self._clock.now())
