"""Giving freed memory back to the operating system, and keeping long-lived objects out of
the garbage collector's way."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable, Iterator


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only


def release_free_memory() -> None:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim``; elsewhere a no-op).

    Big transient buffers (a snapshot of the whole fleet is tens of megabytes of protobuf)
    are freed to the C allocator, which keeps them mapped; this hands them back. It walks
    the heap: call it after rare big operations, never per request.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


#: Allocations between two collections of the young generation while serving
#: (CPython's default is 700).
YOUNG_THRESHOLD = 50_000


@contextlib.contextmanager
def gc_for_serving() -> Iterator[None]:
    """The garbage collector set, until exit, for a process that has started and serves
    (enter it once up: modules, classes, servers and stores live as long as it does):

    - every object alive on entry goes to the permanent generation, which collections
      skip. Full collections walk every tracked object they find: in a started service
      that is some 50,000 objects of the libraries alone, walked every time the young
      objects that outlived two collections (those of in-flight calls) add up to a
      quarter of them, a few times a second under load (bench/store.py shows the
      pauses). Garbage is collected first, so none is kept; frozen
      objects are still freed by reference counting.
    - the young generation is collected every ``YOUNG_THRESHOLD`` allocations instead
      of 700: each collection walks what is young and alive (every request's objects in
      flight), and a busy scheduler allocates fast: 32,000 placements/s in the
      scheduling benchmark instead of 22,000. Cyclic garbage waits a little longer.

    The exit restores the thresholds and gives the frozen objects back to the collector,
    so that those in cycles are freed before the process ends (native ones would be
    reported leaked).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class LongLived:
    """Keeps a growing population of long-lived objects (the Resource service's members,
    an App scheduler's nodes) out of the cyclic garbage collector's scans.

    A full collection walks every tracked object; at 100k members that is a pause of
    tens of milliseconds on an idle core and of several hundred on a loaded one, long
    enough to delay heartbeats and failure detection, or a scheduler's commits. Each
    time the population has grown by a quarter (from ``start``), :func:`gc.freeze`
    moves every object alive into the permanent generation, which collections skip; it
    costs O(1) after a collection of the young generations (milliseconds), so little
    pending garbage is frozen with them.
    Freezes happen O(log n) times as the fleet grows, none below ``start`` members (a
    small heap is quick to scan); a cycle that is garbage at the instant of a freeze is
    kept, so the cost is bounded by that many moments' worth of old pending garbage.
    Frozen objects that are not in a cycle are still freed by reference counting.
    """

    def __init__(self, *, start: int = 10_000, growth: float = 1.25) -> None:
        self._next = start
        self._growth = growth
        #: How many times this froze the heap.
        self.freezes = 0

    def grew_to(self, count: int) -> None:
        """The population is now ``count``; freeze if it grew enough since the last time."""
        if count >= self._next:
            gc.collect(1)
            gc.freeze()
            self.freezes += 1
            self._next = max(self._next + 1, int(count * self._growth))
