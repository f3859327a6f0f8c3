"""The App service's control plane over an in-memory store (most tests) or a real etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from astra.store import Store, open_store
from tests.services.app.plane import Plane, plane


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with await open_store("memory://") as opened:
        yield opened


@pytest.fixture
async def control(store: Store) -> AsyncIterator[Plane]:
    async with plane(store) as started:
        yield started
