"""The Resource service as a component of ``astra up``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from astra.runtime import Runtime
from services.resource._service import ResourceService


@contextlib.asynccontextmanager
async def resource_component(runtime: Runtime) -> AsyncIterator[None]:
    """The Resource service on ``runtime.api``; put it after ``store`` and before
    ``api_server``."""
    settings = runtime.settings
    service = ResourceService(
        runtime.store,
        address=settings.api_address,
        heartbeat_interval=settings.heartbeat_interval,
        dead_after=settings.dead_after,
    )
    service.add_to(runtime.api)
    async with service:
        yield
