"""The App service as a component of ``astra up``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from astra.runtime import Runtime, api_address
from services.app._service import AppService


@contextlib.asynccontextmanager
async def app_component(runtime: Runtime) -> AsyncIterator[None]:
    """The App service on ``runtime.api``, its schedulers fed by the Resource service of
    the same process; put it after ``store`` and the Resource service, before ``api_server``.

    Its ``WatchCluster`` feed is a client of ``runtime.api``: it stops when that server
    begins shutting down, before the server drains."""
    service = AppService(runtime.store, resource=lambda: api_address(runtime.api))
    service.add_to(runtime.api)
    runtime.api.on_shutdown(service.host.stop_cluster_feed)
    async with service:
        yield
