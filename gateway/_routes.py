"""Following the Scheduler's routes: a WatchRoutes stream that resumes where it broke."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import grpc

from astra._gen.astra.v1 import scheduler_service_pb2 as ss
from astra.rpc import Backoff, open_channel

_log = logging.getLogger(__name__)

#: The Scheduler's route stream.
WATCH_ROUTES = f"/{ss.DESCRIPTOR.services_by_name['SchedulerService'].full_name}/WatchRoutes"

Apply = Callable[[ss.WatchRoutesResponse], None]


class RouteWatcher:
    """Streams the routes from the Scheduler at ``target`` into ``apply``, for ever.

    The first stream starts with a snapshot; a broken stream is opened again after a
    backoff from the revision after the last one received, so nothing is missed and
    nothing is applied twice, and a revision the Scheduler no longer has
    (OUT_OF_RANGE) starts over with a snapshot. While the Scheduler is away the routes
    in hand stay in use.

    Args:
        target: the Scheduler's ``host:port``.
        apply: called with each message, in order.
        models: only these models (empty: all).
        backoff: delays between attempts.
    """

    def __init__(
        self,
        target: str,
        apply: Apply,
        *,
        models: Sequence[str] = (),
        backoff: Backoff | None = None,
    ) -> None:
        self._backoff = backoff or Backoff(base=0.1, cap=5.0)
        self._channel = open_channel(target, backoff=self._backoff)
        self._watch: grpc.aio.UnaryStreamMultiCallable[
            ss.WatchRoutesRequest, ss.WatchRoutesResponse
        ] = self._channel.unary_stream(
            WATCH_ROUTES,
            request_serializer=ss.WatchRoutesRequest.SerializeToString,
            response_deserializer=ss.WatchRoutesResponse.FromString,
        )
        self._apply = apply
        self._models = list(models)
        self._target = target
        #: The revision the routes in hand are at (0: none yet).
        self.revision = 0
        #: Set once the first snapshot is applied.
        self.synced = asyncio.Event()

    async def run(self) -> None:
        """Follow the routes until cancelled."""
        while True:
            try:
                await self._follow()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                    _log.info(
                        "routes: revision %d is gone (%s); watching again from a snapshot",
                        self.revision,
                        exc.details(),
                    )
                    self.revision = 0
                else:
                    _log.warning(
                        "routes: the stream from %s broke (%s: %s)",
                        self._target,
                        exc.code().name,
                        exc.details(),
                    )
            await self._backoff.sleep()

    async def _follow(self) -> None:
        start = self.revision + 1 if self.revision else 0
        stream = self._watch(ss.WatchRoutesRequest(models=self._models, start_revision=start))
        async for message in stream:
            self._apply(message)
            self.revision = message.revision
            self._backoff.reset()
            if message.snapshot and not self.synced.is_set():
                _log.info(
                    "routes: %d from %s at revision %d",
                    len(message.routes),
                    self._target,
                    message.revision,
                )
                self.synced.set()

    async def close(self) -> None:
        await self._channel.close()
