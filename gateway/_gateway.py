"""The gateway process: its server, the routes it follows, and its background work."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Self

from astra import telemetry
from astra.server import Server
from gateway import _native
from gateway._broker import BrokerOptions, async_inference_service
from gateway._endpoints import CHANNEL_OPTIONS, MODEL_INFER, Endpoint
from gateway._forward import Forwarder
from gateway._front import inference_service
from gateway._health import Health
from gateway._lane import FastLane
from gateway._orca import follow_reports
from gateway._routes import RouteWatcher
from gateway._rules import RULES, RetryRules
from gateway._table import Table
from gateway._telemetry import observe_weights
from gateway._weights import WeightPolicy

_log = logging.getLogger(__name__)

#: Tensors of any size, in and out (the channels to replicas take them too).
MESSAGE_SIZES = tuple(option for option in CHANNEL_OPTIONS if "message_length" in option[0])


class Gateway:
    """The inference gateway: serves ``inference.GRPCInferenceService`` (plus health
    and reflection) on ``address`` and routes each ModelInfer to a ready endpoint of
    its model version, by the routes the Scheduler at ``scheduler`` streams.

    >>> async with Gateway(scheduler="127.0.0.1:7100", address="127.0.0.1:8001") as gateway:
    ...     await gateway.synced(timeout=5)
    ...     await gateway.wait()

    Args:
        scheduler: the Scheduler's ``host:port`` (WatchRoutes).
        address: where to listen; port 0 picks a free one.
        policy: weights, ejection and probing (see :mod:`gateway._weights`).
        models: route only these models (empty: all).
        grace: seconds in-flight requests get to finish on shutdown.
        broker: with one, also serve ``astra.v1.AsyncInferenceService`` on its Redis
            (:mod:`gateway._broker`).
        fast_lane: serve through the C++ fast lane (:mod:`gateway._lane`), the
            grpc.aio server behind it on loopback; only with the native core (with the
            pure-Python one, the grpc.aio server alone serves).
        lane_connections: the fast lane's HTTP/2 connections per endpoint address.
        rules: which failures are retried and which count against a replica, on
            either front (see :mod:`gateway._rules`).
    """

    def __init__(
        self,
        *,
        scheduler: str,
        address: str = "127.0.0.1:8001",
        policy: WeightPolicy | None = None,
        models: Sequence[str] = (),
        grace: float = 5.0,
        broker: BrokerOptions | None = None,
        fast_lane: bool = True,
        lane_connections: int = 1,
        rules: RetryRules = RULES,
    ) -> None:
        self.policy = policy or WeightPolicy()
        self._address = address
        self._grace = grace
        self._lane_connections = lane_connections
        self._rules = rules
        self.lane: FastLane | None = None
        self._fast_lane = fast_lane and _native.IMPLEMENTATION == "native"
        # ModelInfer, the hot path, skips the interceptors while they would only log it.
        # Behind the fast lane, the server listens on loopback only.
        inner = "127.0.0.1:0" if self._fast_lane else address
        self.server = Server(inner, grace=grace, plain=(MODEL_INFER,), options=MESSAGE_SIZES)
        self._open: set[Endpoint] = set()  # endpoints whose channel is not closed yet
        self.table = Table(
            self.policy,
            clock=time.monotonic,
            on_retired=self._retired,
            on_added=self._added,
            on_slot=self._slot if self._fast_lane else None,
        )
        self.health = Health(self.table, lambda work, name: self.server.spawn(work, name=name))
        self.routes = RouteWatcher(scheduler, self.table.apply, models=models)
        self.server.add_generic_handler(
            inference_service(self.table, Forwarder(self.table, self.health, rules=rules))
        )
        self._broker = None if broker is None else broker.broker()
        if self._broker is not None:
            self.server.add_generic_handler(async_inference_service(self.table, self._broker))
        observe_weights(self.table)

    @property
    def address(self) -> str:
        """``host:port`` it listens on."""
        return self.lane.address if self.lane is not None else self.server.address

    async def start(self) -> None:
        """Listen, then follow the routes and recompute weights in the background."""
        await self.server.start()
        if self._fast_lane:
            self.lane = FastLane(
                self.table,
                self.health,
                address=self._address,
                inner=self.server.address,
                forward=not telemetry.enabled(),
                connections=self._lane_connections,
                rules=self._rules,
            )
            self.lane.start()
        self.server.spawn(self.routes.run(), name="gateway.routes")
        self.server.spawn(self._reweigh(), name="gateway.weights")
        _log.info(
            "gateway on %s (%s routing core%s)",
            self.address,
            _native.IMPLEMENTATION,
            ", fast lane" if self.lane is not None else "",
        )

    async def synced(self, timeout: float | None = None) -> None:
        """Return once the first snapshot of the routes is in.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
        await asyncio.wait_for(self.routes.synced.wait(), timeout)

    async def wait(self) -> None:
        """Return once the gateway has shut down."""
        await self.server.wait()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop taking requests, let those in flight finish (``grace`` seconds), stop the
        background work and close every channel. Idempotent."""
        if self.lane is not None:
            self.lane.stop_accepting()
            wait = self._grace if grace is None else grace
            await asyncio.gather(self.server.shutdown(grace), self.lane.drain(wait))
            self.lane.close()
        else:
            await self.server.shutdown(grace)
        await self.routes.close()
        if self._broker is not None:
            await self._broker.close()
        for endpoint in list(self._open):
            await self._close(endpoint)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def _reweigh(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval)
            if self.lane is not None:
                self.lane.collect()
            self.table.reweigh()

    def _slot(self, slot: int, address: str | None) -> None:
        if self.lane is not None:
            self.lane.set_slot(slot, address)

    def _added(self, endpoint: Endpoint) -> None:
        self._open.add(endpoint)
        reports = follow_reports(endpoint, self.policy)
        self.server.spawn(reports, name=f"gateway.reports {endpoint.address}")

    def _retired(self, endpoint: Endpoint) -> None:
        self.server.spawn(self._close(endpoint), name=f"gateway.close {endpoint.address}")

    async def _close(self, endpoint: Endpoint) -> None:
        self._open.discard(endpoint)
        await endpoint.channel.close()
