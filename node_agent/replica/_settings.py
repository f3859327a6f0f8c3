"""What a replica server is configured with, beside its models."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """How a replica serves.

    Attributes:
        host: the address to listen on and to be reached at (the node's).
        cache_dir: the node's model cache (shared by every replica on the machine).
        port: the port to listen on; 0 picks a free one.
        gpus: GPUs the replica was given; GPU execution providers only with some.
        threads: ONNX Runtime intra-op threads per inference.
        workers: inferences run at once; more requests wait for a worker.
        grace: seconds in-flight calls get when the server stops.
        redis_url: the async broker's Redis; with one, the replica pulls its models'
            queued inferences (:mod:`node_agent.replica._puller`).
        broker_concurrency: queued inferences held and run at once; 0: ``workers``.
        claim_idle: seconds a queued inference may stay unrenewed with a replica before
            another one takes it over (the replica died).
        service_time: for benchmarks and tests only, never in production: seconds each
            inference holds its worker after the model ran, as on a slower machine (the
            worker is busy and the time counts in the load reports), so a replica can be
            made honestly slower than its peers.
        otel: the OpenTelemetry settings (:class:`astra.config.OtelSettings`'s fields)
            of the replica's process, whose ``service.name`` gets ``-replica`` appended;
            ``None``: telemetry off (the agent passes its own).
    """

    host: str
    cache_dir: str
    port: int = 0
    gpus: int = 0
    threads: int = 1
    workers: int = 2
    grace: float = 1.0
    redis_url: str | None = None
    broker_concurrency: int = 0
    claim_idle: float = 5.0
    service_time: float = 0.0
    otel: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, read back by :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicaSettings:
        """The settings :meth:`to_dict` wrote."""
        return cls(**data)
