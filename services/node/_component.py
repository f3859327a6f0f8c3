"""The Node service as a component of ``astra up``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from astra.runtime import Runtime
from services.node._servicer import NodeService


@contextlib.asynccontextmanager
async def node_service(runtime: Runtime) -> AsyncIterator[None]:
    """Serve the Node service on ``runtime.api``; put it after ``store`` and before
    ``api_server``, so that its watch runs before the API serves and stops after."""
    service = NodeService(runtime.store)
    service.add_to(runtime.api)
    async with service:
        yield
