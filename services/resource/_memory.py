"""Giving freed memory back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only
    return None if trim is None else trim  # type: ignore[no-any-return]


def release_free_memory() -> None:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim``; elsewhere a no-op).

    Big transient buffers (a snapshot of the whole fleet is tens of megabytes of protobuf)
    are freed to the C allocator, which keeps them mapped; this hands them back. It walks
    the heap: call it after rare big operations, never per request.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
