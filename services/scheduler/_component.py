"""The Scheduler service as a component of ``astra up``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from astra.runtime import Runtime, api_address
from services.scheduler._service import SchedulerService


@contextlib.asynccontextmanager
async def scheduler_component(runtime: Runtime) -> AsyncIterator[None]:
    """The Scheduler service on ``runtime.api``, fed by the Resource service of the same
    process; put it after ``store`` and the Resource service, before ``api_server``. Its
    ``WatchCluster`` feed stops when ``runtime.api`` begins shutting down, before it drains."""
    service = SchedulerService(
        runtime.store,
        resource=lambda: api_address(runtime.api),
        performance=runtime.settings.accelerator_factors,
    )
    service.add_to(runtime.api)
    runtime.api.on_shutdown(service.stop_cluster_feed)
    async with service:
        yield
