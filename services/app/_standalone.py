"""Running one replica of a service on its own, outside ``astra up``.

For a fleet of replicas (each with its own ``--api-address``) and for tests that kill a
replica: settings come from the flags, ``ASTRA_*`` variables and the config file as for
``astra``; the replica stops on SIGINT or SIGTERM, handing its work to the others.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from astra import telemetry
from astra._log import configure_logging
from astra.config import Settings
from astra.server import Server, run
from astra.store import Store, open_store

_log = logging.getLogger(__name__)
#: Flags that are not settings.
_OWN = ("resource_address", "replica_id")


class Replica(AbstractAsyncContextManager["Replica"], Protocol):
    """A service replica: served on a server, started and stopped as a context."""

    replica_id: str

    def add_to(self, server: Server) -> None: ...


#: Builds the replica from the store, the Resource service's address and its id.
Factory = Callable[[Store, Settings, str, str | None], Replica]


def main(prog: str, description: str, factory: Factory, argv: Sequence[str] | None = None) -> None:
    """Parse the flags and serve the replica ``factory`` builds until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--store-url", help="etcd://host:port, sqlite:///path or memory://")
    parser.add_argument("--api-address", help="host:port to serve on")
    parser.add_argument("--resource-address", required=True, help="the Resource service, host:port")
    parser.add_argument(
        "--replica-id", help="unique among the service's replicas (default: random)"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    overrides = {
        name: value for name, value in vars(args).items() if value is not None and name not in _OWN
    }
    settings = Settings.load(overrides=overrides)
    configure_logging(settings.log_level)
    run(_serve(settings, factory, args.resource_address, args.replica_id))


async def _serve(
    settings: Settings, factory: Factory, resource: str, replica_id: str | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    telemetry.configure(settings.otel)
    store = await open_store(settings.store_url)
    server = Server(settings.api_address, grace=settings.shutdown_grace)
    replica = factory(store, settings, resource, replica_id)
    replica.add_to(server)
    try:
        async with replica:
            await server.start()
            _log.info("replica %s serving on %s", replica.replica_id, server.address)
            try:
                await stop.wait()
            finally:
                await server.shutdown()
    finally:
        await store.close()
        telemetry.shutdown()
