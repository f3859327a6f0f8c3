"""``astra serve SERVICE``: one control-plane service in a process of its own.

For a deployment with each service in its own processes (docker-compose, a fleet of
replicas each with its own ``--api-address``) and for tests that kill one; ``astra up``
runs all four inside one process instead. Every service is started the same way
(:func:`serve_service`): settings from flags, ``ASTRA_*`` variables and the config file;
telemetry, then the store, then the service, then its server; SIGINT or SIGTERM stops
them in reverse, in-flight calls getting ``shutdown_grace``, and the service hands its
work to the other replicas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import click

from astra import configure_logging, gc_for_serving, server, telemetry
from astra.config import Settings, settings_options
from astra.server import Server, stop_on_signals
from astra.store import Store, open_store
from services.app import AppService
from services.node import NodeService
from services.resource import ResourceService
from services.scheduler import SchedulerService

_log = logging.getLogger("astra.serve")


class Service(AbstractAsyncContextManager[Any], Protocol):
    """A service: served on a server, started and stopped as a context."""

    def add_to(self, server: Server) -> None: ...


S = TypeVar("S", bound=Service)


async def serve_service(
    settings: Settings, build: Callable[[Store], S], *, describe: Callable[[S], str]
) -> None:
    """Serve the service ``build`` makes from the store until SIGINT or SIGTERM.

    Args:
        settings: the process's settings.
        build: the service, from the opened store.
        describe: the service as the "serving on" log line names it.
    """
    with stop_on_signals() as stop:
        telemetry.configure(settings.otel)
        store = await open_store(settings.store_url)
        api = Server(settings.api_address, grace=settings.shutdown_grace)
        service = build(store)
        service.add_to(api)
        try:
            async with service, api:
                _log.info("%s serving on %s", describe(service), api.address)
                with gc_for_serving():
                    await stop.wait()
        finally:
            await store.close()
            telemetry.shutdown()


def _run(settings: Settings, build: Callable[[Store], S], describe: Callable[[S], str]) -> None:
    configure_logging(settings.log_level)
    server.run(serve_service(settings, build, describe=describe))


_replica_id = click.option(
    "--replica-id", help="unique among the service's replicas (default: random)"
)
_resource_address = click.option(
    "--resource-address", required=True, help="the Resource service, host:port"
)


@click.group(name="serve")
def serve() -> None:
    """One control-plane service in a process of its own, until SIGINT or SIGTERM."""


@serve.command()
@settings_options
@_replica_id
@click.option(
    "--advertise-address", help="host:port agents are redirected to (default: --api-address)"
)
@click.option(
    "--lease-ttl", type=int, default=3, show_default=True,
    help="seconds a dead replica keeps its nodes",
)  # fmt: skip
def resource(
    settings: Settings, replica_id: str | None, advertise_address: str | None, lease_ttl: int
) -> None:
    """One Resource replica: membership, heartbeats, failure detection (--api-address must
    be a real port: it is advertised). Queued transitions are written on the way out and
    the nodes handed to the other replicas."""

    def build(store: Store) -> ResourceService:
        return ResourceService(
            store,
            address=advertise_address or settings.api_address,
            replica_id=replica_id,
            heartbeat_interval=settings.heartbeat_interval,
            dead_after=settings.dead_after,
            lease_ttl=lease_ttl,
        )

    _run(settings, build, lambda service: f"Resource replica {service.replica_id}")


@serve.command()
@settings_options
def node(settings: Settings) -> None:
    """The Node service: hands replicas to agents, collects their status. Open assignment
    streams end on the way out and agents resume them elsewhere."""
    _run(settings, NodeService, lambda _: "Node service")


@serve.command()
@settings_options
@_resource_address
@_replica_id
def app(settings: Settings, resource_address: str, replica_id: str | None) -> None:
    """One App-service replica: the apps' API and the schedulers of the apps it owns."""

    def build(store: Store) -> AppService:
        return AppService(
            store, resource=resource_address, replica_id=replica_id, address=settings.api_address
        )

    _run(settings, build, lambda service: f"App replica {service.replica_id}")


@serve.command()
@settings_options
@_resource_address
@_replica_id
def scheduler(settings: Settings, resource_address: str, replica_id: str | None) -> None:
    """One Scheduler-service replica: recovery of lost nodes' replicas and the routes."""

    def build(store: Store) -> SchedulerService:
        return SchedulerService(
            store,
            resource=resource_address,
            replica_id=replica_id,
            address=settings.api_address,
            performance=settings.accelerator_factors,
        )

    _run(settings, build, lambda service: f"Scheduler replica {service.replica_id}")
