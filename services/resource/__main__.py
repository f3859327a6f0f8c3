"""Run one Resource replica on its own: ``python -m services.resource [options]``.

For a fleet of replicas (each with its own ``--api-address``) and for benchmarks; ``astra
up`` runs the service inside the one AstraRay process instead. Settings come from the
flags, ``ASTRA_*`` variables and the config file as for ``astra``. Stops on SIGINT or
SIGTERM: queued transitions are written and the nodes handed to the other replicas.
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
from services.resource._service import ResourceService

_log = logging.getLogger("services.resource")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.resource", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--store-url", help="etcd://host:port, sqlite:///path or memory://")
    parser.add_argument(
        "--api-address", help="host:port to serve on (a real port: it is advertised)"
    )
    parser.add_argument(
        "--advertise-address", help="host:port agents are redirected to (default: --api-address)"
    )
    parser.add_argument("--replica-id", help="unique among replicas (default: random)")
    parser.add_argument("--heartbeat-interval", help="node heartbeat period, e.g. 1s")
    parser.add_argument("--dead-after", help="silence after which a node is DEAD, e.g. 3s")
    parser.add_argument(
        "--lease-ttl",
        type=int,
        default=3,
        help="seconds a dead replica keeps its nodes (default: 3)",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    return parser.parse_args(argv)


async def serve(
    settings: Settings, *, advertise: str, replica_id: str | None, lease_ttl: int
) -> None:
    """Serve one replica until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    telemetry.configure(settings.otel)
    store = await open_store(settings.store_url)
    server = Server(settings.api_address, grace=settings.shutdown_grace)
    service = ResourceService(
        store,
        address=advertise,
        replica_id=replica_id,
        heartbeat_interval=settings.heartbeat_interval,
        dead_after=settings.dead_after,
        lease_ttl=lease_ttl,
    )
    service.add_to(server)
    try:
        async with service:
            await server.start()
            _log.info("Resource replica %s serving on %s", service.replica_id, server.address)
            try:
                await stop.wait()
            finally:
                await server.shutdown()
    finally:
        await store.close()
        telemetry.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    overrides = {
        name: value
        for name, value in vars(args).items()
        if value is not None and name not in ("advertise_address", "replica_id", "lease_ttl")
    }
    settings = Settings.load(overrides=overrides)
    configure_logging(settings.log_level)
    advertise = args.advertise_address or settings.api_address
    run(serve(settings, advertise=advertise, replica_id=args.replica_id, lease_ttl=args.lease_ttl))


if __name__ == "__main__":
    main()
