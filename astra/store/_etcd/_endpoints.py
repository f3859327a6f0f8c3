"""gRPC channels to the members of an etcd cluster, and failover between them.

Calls go to one current endpoint. When it is unreachable the next one becomes
current; a read (or any call that never left this process) is retried on it at
once, a write is not, since etcd may have applied it before the connection broke.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grpc
from aetcd import rpc
from google.protobuf.message import Message

from astra import telemetry
from astra.store._errors import StoreError, UnavailableError
from astra.store._etcd._status import UNAVAILABLE_CODES, never_sent

_CHANNEL_OPTIONS = [
    # Responses (ranges) may be large; etcd itself caps requests at 1.5 MiB.
    ("grpc.max_receive_message_length", -1),
    # Reconnect soon after a member comes back, instead of gRPC's default backoff to 2 min.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a silently dead member under a long watch. etcd's server refuses pings
    # more often than every 5 s, and any ping while no call is open.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
]


async def _first_response(
    method: grpc.aio.StreamStreamMultiCallable[Message, Message],
    request: Message,
    *,
    timeout: float,
) -> Message:
    """Send one request on a new stream and return the first response."""
    call = method(iter((request,)), timeout=timeout)
    try:
        async for response in call:
            return response
    finally:
        call.cancel()
    raise UnavailableError("etcd closed the stream without answering")


class Endpoint:
    """One member's channel and the calls the store makes on it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = telemetry.channel(address, options=_CHANNEL_OPTIONS)
        kv, lease = rpc.KVStub(self.channel), rpc.LeaseStub(self.channel)
        self.watch = rpc.WatchStub(self.channel).Watch
        self.unary: dict[str, Callable[..., Any]] = {
            "Range": kv.Range,
            "Txn": kv.Txn,
            "Compact": kv.Compact,
            "LeaseGrant": lease.LeaseGrant,
            "LeaseRevoke": lease.LeaseRevoke,
            "LeaseKeepAlive": functools.partial(_first_response, lease.LeaseKeepAlive),
        }


class Endpoints:
    """The channels to every endpoint, one of them current.

    Args:
        addresses: ``host:port`` of each member.
        timeout: deadline of each unary call, in seconds.
    """

    def __init__(self, addresses: list[str], *, timeout: float) -> None:
        if not addresses:
            raise ValueError("at least one etcd endpoint (host:port) is needed")
        self._endpoints = [Endpoint(address) for address in addresses]
        self._current = 0
        self._closed = False
        self.timeout = timeout

    def current(self) -> Endpoint:
        if self._closed:
            raise StoreError("the etcd store is closed")
        return self._endpoints[self._current]

    def failed(self, endpoint: Endpoint) -> None:
        """Move on from ``endpoint`` if it is still current (concurrent failures move once)."""
        if self._endpoints[self._current] is endpoint:
            self._current = (self._current + 1) % len(self._endpoints)

    async def unary(self, name: str, request: Message, *, idempotent: bool) -> Any:
        """Make call ``name`` on the current endpoint, failing over as the module says.

        Raises:
            UnavailableError: no endpoint could be reached (or a write's fate is unknown).
            grpc.aio.AioRpcError: etcd answered with an error.
        """
        attempts = 0
        while True:
            endpoint = self.current()
            try:
                return await endpoint.unary[name](request, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in UNAVAILABLE_CODES:
                    raise
                self.failed(endpoint)
                attempts += 1
                if attempts == len(self._endpoints) or not (idempotent or never_sent(exc)):
                    raise UnavailableError(f"etcd at {endpoint.address}: {exc.details()}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for endpoint in self._endpoints:
            await endpoint.channel.close()
