"""Helpers to run real backing servers locally, for tests, benchmarks and demos: etcd
and Redis processes, a route feed standing in for the Scheduler's WatchRoutes, and an
OTLP receiver that keeps the spans and metrics processes export."""

from astra.testing._metrics import metric_points
from astra.testing._otlp import OtlpCollector, ReceivedSpan
from astra.testing._routes import SCHEDULER_SERVICE, RouteFeed, route_spec, serve_route_feed
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
    "SCHEDULER_SERVICE",
    "BinaryNotFoundError",
    "EtcdProcess",
    "OtlpCollector",
    "ReceivedSpan",
    "RedisProcess",
    "RouteFeed",
    "find_etcd",
    "find_redis",
    "free_port",
    "metric_points",
    "route_spec",
    "running",
    "serve_route_feed",
    "wait_for_port",
]
