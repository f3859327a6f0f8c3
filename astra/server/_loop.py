"""The event loop AstraRay's processes run on: uvloop where it is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
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
