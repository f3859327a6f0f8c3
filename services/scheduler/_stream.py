"""GetRoutes and WatchRoutes, read from ``/astra/v1/routes/`` in the store.

A stream starts with a snapshot (every route) or, when resumed from a revision, with
what changed since: the routes whose record was written at or after it, whole, and
the versions that were dropped. Then each store revision that changes route records
becomes one message. The stream remembers a digest of every route it has sent, so it
sends only the versions that changed (a model's record holds all its versions) and
reports a version that disappears in ``removed_routes`` as ``"{model}:{version}"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Collection

from astra import keys
from astra._gen.astra.v1 import route_pb2, scheduler_service_pb2
from astra.records import RouteRecord
from astra.store import CompactedError, EventType, KeyValue, Store

#: What a stream has sent: model -> version -> digest of the route.
Sent = dict[str, dict[str, bytes]]


class RevisionGoneError(Exception):
    """The revision a stream resumes from is out of the store's history (or ahead of it)."""


def routes_of(record: RouteRecord) -> list[route_pb2.Route]:
    """The API routes of one stored record, one per version, by version."""
    return [
        route_pb2.Route(
            model=record.model,
            version=version,
            endpoints=[
                route_pb2.RouteEndpoint(**{**endpoint, "node": f"nodes/{endpoint['node']}"})
                for endpoint in endpoints
            ],
        )
        for version, endpoints in sorted(record.versions.items())
    ]


def _wanted(kv: KeyValue, models: Collection[str]) -> bool:
    return not models or keys.last_segment(kv.key) in models


async def get_routes(
    store: Store, models: Collection[str]
) -> scheduler_service_pb2.GetRoutesResponse:
    """Every route (of ``models``, when given) and the revision they were read at."""
    result = await store.range(keys.ROUTES)
    response = scheduler_service_pb2.GetRoutesResponse(revision=result.revision)
    for kv in result.kvs:
        if _wanted(kv, models):
            response.routes.extend(routes_of(RouteRecord.from_bytes(kv.value)))
    return response


async def watch_routes(
    store: Store, models: Collection[str], start_revision: int
) -> AsyncIterator[scheduler_service_pb2.WatchRoutesResponse]:
    """The WatchRoutes stream (module docs).

    Raises:
        RevisionGoneError: ``start_revision`` is compacted or in the future.
    """
    sent: Sent = {}
    current = await store.range(keys.ROUTES)
    first = scheduler_service_pb2.WatchRoutesResponse(
        revision=current.revision, snapshot=not start_revision
    )
    if start_revision:
        if start_revision > current.revision + 1:
            raise RevisionGoneError(
                f"start_revision {start_revision} is past the store's revision {current.revision}"
            )
        try:
            before = await store.range(keys.ROUTES, revision=start_revision - 1)
        except CompactedError as exc:
            raise RevisionGoneError(f"{exc}; watch again from 0") from None
        for kv in before.kvs:
            if _wanted(kv, models):
                sent[keys.last_segment(kv.key)] = _digests(RouteRecord.from_bytes(kv.value))
    present: dict[str, RouteRecord | None] = dict.fromkeys(sent)
    for kv in current.kvs:
        if _wanted(kv, models) and (not start_revision or kv.mod_revision >= start_revision):
            present[keys.last_segment(kv.key)] = RouteRecord.from_bytes(kv.value)
        elif _wanted(kv, models):
            present.pop(keys.last_segment(kv.key), None)  # unchanged since start_revision
    _fill(first, sent, present)
    yield first
    async for events in store.watch(keys.ROUTES, start_revision=current.revision + 1):
        latest: dict[str, RouteRecord | None] = {}
        for event in events:
            if _wanted(event.kv, models):
                put = event.type is EventType.PUT
                latest[keys.last_segment(event.kv.key)] = (
                    RouteRecord.from_bytes(event.kv.value) if put else None
                )
        message = scheduler_service_pb2.WatchRoutesResponse(revision=events[-1].kv.mod_revision)
        _fill(message, sent, latest)
        if message.routes or message.removed_routes:
            yield message


def _fill(
    message: scheduler_service_pb2.WatchRoutesResponse,
    sent: Sent,
    changes: dict[str, RouteRecord | None],
) -> None:
    """Put the routes of changed models (``None``: deleted) that differ from what was
    sent into ``message``, and the versions each lost."""
    for model, record in sorted(changes.items(), key=lambda item: item[0]):
        before = sent.pop(model, {})
        if record is None:
            message.removed_routes.extend(f"{model}:{version}" for version in sorted(before))
            continue
        now = sent[model] = _digests(record)
        message.removed_routes.extend(
            f"{model}:{version}" for version in sorted(before.keys() - now.keys())
        )
        message.routes.extend(
            route for route in routes_of(record) if before.get(route.version) != now[route.version]
        )


def _digests(record: RouteRecord) -> dict[str, bytes]:
    return {
        route.version: hashlib.blake2b(route.SerializeToString(), digest_size=16).digest()
        for route in routes_of(record)
    }
