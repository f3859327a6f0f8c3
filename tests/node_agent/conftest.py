"""The agent against a real control plane (Resource and Node services) on a real etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from astra.store import Store
from tests.node_agent.control_plane import ControlPlane, control_plane
from tests.services.node.conftest import node_id, node_server, store

__all__ = ["node_id", "node_server", "plane", "store"]


@pytest.fixture
async def plane(store: Store) -> AsyncIterator[ControlPlane]:
    async with control_plane(store) as running:
        yield running
