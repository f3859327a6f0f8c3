"""Run one Resource replica on its own: ``python -m services.resource [options]``.

For a fleet of replicas (each with its own ``--api-address``) and for benchmarks; ``astra
up`` runs the service inside the one AstraRay process instead. Settings come from the
flags, ``ASTRA_*`` variables and the config file as for ``astra``. Stops on SIGINT or
SIGTERM: queued transitions are written and the nodes handed to the other replicas.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from astra._log import configure_logging
from astra.config import Settings
from astra.server import run
from astra.store import Store
from services import serve_standalone
from services.resource._service import ResourceService


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

    def build(store: Store) -> ResourceService:
        return ResourceService(
            store,
            address=advertise,
            replica_id=replica_id,
            heartbeat_interval=settings.heartbeat_interval,
            dead_after=settings.dead_after,
            lease_ttl=lease_ttl,
        )

    await serve_standalone(
        settings, build, describe=lambda service: f"Resource replica {service.replica_id}"
    )


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
