"""Which endpoints take requests: drains seen, failures counted, ejection and probes.

- A replica that refuses a request because it is draining is taken out of every route
  at once (the Scheduler's routes follow a moment later) and probed every
  ``drain_probe`` seconds until it is ready again or leaves the routes.
- ``eject_after`` consecutive failures of a replica's making eject it for a time that
  doubles with each ejection in a row; then a ``ServerReady`` probe brings it back,
  with slow start, or ejects it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import grpc

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from gateway._endpoints import SERVICE, Endpoint, State
from gateway._table import Table

_log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class Health:
    """Endpoint states for ``table``; ``spawn(coroutine, name)`` runs the probes as owned
    background tasks."""

    def __init__(
        self, table: Table, spawn: Spawn, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._table = table
        self._policy = table.policy
        self._spawn = spawn
        self._clock = clock

    def failed(self, endpoint: Endpoint) -> None:
        """A failure of the replica's making; ejects it at ``eject_after`` in a row."""
        endpoint.failures_in_row += 1
        if endpoint.failures_in_row >= self._policy.eject_after and endpoint.state is State.READY:
            self._eject(endpoint)

    def refused(self, endpoint: Endpoint) -> None:
        """The replica refused a request because it is draining."""
        if endpoint.state is not State.READY or endpoint.retired:
            return
        _log.info("%s is draining: no new request goes there", endpoint.address)
        self._table.set_state(endpoint, State.DRAINING, now=self._clock())
        self._spawn(
            self._probe(endpoint, self._policy.drain_probe), f"gateway.probe {endpoint.address}"
        )

    def _eject(self, endpoint: Endpoint) -> None:
        endpoint.ejections += 1
        seconds = self._policy.ejection(endpoint.ejections)
        _log.warning(
            "%s failed %d requests in a row: ejected for %.1fs",
            endpoint.address,
            endpoint.failures_in_row,
            seconds,
        )
        self._table.set_state(endpoint, State.EJECTED, now=self._clock())
        self._spawn(self._probe(endpoint, seconds), f"gateway.probe {endpoint.address}")

    async def _probe(self, endpoint: Endpoint, delay: float) -> None:
        """After ``delay``, ask the replica whether it is ready: back into its routes if
        so; otherwise a drain is probed again, an ejection lengthened."""
        while await _listed_after(endpoint, delay):
            if await self._ready(endpoint):
                _log.info("%s is ready again", endpoint.address)
                endpoint.failures_in_row = 0
                self._table.set_state(endpoint, State.READY, now=self._clock())
                return
            if endpoint.state is State.EJECTED:
                endpoint.ejections += 1
                delay = self._policy.ejection(endpoint.ejections)
                _log.info("%s is still not ready: ejected for %.1fs more", endpoint.address, delay)

    async def _ready(self, endpoint: Endpoint) -> bool:
        ready = endpoint.channel.unary_unary(
            f"/{SERVICE}/ServerReady",
            request_serializer=pb.ServerReadyRequest.SerializeToString,
            response_deserializer=pb.ServerReadyResponse.FromString,
        )
        try:
            response = await ready(pb.ServerReadyRequest(), timeout=self._policy.probe_timeout)
        except grpc.aio.AioRpcError as exc:
            _log.debug("probe of %s: %s", endpoint.address, exc.code().name)
            return False
        return bool(response.ready)


async def _listed_after(endpoint: Endpoint, delay: float) -> bool:
    """Whether ``endpoint`` is still in the routes after ``delay`` seconds (False at
    once if it is not now)."""
    if endpoint.retired:
        return False
    await asyncio.sleep(delay)
    return not endpoint.retired
