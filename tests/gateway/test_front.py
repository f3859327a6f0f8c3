"""The gateway's Open Inference Protocol front, end to end on loopback: a route feed,
real replicas, the gateway, and a client."""

from __future__ import annotations

import collections
import dataclasses
import logging

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from gateway._endpoints import MODEL_INFER, SERVICE
from gateway._front import SERVER_NAME
from tests.gateway.conftest import FAST, Setup
from tests.gateway.replica import add_request, served_by
from tests.gateway.route_feed import route
from tests.node_agent.waiting import eventually


async def test_routes_each_model_version_to_its_replicas_and_answers_untouched(
    setup: Setup,
) -> None:
    one = await setup.replica("one", [("add", "1")])
    two = await setup.replica("two", [("add", "2"), ("mul", "1")])
    await setup.feed.publish([route("add", "1", one.address), route("add", "2", two.address)])
    await setup.start_gateway()
    stub = setup.stub()
    response = await stub.ModelInfer(add_request([1.0, 2.5], version="1"))
    assert served_by(response) == "one" and response.model_version == "1" and response.id == "t"
    assert np.frombuffer(response.raw_output_contents[0], dtype=np.float32).tolist() == [2.0, 3.5]
    assert served_by(await stub.ModelInfer(add_request([0.0], version="2"))) == "two"
    # An empty version is the model's highest.
    assert served_by(await stub.ModelInfer(add_request([0.0], version=""))) == "two"


async def test_unknown_models_and_versions_are_not_found(setup: Setup) -> None:
    one = await setup.replica("one", [("add", "1"), ("add", "10")])
    await setup.feed.publish([route("add", "1", one.address), route("add", "10", one.address)])
    await setup.start_gateway()
    stub = setup.stub()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(add_request([1.0], model="nope"))
    assert (
        caught.value.code() == grpc.StatusCode.NOT_FOUND
        and "'nope' is not served" in caught.value.details()
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(add_request([1.0], version="3"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "model 'add' has no version '3' (versions: '1', '10')"
    for call in (
        stub.ModelReady(pb.ModelReadyRequest(name="nope")),
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_model_with_no_ready_endpoint_is_unavailable_and_says_so(setup: Setup) -> None:
    await setup.feed.publish([route("add", "1")])
    await setup.start_gateway()
    stub = setup.stub()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(add_request([1.0], version="1"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "model add:1 has no ready endpoint (none listed)"
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="add", version="1"))).ready


async def test_model_infer_failures_are_logged_as_every_rpc_is(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # ModelInfer skips the server's interceptors (a plain method), not their logs.
    await setup.feed.publish([route("add", "1")])
    await setup.start_gateway()
    stub = setup.stub()
    with caplog.at_level(logging.INFO, logger="astra.server.rpc"):
        for request in (add_request([1.0], model="nope"), add_request([1.0], version="1")):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.ModelInfer(request)

        def logged() -> list[tuple[int, str]]:
            return [
                (record.levelno, record.getMessage())
                for record in caplog.records
                if record.name == "astra.server.rpc" and MODEL_INFER in record.getMessage()
            ]

        await eventually(lambda: len(logged()) == 2, what="two ModelInfer log records")
    (missing_level, missing), (unavailable_level, unavailable) = logged()
    assert missing_level == logging.INFO and missing.startswith(f"{MODEL_INFER} NOT_FOUND ")
    assert unavailable_level == logging.WARNING
    assert unavailable.endswith("ms: model add:1 has no ready endpoint (none listed)")


async def test_bytes_that_are_not_a_request_are_an_invalid_argument(setup: Setup) -> None:
    await setup.start_gateway()
    infer = setup.channel().unary_unary(MODEL_INFER)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await infer(b"\x0a\x09abc")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_metadata_rpcs_answer_from_what_the_gateway_knows(setup: Setup) -> None:
    one = await setup.replica("one", [("add", "1"), ("add", "2")])
    await setup.feed.publish([route("add", "1", one.address), route("add", "2", one.address)])
    await setup.start_gateway()
    stub = setup.stub()
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    server = await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == SERVER_NAME and server.version
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="add", version="2"))).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="add"))).ready
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="add", version="1"))
    assert (
        metadata.name == "add"
        and list(metadata.versions) == ["1", "2"]
        and metadata.platform == "numpy"
    )
    assert [tensor.name for tensor in metadata.inputs] == ["x"] and [
        t.name for t in metadata.outputs
    ] == ["y"]


async def test_spreads_requests_by_base_weight(setup: Setup) -> None:
    light = await setup.replica("light")
    heavy = await setup.replica("heavy")
    await setup.feed.publish([route("add", "1", (light.address, 1.0), (heavy.address, 3.0))])
    # Base weights alone: a factor of 1 either way (latency noise on a busy machine moved
    # the shares when the gateway's own observations counted).
    await setup.start_gateway(dataclasses.replace(FAST, max_factor=1.0))
    stub = setup.stub()
    served = collections.Counter(
        [served_by(await stub.ModelInfer(add_request([1.0]))) for _ in range(200)]
    )
    assert 35 <= served["light"] <= 65 and served["light"] + served["heavy"] == 200


async def test_route_changes_take_effect(setup: Setup) -> None:
    one = await setup.replica("one")
    two = await setup.replica("two")
    await setup.feed.publish([route("add", "1", one.address)])
    await setup.start_gateway()
    stub = setup.stub()
    await setup.feed.publish([route("add", "1", one.address, two.address)])

    async def both_serve() -> bool:
        served = {served_by(await stub.ModelInfer(add_request([1.0]))) for _ in range(10)}
        return served == {"one", "two"}

    await eventually(both_serve, what="the new endpoint takes requests")
    await setup.feed.publish([route("add", "1", two.address)])
    gateway = setup.gateway
    assert gateway is not None
    await eventually(lambda: one.address not in gateway.table.endpoints, what="the endpoint leaves")
    assert {served_by(await stub.ModelInfer(add_request([1.0]))) for _ in range(10)} == {"two"}
    await setup.feed.publish(removed=[("add", "1")])

    async def gone() -> bool:
        try:
            await stub.ModelInfer(add_request([1.0]))
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
        return False

    await eventually(gone, what="the removed route answers NOT_FOUND")


async def test_health_and_reflection_describe_the_inference_service(setup: Setup) -> None:
    await setup.start_gateway()
    channel = setup.channel()
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, described = [answer async for answer in reflection.ServerReflectionInfo(iter(requests))]
    assert SERVICE in {service.name for service in listed.list_services_response.service}
    files = described.file_descriptor_response.file_descriptor_proto
    assert any(b"ModelInferRequest" in file for file in files)
