"""The gateway as a component of ``astra up``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from astra.runtime import Runtime
from gateway._broker import BrokerOptions
from gateway._gateway import Gateway


@contextlib.asynccontextmanager
async def gateway_component(runtime: Runtime) -> AsyncIterator[None]:
    """Serve the gateway on ``gateway_address``, routing by the Scheduler on
    ``runtime.api``; put it after ``api_server``, so that the routes are served when
    it starts and it stops first."""
    settings = runtime.settings
    gateway = Gateway(
        scheduler=runtime.api.address,
        address=settings.gateway_address,
        grace=settings.shutdown_grace,
        broker=BrokerOptions.from_settings(settings),
        fast_lane=settings.gateway_fast_lane,
    )
    async with gateway:
        runtime.gateway_address = gateway.address
        yield
