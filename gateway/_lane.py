"""The fast lane: the gateway's public HTTP/2 front in C++ (``gateway._core.Lane``).

It listens on the gateway's address, on a thread of its own (no GIL). A ModelInfer that
the routing core routes goes from there straight to the endpoint it picked; every other
call (the other methods, health, reflection, ``astra.v1.AsyncInferenceService``,
unknown or unroutable models, malformed or compressed requests) is relayed stream by
stream to the gateway's grpc.aio server, which then listens on loopback only and answers
as it does without the lane. With OpenTelemetry on, ModelInfer goes to that server too
(it makes the spans). It forwards as :mod:`gateway._forward` does (retry once, the
deadline passed on), by the same :class:`~gateway._rules.RetryRules`, handed to it at
construction; ``gateway/src/lane.hpp`` has the details.

Python keeps the weights and health: the lane learns which endpoint address each slot
holds (:meth:`FastLane.set_slot`, called by the table), counts per slot what it sees
(:meth:`FastLane.collect`, folded into the members before each reweigh: O(slots)), and
reports refusals, replica faults and recoveries as they happen through an eventfd the
event loop watches (O(1) per event).
"""

from __future__ import annotations

import asyncio
import time
from enum import IntEnum
from typing import cast

from gateway._health import Health
from gateway._rules import RULES, RetryRules, status_number, status_numbers
from gateway._table import Table


class _Event(IntEnum):
    """The kinds of ``Lane.take_events`` (``Health`` in lane.hpp)."""

    REFUSED = 0
    FAULT = 1
    RECOVERED = 2


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


class FastLane:
    """The C++ front of one gateway, relaying to its inner server at ``inner``.

    Args:
        table: the routes; its router is the lane's.
        health: where refusals and faults go.
        address: where to listen (port 0 picks one).
        inner: the inner grpc.aio server's ``host:port``.
        forward: forward ModelInfer itself (off with telemetry on).
        connections: HTTP/2 connections per endpoint address.
        rules: which failures are retried and which count against a replica.
    """

    def __init__(
        self,
        table: Table,
        health: Health,
        *,
        address: str,
        inner: str,
        forward: bool,
        connections: int = 1,
        rules: RetryRules = RULES,
    ) -> None:
        from gateway import _core

        host, port = split_address(address)
        inner_host, inner_port = split_address(inner)
        self._table = table
        self._health = health
        # Type checkers see the twin's Router (gateway._native); a lane runs on the native
        # one only, which _core.Lane checks.
        router = cast("_core.Router", table.router)
        self._lane = _core.Lane(
            router,
            host,
            port,
            inner_host,
            inner_port,
            forward=forward,
            connections=connections,
            rules=_core.RetryRules(
                refused_trailer=rules.refused_trailer,
                refused_code=status_number(rules.refused_code),
                idempotent_key=rules.idempotent_key,
                idempotent_values=sorted(rules.idempotent_values),
                idempotent_retry=status_numbers(rules.idempotent_retry),
                weight_errors=status_numbers(rules.weight_errors),
                replica_faults=status_numbers(rules.replica_faults),
            ),
        )
        self._host = host
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._lane.port}"

    def start(self) -> None:
        """Name the slots the table holds already, and watch the lane's events."""
        for member in self._table.slots:
            if member is not None:
                self.set_slot(member.slot, member.endpoint.address)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._lane.event_fd, self._events)

    def set_slot(self, slot: int, address: str | None) -> None:
        """Slot ``slot`` holds the endpoint at ``address`` now (None: it is free)."""
        self._lane.set_slot(slot, address or "")

    def collect(self) -> None:
        """Fold what the lane saw since the last call into the members, and set each
        endpoint's requests in flight through the lane. O(slots)."""
        slots = self._table.slots
        for endpoint in self._table.endpoints.values():
            endpoint.lane_in_flight = 0
        for (
            slot,
            in_flight,
            samples,
            sample_seconds,
            failed,
            failed_seconds,
        ) in self._lane.take_stats():
            member = slots[slot] if slot < len(slots) else None
            if member is None:
                continue
            member.samples += samples
            member.sample_seconds += sample_seconds
            member.failed += failed
            member.failed_seconds += failed_seconds
            member.endpoint.lane_in_flight += in_flight

    def _events(self) -> None:
        endpoints = self._table.endpoints
        for _slot, address, kind in self._lane.take_events():
            endpoint = endpoints.get(address)
            if endpoint is None:
                continue
            if kind == _Event.REFUSED:
                self._health.refused(endpoint)
            elif kind == _Event.FAULT:
                self._health.failed(endpoint)
            else:
                endpoint.failures_in_row = 0

    def stop_accepting(self) -> None:
        """No new connection or stream (GOAWAY to every client)."""
        self._lane.stop_accepting()

    async def drain(self, grace: float) -> None:
        """Wait, at most ``grace`` seconds, for the calls in progress to end."""
        deadline = time.monotonic() + grace
        while self._lane.active() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        """Stop the lane's thread and close its connections. Idempotent."""
        if self._loop is not None:
            self._loop.remove_reader(self._lane.event_fd)
            self._loop = None
        self._lane.close()
