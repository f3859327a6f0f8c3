"""OpenTelemetry through the gateway: one trace from the client through the gateway's
attempts to the replica (in this process and in another), and the gateway's metrics."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from astra.config import OtelSettings
from astra.models import write_demo_model
from astra.testing import OtlpCollector, metric_points
from gateway import WeightPolicy
from gateway._endpoints import MODEL_INFER
from tests.gateway.conftest import Setup
from tests.gateway.replica import add_request, served_by
from tests.gateway.route_feed import route
from tests.node_agent.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
INFER = MODEL_INFER.lstrip("/")


class Otel(NamedTuple):
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader


@pytest.fixture
def otel() -> Iterator[Otel]:
    """Telemetry on, to memory, before the gateway is made; off after the test."""
    found = Otel(InMemorySpanExporter(), InMemoryMetricReader())
    settings = OtelSettings(exporter="none", service_name="astra-test")
    telemetry.configure(settings, span_exporter=found.spans, metric_reader=found.metrics)
    yield found
    telemetry.shutdown()


def infer_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == INFER]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id),
        key=lambda span: span.start_time or 0,
    )


async def test_one_trace_goes_from_the_client_through_the_gateway_to_the_replica(
    otel: Otel, setup: Setup
) -> None:
    replica = await setup.replica("a")
    await setup.feed.publish([route("add", "1", replica.address)])
    gateway = await setup.start_gateway()
    async with telemetry.channel(gateway.address) as channel:
        with telemetry.tracer("test").start_as_current_span("client") as root:
            await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                add_request([1.0], version="1"), timeout=5
            )
    await eventually(lambda: len(infer_spans(otel.spans)) == 4, what="four ModelInfer spans")
    spans = infer_spans(otel.spans)
    (client,) = [s for s in spans if s.attributes.get("server.address") == gateway.address]
    (gateway_span,) = children(spans, client)
    (attempt,) = children(spans, gateway_span)
    (replica_span,) = children(spans, attempt)
    assert client.parent is not None and client.parent.span_id == root.get_span_context().span_id
    kinds = [span.kind for span in (client, gateway_span, attempt, replica_span)]
    assert kinds == [trace.SpanKind.CLIENT, trace.SpanKind.SERVER] * 2
    assert {span.context.trace_id for span in spans} == {root.get_span_context().trace_id}
    assert attempt.attributes["server.address"] == replica.address
    assert attempt.attributes["astra.attempt"] == 0
    assert attempt.attributes["rpc.grpc.status_code"] == 0
    # What the replica was sent names the gateway's attempt, not the client's span.
    trace_id, span_id = attempt.context.trace_id, attempt.context.span_id
    assert replica.metadata[-1]["traceparent"].startswith(f"00-{trace_id:032x}-{span_id:016x}-")


async def test_each_attempt_is_a_span_and_the_replica_that_served_is_under_the_retry(
    otel: Otel, setup: Setup
) -> None:
    refusing, serving = await setup.replica("refusing"), await setup.replica("serving")
    refusing.draining = True  # refuses without running: the gateway retries elsewhere
    await setup.feed.publish([route("add", "1", refusing.address, serving.address)])
    gateway = await setup.start_gateway()
    stub = setup.stub()
    for _ in range(2):  # equal weights: one of two requests is sent to ``refusing`` first
        assert served_by(await stub.ModelInfer(add_request([1.0], version="1"), timeout=5)) == (
            "serving"
        )
    assert refusing.refused == 1

    def retried() -> list[ReadableSpan]:
        spans = infer_spans(otel.spans)
        return [
            span
            for span in spans
            if span.kind is trace.SpanKind.SERVER and len(children(spans, span)) == 2
        ]

    await eventually(lambda: len(retried()) == 1, what="a request with two attempts")
    spans = infer_spans(otel.spans)
    first, second = children(spans, retried()[0])
    assert (first.attributes["astra.attempt"], second.attributes["astra.attempt"]) == (0, 1)
    assert first.attributes["server.address"] == refusing.address
    assert first.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert first.status.status_code is trace.StatusCode.ERROR
    assert second.attributes["server.address"] == serving.address
    assert second.attributes["rpc.grpc.status_code"] == 0
    await eventually(lambda: len(children(infer_spans(otel.spans), second)) == 1)
    assert gateway.table.endpoints[refusing.address].state.value == "draining"


async def test_requests_latency_and_endpoint_weights_are_measured_per_model(
    otel: Otel, setup: Setup
) -> None:
    a, b = await setup.replica("a"), await setup.replica("b")
    await setup.feed.publish([route("add", "1", (a.address, 1.0), (b.address, 3.0))])
    # No recomputation while the test runs: the weights stay the Scheduler's base weights.
    await setup.start_gateway(policy=WeightPolicy(interval=3600.0))
    stub = setup.stub()
    for _ in range(3):
        await stub.ModelInfer(add_request([1.0], version="1"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(add_request([1.0], model="no-such-model"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND

    def counted() -> dict[tuple[str, str, int], int]:
        return {
            (
                p.attributes["model"],
                p.attributes["version"],
                p.attributes["rpc.grpc.status_code"],
            ): (p.value)
            for p in metric_points(otel.metrics, "astra.gateway.requests")
        }

    # A model the gateway does not route counts under "": clients cannot add series.
    await eventually(lambda: counted() == {("add", "1", 0): 3, ("", "", 5): 1}, what="counts")
    durations = {
        (p.attributes["model"], p.attributes["rpc.grpc.status_code"]): p
        for p in metric_points(otel.metrics, "astra.gateway.request.duration")
    }
    assert durations["add", 0].count == 3 and durations["add", 0].sum > 0
    weights = {
        p.attributes["endpoint"]: p.value
        for p in metric_points(otel.metrics, "astra.gateway.endpoint.weight")
        if (p.attributes["model"], p.attributes["version"]) == ("add", "1")
    }
    assert set(weights) == {a.address, b.address}
    assert weights[b.address] == pytest.approx(3 * weights[a.address])  # the base weights


async def test_while_telemetry_is_off_the_clients_traceparent_goes_on_untouched(
    setup: Setup,
) -> None:
    assert not telemetry.enabled()
    replica = await setup.replica("a")
    await setup.feed.publish([route("add", "1", replica.address)])
    await setup.start_gateway()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await setup.stub().ModelInfer(
        add_request([1.0], version="1"), timeout=5, metadata=(("traceparent", traceparent),)
    )
    assert replica.metadata[-1]["traceparent"] == traceparent


async def test_traces_connect_across_processes(otel: Otel, setup: Setup, tmp_path: Path) -> None:
    """The replica runs in a process of its own, as under Ray, and exports over OTLP to
    a collector this test runs; the gateway (here) exports to memory."""
    demo = write_demo_model(tmp_path / "models")
    async with OtlpCollector() as collector:
        otel_settings = {"exporter": "otlp", "endpoint": collector.endpoint, "service_name": "t"}
        config = {
            "uri": str(demo.path),
            "sha256": demo.sha256,
            "cache_dir": str(tmp_path / "cache"),
            "otel": otel_settings,
        }
        paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
        log = tmp_path / "replica.log"
        with log.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.gateway.traced_replica", json.dumps(config),
                cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=errors,
            )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            endpoint = line.decode().strip()
            assert endpoint, f"the replica did not start: {log.read_text()}"
            await setup.feed.publish([route("demo", "1", endpoint)])
            gateway = await setup.start_gateway()
            request = pb.ModelInferRequest(model_name="demo", model_version="1")
            request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
            request.raw_input_contents.append(np.zeros((1, 4), dtype=np.float32).tobytes())
            async with telemetry.channel(gateway.address) as channel:
                with telemetry.tracer("test").start_as_current_span("client") as root:
                    await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
        finally:
            process.stdin.close()  # the replica stops and flushes its spans
            code = await asyncio.wait_for(process.wait(), timeout=60)
        assert code == 0, log.read_text()
    await eventually(lambda: len(infer_spans(otel.spans)) == 3, what="the spans of this process")
    spans = infer_spans(otel.spans)
    (attempt,) = [s for s in spans if s.attributes.get("server.address") == endpoint]
    (received,) = [r for r in collector.spans if r.span.name == INFER]
    assert received.service == "t-replica"
    assert received.span.kind == received.span.SPAN_KIND_SERVER
    assert int.from_bytes(received.span.trace_id, "big") == root.get_span_context().trace_id
    assert int.from_bytes(received.span.parent_span_id, "big") == attempt.context.span_id
