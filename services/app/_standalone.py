"""Running one replica of a service on its own, outside ``astra up``.

For a fleet of replicas (each with its own ``--api-address``) and for tests that kill a
replica: settings come from the flags, ``ASTRA_*`` variables and the config file as for
``astra``; the replica stops on SIGINT or SIGTERM, handing its work to the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Protocol

from astra._log import configure_logging
from astra.config import Settings
from astra.server import run
from astra.store import Store
from services import Standalone, serve_standalone

#: Flags that are not settings.
_OWN = ("resource_address", "replica_id")


class Replica(Standalone, Protocol):
    """A service replica: served on a server, started and stopped as a context."""

    replica_id: str


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
    run(
        serve_standalone(
            settings,
            lambda store: factory(store, settings, args.resource_address, args.replica_id),
            describe=lambda replica: f"replica {replica.replica_id}",
        )
    )
