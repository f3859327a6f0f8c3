"""The gateway's OpenTelemetry, only while :mod:`astra.telemetry` is on.

- Traces: ModelInfer's SERVER span comes from :class:`astra.server.TelemetryInterceptor`
  (which joins the client's ``traceparent``); each attempt to forward the request is a
  CLIENT span under it, whose context goes to the replica as ``traceparent``, so the
  replica's SERVER span is a child of the attempt that reached it.
- Metrics: ``astra.gateway.requests`` (counter) and ``astra.gateway.request.duration``
  (histogram, s) by model, version and gRPC status code; ``astra.gateway.endpoint.weight``
  (gauge) per model version and endpoint. Attributes name only routes the gateway has:
  a request for a model it does not route counts under ``model=""``, so what clients
  send cannot grow the number of series.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable

import grpc
from opentelemetry import metrics

from astra import telemetry
from gateway._table import Route, Table

_SCOPE = "astra.gateway"


class Observed:
    """What one ModelInfer went through, for its metrics: the route it took, if any, and
    how many attempts it made."""

    __slots__ = ("attempts", "route")

    def __init__(self) -> None:
        self.route: Route | None = None
        self.attempts = 0


class _Requests:
    """The request counter and duration histogram of one meter."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.meter = meter
        self.count = meter.create_counter(
            "astra.gateway.requests",
            unit="{request}",
            description="ModelInfer requests answered by the gateway (QPS is its rate)",
        )
        self.duration = meter.create_histogram(
            "astra.gateway.request.duration",
            unit="s",
            description="ModelInfer latency through the gateway, retries included",
        )


_requests: _Requests | None = None


def record_request(observed: Observed, code: grpc.StatusCode, seconds: float) -> None:
    """Count one ModelInfer that ended with ``code`` after ``seconds``."""
    global _requests
    meter = telemetry.meter(_SCOPE)
    if _requests is None or _requests.meter is not meter:
        _requests = _Requests(meter)
    route = observed.route
    attributes: dict[str, str | int] = {
        "model": "" if route is None else route.model,
        "version": "" if route is None else route.version,
        "rpc.grpc.status_code": code.value[0],
    }
    _requests.count.add(1, attributes)
    _requests.duration.record(seconds, attributes)


#: The tables whose weights the current meter's gauge reports.
_weighed: tuple[metrics.Meter, weakref.WeakSet[Table]] | None = None


def observe_weights(table: Table) -> None:
    """Report the effective weight of every endpoint of every route of ``table``, each
    time metrics are collected (O(endpoints in routes) then, nothing per request), for
    as long as the table lives. One gauge per meter serves every gateway in the process."""
    global _weighed
    meter = telemetry.meter(_SCOPE)
    if _weighed is None or _weighed[0] is not meter:
        tables: weakref.WeakSet[Table] = weakref.WeakSet()
        meter.create_observable_gauge(
            "astra.gateway.endpoint.weight",
            callbacks=[functools.partial(_weights, tables)],
            unit="1",
            description="Effective routing weight of each endpoint of a model version "
            "(base weight times what the gateway saw and the replica reported)",
        )
        _weighed = meter, tables
    _weighed[1].add(table)


def _weights(
    tables: weakref.WeakSet[Table], options: metrics.CallbackOptions
) -> Iterable[metrics.Observation]:
    # The reader's thread calls this: copies, not views of what the loop changes.
    return [
        metrics.Observation(
            member.weight, {"model": route.model, "version": route.version, "endpoint": address}
        )
        for table in list(tables)
        for route in list(table.routes.values())
        for address, member in list(route.members.items())
    ]
