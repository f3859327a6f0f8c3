"""The gateway's tests: both routing cores, each imported by name."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from astra.server import Server
from gateway import Gateway, WeightPolicy
from gateway._native import python_core
from tests.gateway.replica import Replica
from tests.gateway.route_feed import RouteFeed, serve_feed


def native_core() -> Any:
    """``gateway._core``, imported by name: a missing or broken build fails here."""
    return importlib.import_module("gateway._core")


CORES = {"native": native_core, "python": python_core}


@pytest.fixture(params=sorted(CORES), scope="module")
def core(request: pytest.FixtureRequest) -> Any:
    """Each implementation of the routing core in turn."""
    return CORES[request.param]()


# -- real servers: a route feed, replicas, the gateway ----------------------------------

#: Fast weights, ejections and probes, so that tests see them within a second.
FAST = WeightPolicy(
    interval=0.05,
    latency_decay=0.5,
    slow_start=1.0,
    ejection_base=0.3,
    ejection_max=1.0,
    probe_timeout=0.5,
    drain_probe=0.2,
)


@dataclass
class Setup:
    """A route feed, replicas and a gateway on loopback, and a client of the gateway."""

    feed: RouteFeed
    feed_server: Server
    fast_lane: bool = False
    gateway: Gateway | None = None
    replicas: dict[str, Replica] = field(default_factory=dict)
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def replica(
        self, name: str, models: Sequence[tuple[str, str]] = (("add", "1"),), **options: Any
    ) -> Replica:
        replica = self.replicas[name] = await Replica(name, models, **options).start()
        return replica

    async def start_gateway(self, policy: WeightPolicy = FAST, **options: Any) -> Gateway:
        options.setdefault("fast_lane", self.fast_lane)
        self.gateway = Gateway(
            scheduler=self.feed_server.address, address="127.0.0.1:0", policy=policy, **options
        )
        await self.gateway.start()
        await self.gateway.synced(timeout=10)
        return self.gateway

    def channel(self) -> grpc.aio.Channel:
        assert self.gateway is not None
        channel = grpc.aio.insecure_channel(self.gateway.address)
        self.channels.append(channel)
        return channel

    def stub(self) -> pb_grpc.GRPCInferenceServiceStub:
        return pb_grpc.GRPCInferenceServiceStub(self.channel())


#: The gateway's fronts: the grpc.aio server alone, and the C++ fast lane before it.
FRONTS = {"grpc": False, "lane": True}


@pytest.fixture(params=sorted(FRONTS))
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    """A route feed serving no route yet; start replicas and the gateway (through each
    front in turn) from it."""
    feed = RouteFeed()
    running = Setup(feed, await serve_feed(feed), fast_lane=FRONTS[request.param])
    try:
        yield running
    finally:
        for channel in running.channels:
            await channel.close()
        if running.gateway is not None:
            await running.gateway.shutdown(grace=1.0)
        for replica in running.replicas.values():
            await replica.stop()
        await running.feed_server.shutdown(grace=0.5)
