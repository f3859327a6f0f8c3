"""The gateway in front of AstraRay's own replicas: ONNX Runtime serving the demo model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from astra._gen.astra.v1 import app_pb2
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.models import DemoModel, write_demo_model
from node_agent.replica import ReplicaServer, ReplicaSettings
from tests.gateway.conftest import Setup
from tests.gateway.route_feed import route
from tests.node_agent.waiting import eventually


@pytest.fixture
async def demo_replicas(tmp_path: Path) -> AsyncIterator[tuple[DemoModel, list[str]]]:
    """Two replicas serving the demo model (version 1); their endpoints."""
    demo = write_demo_model(tmp_path / "models")
    model = app_pb2.Model(name="demo", version="1", uri=str(demo.path), sha256=demo.sha256)
    settings = ReplicaSettings(host="127.0.0.1", cache_dir=str(tmp_path / "cache"))
    servers = [ReplicaServer([model], settings) for _ in range(2)]
    try:
        endpoints = [(await server.start()).endpoint for server in servers]
        yield demo, endpoints
    finally:
        for server in servers:
            await server.stop()


async def test_inference_metadata_and_load_reports_through_the_gateway(
    setup: Setup, demo_replicas: tuple[DemoModel, list[str]]
) -> None:
    demo, endpoints = demo_replicas
    await setup.feed.publish([route("demo", "1", *endpoints)])
    gateway = await setup.start_gateway()
    stub = setup.stub()
    batch = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    request = pb.ModelInferRequest(model_name="demo", model_version="1", id="r")
    request.inputs.add(name="input", datatype="FP32", shape=[2, 4])
    request.raw_input_contents.append(batch.tobytes())
    for _ in range(6):  # over both replicas
        response = await stub.ModelInfer(request)
        output = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(2, 3)
        np.testing.assert_allclose(output, demo.reference(batch), rtol=1e-5)
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="demo"))
    assert [tensor.name for tensor in metadata.inputs] == ["input"] and list(metadata.versions) == [
        "1"
    ]

    # The replicas' out-of-band ORCA reports reach the weights: requests per second,
    # utilization, errors per second.
    def reports() -> list[tuple[float, float, float] | None]:
        return [gateway.table.endpoints[endpoint].report for endpoint in endpoints]

    await eventually(lambda: all(report and report[0] > 0 for report in reports()), what="reports")
    for rps, utilization, eps in filter(None, reports()):
        assert rps > 0 and 0 < utilization <= 1 and eps == 0
