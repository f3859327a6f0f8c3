"""What the parts of one process share when a program composes them: the :class:`Runtime`.

A service, the gateway or a local agent is a :data:`Component`: an async context manager
factory that takes the runtime, starts the part on entry and stops it on exit. Programs
(``astra up``) build the runtime and enter their components in order; components only
see this protocol, so the library and the services never import the programs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from astra.config import Settings
from astra.server import Server
from astra.store import Store

__all__ = ["Component", "Runtime", "api_address"]


class Runtime(Protocol):
    """The settings, the open store and the gRPC API server of one process."""

    #: The process's settings.
    settings: Settings
    #: The open store (from the ``store`` component on).
    store: Store
    #: The gRPC API server; register servicers before it starts listening.
    api: Server
    #: Where the gateway listens, once the gateway component has started it.
    gateway_address: str | None


#: A part of the process, started by entering it with the runtime.
Component = Callable[[Runtime], AbstractAsyncContextManager[None]]


async def api_address(server: Server, *, poll: float = 0.05) -> str:
    """The address ``server`` listens on, once it has started (components start their
    work before the API server listens, and its port may be chosen at start)."""
    while True:
        try:
            return server.address
        except RuntimeError:
            await asyncio.sleep(poll)
