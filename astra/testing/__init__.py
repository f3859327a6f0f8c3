"""Helpers to run real backing servers locally, for tests, benchmarks and demos."""

from astra.testing._servers import (
    BinaryNotFoundError,
    EtcdProcess,
    RedisProcess,
    find_etcd,
    find_redis,
    free_port,
    running,
    wait_for_port,
)

__all__ = [
    "BinaryNotFoundError",
    "EtcdProcess",
    "RedisProcess",
    "find_etcd",
    "find_redis",
    "free_port",
    "running",
    "wait_for_port",
]
