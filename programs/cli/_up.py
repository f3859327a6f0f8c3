"""``astra up``: run AstraRay on this machine as a list of components.

A component (:data:`astra.runtime.Component`) is an async context manager factory
taking the runtime: entering it starts the component, leaving it stops it. ``astra up``
enters :data:`COMPONENTS` in order and leaves them in reverse, so a component may use
whatever the earlier ones put on the runtime. Services add themselves to the list before ``api_server``, registering
their servicers on ``runtime.api`` (which starts listening in ``api_server``) and
their background work with ``runtime.api.spawn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import click

from astra import configure_logging, gc_for_serving, server, telemetry
from astra.config import Settings, settings_options
from astra.errors import ConfigError
from astra.runtime import Component, Runtime
from astra.server import Server, stop_on_signals
from astra.store import Store, open_store
from gateway import gateway_component
from programs.cli._howto import how_to_call
from programs.cli._local import demo_app, local_agent
from services.app import app_component
from services.node import node_service
from services.resource import resource_component
from services.scheduler import scheduler_component

_log = logging.getLogger("astra.up")


class LocalRuntime:
    """What the components of one ``astra up`` share (an :class:`astra.runtime.Runtime`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: The gRPC API server; register servicers before the ``api_server`` component.
        self.api = Server(settings.api_address, grace=settings.shutdown_grace)
        #: Where the gateway listens, once the gateway component has started it.
        self.gateway_address: str | None = None
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The open store (from the ``store`` component on)."""
        if self._store is None:
            raise RuntimeError("the store is not open yet: put this component after `store`")
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        self._store = store


@contextlib.asynccontextmanager
async def otel(runtime: Runtime) -> AsyncIterator[None]:
    """OpenTelemetry as the settings say (off by default); flushed on the way out."""
    telemetry.configure(runtime.settings.otel)
    try:
        yield
    finally:
        telemetry.shutdown()


@contextlib.asynccontextmanager
async def store(runtime: Runtime) -> AsyncIterator[None]:
    """The control plane's store, from ``store_url``."""
    url = runtime.settings.store_url
    try:
        opened = await open_store(url)
    except ValueError as exc:
        raise ConfigError(f"store_url: {exc}") from None
    runtime.store = opened
    _log.info("store: %s", url)
    try:
        yield
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def api_server(runtime: Runtime) -> AsyncIterator[None]:
    """The gRPC API with every service registered before it, health and reflection."""
    api = runtime.api
    await api.start()
    address, services = api.address, ", ".join(api.service_names)
    _log.info("gRPC API on %s serving %s (grpcurl -plaintext %s list)", address, services, address)
    try:
        yield
    finally:
        await api.shutdown()


#: What ``astra up`` runs, in order: the four control-plane services, in the order they
#: depend on each other, register on the API before it listens.
COMPONENTS: tuple[Component, ...] = (
    otel,
    store,
    resource_component,
    node_service,
    app_component,
    scheduler_component,
    api_server,
)


async def run_components(
    runtime: Runtime, components: Sequence[Component], stop: asyncio.Event
) -> None:
    """Start ``components`` in order, wait for ``stop``, stop them in reverse order.

    A component that fails to start stops the ones already started, and its error
    propagates.
    """
    async with contextlib.AsyncExitStack() as stack:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            for component in components:
                # A slow start (replicas coming up) is abandoned when ``stop`` is set.
                entering = asyncio.ensure_future(stack.enter_async_context(component(runtime)))
                await asyncio.wait((entering, stopping), return_when=asyncio.FIRST_COMPLETED)
                if not entering.done():
                    entering.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await entering
                    break
                entering.result()
            else:
                _log.info("AstraRay is up; Ctrl-C or SIGTERM stops it")
                with gc_for_serving():
                    await stopping
        finally:
            stopping.cancel()
        _log.info("shutting down")
    _log.info("stopped")


async def up(settings: Settings, components: Sequence[Component] = COMPONENTS) -> None:
    """Run ``components`` until SIGINT or SIGTERM."""
    with stop_on_signals() as stop:
        await run_components(LocalRuntime(settings), components, stop)


@click.command(name="up")
@settings_options
@click.option(
    "--agent/--no-agent", default=True, show_default=True,
    help="run a node agent with a local Ray on this machine",
)  # fmt: skip
@click.option(
    "--demo/--no-demo", default=True, show_default=True,
    help="deploy the demo app (needs the agent to serve)",
)  # fmt: skip
@click.option(
    "--gateway/--no-gateway", default=True, show_default=True,
    help="serve the inference gateway on --gateway-address",
)  # fmt: skip
def up_command(settings: Settings, agent: bool, demo: bool, gateway: bool) -> None:
    """Run AstraRay on this machine (embedded store by default) until Ctrl-C or SIGTERM:
    the four services, a node agent with a local Ray, a demo app and the gateway; once
    the demo model serves through the gateway, print how to call it."""
    configure_logging(settings.log_level)
    wanted = (
        (agent, local_agent),
        (demo, demo_app),
        (gateway, gateway_component),
        (demo and gateway, how_to_call),
    )
    local = tuple(component for on, component in wanted if on)
    server.run(up(settings, (*COMPONENTS, *local)))
