"""Run the Node service on its own: ``python -m services.node [options]``.

For a deployment with each service in its own process (docker-compose); ``astra up``
runs the service inside the one AstraRay process instead. Settings come from the flags,
``ASTRA_*`` variables and the config file as for ``astra``. Stops on SIGINT or SIGTERM:
open assignment streams end and agents resume them elsewhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from astra._log import configure_logging
from astra.config import Settings
from astra.server import run
from services import serve_standalone
from services.node._servicer import NodeService


async def serve(settings: Settings) -> None:
    """Serve the Node service on ``settings.api_address`` until SIGINT or SIGTERM."""
    await serve_standalone(settings, NodeService, describe=lambda _: "Node service")


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
