"""OpenTelemetry metrics of the Resource service: transitions, heartbeats, evictions, nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from astra import telemetry
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.config import OtelSettings
from astra.store import Store
from tests.services.resource.conftest import eventually, heartbeat


@pytest.fixture
def metrics() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    telemetry.configure(OtelSettings(exporter="none"), metric_reader=reader)
    yield reader
    telemetry.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], object]]]:
    found: dict[str, list[tuple[dict[str, object], object]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    found.setdefault(metric.name, []).append(
                        (dict(point.attributes), value if value is not None else point.count)
                    )
    return found


async def test_transitions_heartbeats_and_evictions_are_measured(
    metrics: InMemoryMetricReader, store: Store, start_replica
):
    replica = await start_replica(store, dead_after=0.3)
    kept, lost = await replica.register("nodes/kept"), await replica.register("nodes/lost")
    call = replica.stub.Heartbeat()
    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(kept), heartbeat(lost)]))
    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/kept"))

    async def lost_is_dead() -> bool:
        await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(kept)]))  # kept stays alive
        return (await replica.get("nodes/lost")).phase == node_pb2.NODE_PHASE_DEAD

    await eventually(lost_is_dead)
    call.cancel()
    written = {"READY": 0, "DRAINING": 1, "DEAD": 1}  # in the view: written, not just decided
    await eventually(
        lambda: _nodes(metrics) == written and "astra.resource.eviction" in _points(metrics)
    )
    points = _points(metrics)

    transitions = {
        attributes["kind"]: value for attributes, value in points["astra.resource.transitions"]
    }
    assert transitions == {"register": 2, "drain": 1, "dead": 1}
    assert sum(value for _, value in points["astra.resource.heartbeats"]) >= 3
    assert [count for _, count in points["astra.resource.eviction"]] == [1]


def _nodes(reader: InMemoryMetricReader) -> dict[object, object]:
    return {
        attributes["phase"]: value
        for attributes, value in _points(reader).get("astra.resource.nodes", [])
    }
