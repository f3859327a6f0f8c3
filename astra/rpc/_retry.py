"""Retries: exponential backoff with full jitter, and unary calls retried on transient errors."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from astra import telemetry

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Status codes worth another try: the server may answer next time. Any other is final.
#: CANCELLED is among them because it can only come from the server here (one that stops
#: cancels the calls it still has): grpc.aio raises asyncio.CancelledError, not this
#: status, for a call the client cancelled itself.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


class Backoff:
    """Delays that double from ``base`` up to ``cap``, each drawn uniformly between
    ``base`` and the current ceiling ("full jitter"), so that many agents that lost the
    same server do not come back in step.

    >>> backoff = Backoff(base=0.1, cap=5.0)
    >>> await backoff.sleep()   # 0.1 s, then up to 0.2, 0.4, ... 5 s
    >>> backoff.reset()         # after a success
    """

    def __init__(
        self, *, base: float = 0.1, cap: float = 5.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base}, cap={cap}")
        self.base = base
        self.cap = cap
        self._attempt = 0
        self._random = rng or random.Random()

    def next_delay(self) -> float:
        """The next delay in seconds; each call raises the ceiling until ``cap``."""
        ceiling = min(self.cap, self.base * 2 ** min(self._attempt, 32))
        self._attempt += 1
        return self._random.uniform(self.base, ceiling)

    async def sleep(self) -> None:
        """Sleep for :meth:`next_delay` seconds."""
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        """Start again from ``base`` (after a success)."""
        self._attempt = 0


async def retry_call(
    call: Callable[[], Awaitable[T]], *, what: str, backoff: Backoff, deadline: float | None = None
) -> T:
    """``await call()``, again after a backoff delay while it fails with a
    :data:`TRANSIENT` status, until it succeeds or ``deadline`` (``time.monotonic()``) is
    too close for another try.

    Raises:
        grpc.aio.AioRpcError: a final status, or the last transient one at the deadline.
    """
    while True:
        try:
            result = await call()
        except grpc.aio.AioRpcError as exc:
            delay = backoff.next_delay()
            if exc.code() not in TRANSIENT or (
                deadline is not None and time.monotonic() + delay > deadline
            ):
                raise
            _log.info(
                "%s failed (%s: %s); retrying in %.2fs", what, exc.code().name, exc.details(), delay
            )
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        return result


def open_channel(address: str, *, backoff: Backoff) -> grpc.aio.Channel:
    """A channel to ``address`` that reconnects on the same schedule as ``backoff``:
    gRPC's own reconnect backoff grows to 120 s by default, which would hold an agent
    off a control plane that came back long ago. It carries traces while telemetry is on."""
    return telemetry.channel(
        address,
        options=(
            ("grpc.initial_reconnect_backoff_ms", int(backoff.base * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(backoff.base * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(backoff.cap * 1000)),
        ),
    )
