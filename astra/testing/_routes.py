"""A real SchedulerService serving routes its caller controls (WatchRoutes and GetRoutes),
so a gateway can run without the control plane: for tests and benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from astra._gen.astra.v1 import route_pb2
from astra._gen.astra.v1 import scheduler_service_pb2 as ss
from astra._gen.astra.v1 import scheduler_service_pb2_grpc as ss_grpc
from astra.server import Server

#: The descriptor of the service a :class:`RouteFeed` serves.
SCHEDULER_SERVICE = ss.DESCRIPTOR.services_by_name["SchedulerService"]


def route_spec(model: str, version: str, *endpoints: str | tuple[str, float]) -> route_pb2.Route:
    """A route; an endpoint is an address, or (address, base weight)."""
    listed = []
    for endpoint in endpoints:
        address, base = (endpoint, 1.0) if isinstance(endpoint, str) else endpoint
        listed.append(
            route_pb2.RouteEndpoint(
                address=address, base_weight=base, replica=f"apps/a/replicas/{address}"
            )
        )
    return route_pb2.Route(model=model, version=version, endpoints=listed)


class RouteFeed(ss_grpc.SchedulerServiceServicer):
    """Routes at revisions, as the Scheduler streams them: a snapshot, then each
    :meth:`publish` as one message; a stream resumes from any kept revision, and one
    from a revision before :meth:`compact` or past the last one is OUT_OF_RANGE."""

    def __init__(self) -> None:
        self.revision = 1
        self.routes: dict[tuple[str, str], route_pb2.Route] = {}
        self.history: list[ss.WatchRoutesResponse] = []
        self.first_kept = 1
        self.streams_started = 0
        self.start_revisions: list[int] = []
        self.models_asked: list[list[str]] = []
        self._changed = asyncio.Condition()
        self._generation = 0  # bumped by break_streams

    async def publish(
        self, routes: Iterable[route_pb2.Route] = (), removed: Iterable[tuple[str, str]] = ()
    ) -> int:
        """Change routes in one revision; returns it."""
        self.revision += 1
        message = ss.WatchRoutesResponse(revision=self.revision)
        for spec in routes:
            self.routes[(spec.model, spec.version)] = spec
            message.routes.append(spec)
        for model, version in removed:
            del self.routes[(model, version)]
            message.removed_routes.append(f"{model}:{version}")
        self.history.append(message)
        async with self._changed:
            self._changed.notify_all()
        return self.revision

    def compact(self) -> None:
        """Forget every revision so far: resuming from one is OUT_OF_RANGE."""
        self.first_kept = self.revision + 1

    async def break_streams(self) -> None:
        """End every open stream with UNAVAILABLE."""
        self._generation += 1
        async with self._changed:
            self._changed.notify_all()

    async def GetRoutes(self, request: ss.GetRoutesRequest, context: Any) -> ss.GetRoutesResponse:
        return ss.GetRoutesResponse(routes=list(self.routes.values()), revision=self.revision)

    async def WatchRoutes(
        self, request: ss.WatchRoutesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[ss.WatchRoutesResponse]:
        self.streams_started += 1
        self.start_revisions.append(request.start_revision)
        self.models_asked.append(list(request.models))
        generation = self._generation
        start = request.start_revision
        if start:
            if start < self.first_kept or start > self.revision + 1:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE, f"revision {start} is gone")
            position = next(
                (index for index, message in enumerate(self.history) if message.revision >= start),
                len(self.history),
            )
        else:
            yield ss.WatchRoutesResponse(
                revision=self.revision, snapshot=True, routes=list(self.routes.values())
            )
            position = len(self.history)
        while True:
            while position < len(self.history):
                yield self.history[position]
                position += 1
            async with self._changed:

                def moved(seen: int = position) -> bool:
                    return seen < len(self.history) or generation != self._generation

                await self._changed.wait_for(moved)
            if generation != self._generation:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the scheduler went away")


async def serve_route_feed(feed: RouteFeed) -> Server:
    """``feed`` on a started server on a free loopback port."""
    server = Server("127.0.0.1:0", grace=0.5)
    server.add_servicer(feed, ss_grpc.add_SchedulerServiceServicer_to_server, SCHEDULER_SERVICE)
    await server.start()
    return server
