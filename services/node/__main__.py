"""Run the Node service on its own: ``python -m services.node [options]``.

For a deployment with each service in its own process (docker-compose); ``astra up``
runs the service inside the one AstraRay process instead. Settings come from the flags,
``ASTRA_*`` variables and the config file as for ``astra``. Stops on SIGINT or SIGTERM:
open assignment streams end and agents resume them elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from astra import telemetry
from astra._log import configure_logging
from astra.config import Settings
from astra.server import Server, run
from astra.store import open_store
from services.node._servicer import NodeService

_log = logging.getLogger("services.node")


async def serve(settings: Settings) -> None:
    """Serve the Node service on ``settings.api_address`` until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    telemetry.configure(settings.otel)
    store = await open_store(settings.store_url)
    server = Server(settings.api_address, grace=settings.shutdown_grace)
    service = NodeService(store)
    service.register(server)
    try:
        async with service, server:
            _log.info("Node service serving on %s", server.address)
            await stop.wait()
    finally:
        await store.close()
        telemetry.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.node", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--store-url", help="etcd://host:port, sqlite:///path or memory://")
    parser.add_argument("--api-address", help="host:port to serve on")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    settings = Settings.load(overrides=overrides)
    configure_logging(settings.log_level)
    run(serve(settings))


if __name__ == "__main__":
    main()
