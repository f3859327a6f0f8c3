"""A replica in a real Ray actor process joins its callers' traces: the runtime hands
the agent's OpenTelemetry settings to the actor, which exports over OTLP."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from astra.config import OtelSettings
from astra.models import write_demo_model
from astra.testing import OtlpCollector
from node_agent.runtime import RayRuntime, RayRuntimeConfig
from tests.node_agent.ray_helpers import READY, Reports, replica, short_dir
from tests.node_agent.waiting import eventually

HEAD = "apps/demo/replicas/traced"
INFER = "inference.GRPCInferenceService/ModelInfer"
pytestmark = pytest.mark.timeout(300)


async def test_a_ray_replica_exports_its_spans_into_the_callers_trace() -> None:
    root = short_dir()
    model = write_demo_model(root / "models")
    reports = Reports()
    spans = InMemorySpanExporter()
    async with OtlpCollector() as collector:
        settings = OtelSettings(endpoint=collector.endpoint, service_name="astra-agent")
        telemetry.configure(settings, span_exporter=spans)
        runtime = RayRuntime(
            reports,
            config=RayRuntimeConfig(address="127.0.0.1", cache_dir=root / "cache", root=root),
        )
        try:
            await runtime.start(replica(HEAD, model))
            endpoint = (await reports.until(HEAD, READY, timeout=120.0)).endpoint
            request = pb.ModelInferRequest(model_name="demo")
            request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
            request.raw_input_contents.append(np.zeros((1, 4), dtype=np.float32).tobytes())
            async with telemetry.channel(endpoint) as channel:
                with telemetry.tracer("test").start_as_current_span("caller"):
                    await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
            (client,) = [span for span in spans.get_finished_spans() if span.name == INFER]

            def served_by_the_replica() -> list:
                return [
                    received.span
                    for received in collector.spans
                    if received.service == "astra-agent-replica" and received.span.name == INFER
                ]

            # The actor's spans go out in its exporter's next batch (every few seconds).
            await eventually(lambda: served_by_the_replica() != [], timeout=30, what="its span")
            (served,) = served_by_the_replica()
            assert int.from_bytes(served.trace_id, "big") == client.context.trace_id
            assert int.from_bytes(served.parent_span_id, "big") == client.context.span_id
            assert served.kind == served.SPAN_KIND_SERVER
        finally:
            await runtime.close()
            await asyncio.to_thread(telemetry.shutdown)
            shutil.rmtree(root, ignore_errors=True)
