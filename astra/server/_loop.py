"""The event loop AstraRay's processes run on (uvloop where it is installed), and the
signals that stop them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where uvloop is available, else asyncio's default one."""
    try:
        import uvloop
    except ImportError:  # Windows, or a minimal install
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh loop from :func:`new_event_loop`.

    The loop factory is passed to :class:`asyncio.Runner` rather than installed as a
    global event loop policy (policies are deprecated since Python 3.14).
    """
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT or SIGTERM sets while the block runs on this loop; the
    handlers are removed when it ends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
