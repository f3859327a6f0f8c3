"""Session-wide real servers: one etcd and one Redis per test session, always torn down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from astra.testing import EtcdProcess, RedisProcess, running


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdProcess]:
    """A real etcd on a free loopback port with a temp data dir."""
    with running(EtcdProcess()) as server:
        assert isinstance(server, EtcdProcess)
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A real redis-server on a free loopback port."""
    with running(RedisProcess()) as server:
        assert isinstance(server, RedisProcess)
        yield server
