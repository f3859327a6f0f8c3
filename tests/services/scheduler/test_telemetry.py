"""OpenTelemetry across the control plane: an operator's DrainNode is one trace from the
caller into the Resource service, and the drain is measured until the node is out of
the routes; placements and nodes by phase are counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra._gen.astra.v1 import resource_service_pb2, resource_service_pb2_grpc
from astra.config import OtelSettings
from astra.store import Store
from astra.testing import metric_points
from tests.node_agent.waiting import eventually
from tests.services.app.plane import Plane, plane
from tests.services.scheduler.test_routes import endpoints_of, two_serving

DRAIN = "astra.v1.ResourceService/DrainNode"


class Traced(NamedTuple):
    control: Plane
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader


@pytest.fixture
async def traced(store: Store) -> AsyncIterator[Traced]:
    """The control plane, started once telemetry (to memory) is on."""
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure(OtelSettings(exporter="none"), span_exporter=spans, metric_reader=metrics)
    try:
        async with plane(store, scheduler={}) as control:
            yield Traced(control, spans, metrics)
    finally:
        telemetry.shutdown()


async def test_a_drain_is_traced_into_the_service_and_timed_until_out_of_the_routes(
    traced: Traced,
) -> None:
    control = traced.control
    async with control.fleet(3, drain_seconds=60):
        worker = await two_serving(control)
        assert metric_points(traced.metrics, "astra.scheduler.drain.out_of_routes") == []
        async with telemetry.channel(control.address) as channel:
            stub = resource_service_pb2_grpc.ResourceServiceStub(channel)
            with telemetry.tracer("test").start_as_current_span("operator") as operator:
                await stub.DrainNode(resource_service_pb2.DrainNodeRequest(name=worker.node))

        async def out_of_routes() -> bool:
            return worker.name not in await endpoints_of(control, "resnet")

        await eventually(out_of_routes, what=f"{worker.name} out of the route")
        await eventually(
            lambda: metric_points(traced.metrics, "astra.scheduler.drain.out_of_routes") != [],
            what="the drain timed",
        )
        (drained,) = metric_points(traced.metrics, "astra.scheduler.drain.out_of_routes")
        assert drained.count == 1 and drained.sum >= 0
        nodes = {
            p.attributes["phase"]: p.value
            for p in metric_points(traced.metrics, "astra.resource.nodes")
        }
        assert nodes["DRAINING"] == 1 and nodes["READY"] == 2
        placed = sum(p.value for p in metric_points(traced.metrics, "astra.app.placements"))
        assert placed >= 2

    finished = traced.spans.get_finished_spans()
    (client,) = [s for s in finished if s.name == DRAIN and s.kind is trace.SpanKind.CLIENT]
    (server,) = [s for s in finished if s.name == DRAIN and s.kind is trace.SpanKind.SERVER]
    assert client.parent is not None
    assert client.parent.span_id == operator.get_span_context().span_id
    assert server.context.trace_id == operator.get_span_context().trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.attributes["rpc.grpc.status_code"] == 0
