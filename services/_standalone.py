"""One service served in a process of its own (``python -m services.X``), outside ``astra up``."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from astra import telemetry
from astra._memory import gc_for_serving
from astra.config import Settings
from astra.server import Server
from astra.store import Store, open_store

_log = logging.getLogger(__name__)


class Standalone(AbstractAsyncContextManager[Any], Protocol):
    """A service: served on a server, started and stopped as a context."""

    def add_to(self, server: Server) -> None: ...


S = TypeVar("S", bound=Standalone)


async def serve_standalone(
    settings: Settings, build: Callable[[Store], S], *, describe: Callable[[S], str]
) -> None:
    """Serve the service ``build`` makes from the store until SIGINT or SIGTERM.

    Telemetry is configured and ``settings.store_url`` opened first; the service starts
    before the server on ``settings.api_address`` and stops after it (in-flight calls get
    ``settings.shutdown_grace``); then the store closes and telemetry is flushed.

    Args:
        settings: the process's settings.
        build: the service, from the opened store.
        describe: the service as the "serving on" log line names it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    telemetry.configure(settings.otel)
    store = await open_store(settings.store_url)
    server = Server(settings.api_address, grace=settings.shutdown_grace)
    service = build(store)
    service.add_to(server)
    try:
        async with service, server:
            _log.info("%s serving on %s", describe(service), server.address)
            with gc_for_serving():
                await stop.wait()
    finally:
        await store.close()
        telemetry.shutdown()
