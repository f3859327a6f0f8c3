"""A replica server over real gRPC: the Open Inference Protocol against numpy's answers,
bad input, load reports, drain under load, and models that must never serve."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import astra
from astra._gen.astra.v1 import app_pb2
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc
from astra.inference import decode_raw, decode_typed, encode_raw, encode_typed
from astra.models import DemoModel, write_demo_model
from node_agent.replica import (
    LOAD_HEADER,
    ORCA_METHOD,
    ORCA_SERVICE,
    ChecksumError,
    LoadReport,
    ModelLoadError,
    OrcaLoadReport,
    OrcaLoadReportRequest,
    ReplicaServer,
    Serving,
)
from tests.astra.inference.test_tensors import SAMPLES
from tests.node_agent.replica.conftest import settings
from tests.node_agent.replica.models import ECHO_INPUTS
from tests.node_agent.waiting import eventually

Stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub
Tensor = pb.ModelInferRequest.InferInputTensor


def typed_request(
    model: str, inputs: dict[str, tuple[str, np.ndarray]], **more: object
) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[
            Tensor(
                name=name,
                datatype=datatype,
                shape=array.shape,
                contents=encode_typed(array, datatype),
            )
            for name, (datatype, array) in inputs.items()
        ],
        **more,  # type: ignore[arg-type]
    )


def raw_request(model: str, inputs: dict[str, tuple[str, np.ndarray]]) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[
            Tensor(name=name, datatype=datatype, shape=array.shape)
            for name, (datatype, array) in inputs.items()
        ],
        raw_input_contents=[encode_raw(array, datatype) for datatype, array in inputs.values()],
    )


def demo_input(rows: int = 3) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)


async def infer_error(stub: Stub, request: pb.ModelInferRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(request)
    return caught.value


async def test_health_and_metadata(stub: Stub) -> None:
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="demo", version="2"))).ready
    server = await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert (server.name, server.version) == ("astra-replica", astra.__version__)
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="demo"))
    assert (metadata.name, list(metadata.versions), metadata.platform) == (
        "demo",
        ["1"],
        "onnxruntime_onnx",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("input", "FP32", [-1, 4])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("output", "FP32", [-1, 3])
    ]


@pytest.mark.parametrize(
    "call",
    [
        lambda stub: stub.ModelReady(pb.ModelReadyRequest(name="nope")),
        lambda stub: stub.ModelMetadata(pb.ModelMetadataRequest(name="demo", version="3")),
        lambda stub: stub.ModelInfer(pb.ModelInferRequest(model_name="nope")),
    ],
)
async def test_unknown_models_and_versions_are_not_found(stub: Stub, call: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(stub)  # type: ignore[operator]
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "serving: demo (1), demo (2), echo (1), half (1)" in caught.value.details()


async def test_typed_inference_matches_numpy(stub: Stub, demo: DemoModel) -> None:
    batch = demo_input()
    call = stub.ModelInfer(typed_request("demo", {"input": ("FP32", batch)}, id="req-1"))
    response = await call
    assert (response.model_name, response.model_version, response.id) == ("demo", "1", "req-1")
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("output", "FP32", [3, 3])
    assert not response.raw_output_contents
    np.testing.assert_allclose(
        np.array(output.contents.fp32_contents).reshape(3, 3), demo.reference(batch), rtol=1e-5
    )
    load = LoadReport.parse(dict(await call.trailing_metadata())[LOAD_HEADER])
    assert load.rps > 0 and load.in_flight == 0 and load.latency_ms > 0 and load.eps == 0


async def test_raw_inference_matches_numpy(stub: Stub, demo: DemoModel) -> None:
    batch = demo_input(5)
    response = await stub.ModelInfer(raw_request("demo", {"input": ("FP32", batch)}))
    assert not response.outputs[0].HasField("contents")
    result = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(5, 3)
    np.testing.assert_allclose(result, demo.reference(batch), rtol=1e-5)


#: One sample per echo input; ONNX strings are text, so BYTES elements are UTF-8 here.
ECHO_SAMPLES = {
    name: (
        datatype,
        SAMPLES[datatype]
        if datatype != "BYTES"
        else np.array([[b"", b"a"], [b"xyz", "\u00e9".encode()]]),
    )
    for name, (datatype, _) in ECHO_INPUTS.items()
}


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
async def test_every_datatype_goes_through_a_model(stub: Stub, raw: bool) -> None:
    response = await stub.ModelInfer((raw_request if raw else typed_request)("echo", ECHO_SAMPLES))
    assert len(response.raw_output_contents) == (len(ECHO_SAMPLES) if raw else 0)
    assert [output.name for output in response.outputs] == [f"{name}_out" for name in ECHO_SAMPLES]
    for index, output in enumerate(response.outputs):
        datatype, expected = ECHO_SAMPLES[output.name.removesuffix("_out")]
        assert (output.datatype, tuple(output.shape)) == (datatype, expected.shape)
        got = (
            decode_raw(response.raw_output_contents[index], datatype, expected.shape)
            if raw
            else decode_typed(output.contents, datatype, expected.shape)
        )
        np.testing.assert_array_equal(got, expected)


async def test_bytes_that_are_not_text_are_refused(stub: Stub) -> None:
    inputs = dict(
        ECHO_SAMPLES, text=("BYTES", np.array([[b"\xff", b""], [b"", b""]], dtype=object))
    )
    error = await infer_error(stub, raw_request("echo", inputs))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(
        'inputs[5].contents: input "text" has a BYTES element that is not UTF-8'
    )


async def test_fp16_answers_raw_even_to_a_typed_request(stub: Stub) -> None:
    half = SAMPLES["FP16"]
    response = await stub.ModelInfer(raw_request("half", {"h": ("FP16", half)}))
    np.testing.assert_array_equal(
        np.frombuffer(response.raw_output_contents[0], "<f2").reshape(2, 2), half
    )


async def test_requested_outputs_only(stub: Stub) -> None:
    request = typed_request(
        "echo",
        ECHO_SAMPLES,
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="i64_out")],
    )
    response = await stub.ModelInfer(request)
    assert [output.name for output in response.outputs] == ["i64_out"]
    assert list(response.outputs[0].contents.int64_contents) == SAMPLES["INT64"].ravel().tolist()


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            typed_request("demo", {"x": ("FP32", np.zeros((1, 4), np.float32))}),
            (
                'inputs[0].name: unknown input "x"; the model\'s inputs are "input" (FP32 [-1, 4]); '
                'inputs: input "input" (FP32 [-1, 4]) is missing'
            ),
        ),
        (
            typed_request("demo", {"input": ("FP64", np.zeros((1, 4)))}),
            'inputs[0].datatype: input "input" is FP64, expected FP32',
        ),
        (
            typed_request("demo", {"input": ("FP32", np.zeros((2, 5), np.float32))}),
            'inputs[0].shape: input "input" has shape [2, 5], expected [-1, 4] (-1: any size)',
        ),
        (
            pb.ModelInferRequest(
                model_name="demo",
                inputs=[
                    Tensor(
                        name="input",
                        datatype="FP32",
                        shape=[2, 4],
                        contents=pb.InferTensorContents(fp32_contents=[1]),
                    )
                ],
            ),
            (
                'inputs[0].contents: input "input" has 1 elements in fp32_contents, '
                "expected 8 for shape [2, 4]"
            ),
        ),
        (
            pb.ModelInferRequest(
                model_name="demo",
                inputs=[Tensor(name="input", datatype="FP32", shape=[1, 4])],
                raw_input_contents=[b"\0" * 4],
            ),
            'inputs[0].contents: input "input" has 4 bytes of raw contents, expected 16 (4 x FP32)',
        ),
        (
            pb.ModelInferRequest(model_name="demo", raw_input_contents=[b"", b""]),
            (
                "raw_input_contents: holds 2 tensors, expected one per input (0); "
                'inputs: input "input" (FP32 [-1, 4]) is missing'
            ),
        ),
        (
            typed_request(
                "demo",
                {"input": ("FP32", np.zeros((1, 4), np.float32))},
                outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="logits")],
            ),
            (
                'outputs[0].name: unknown output "logits"; '
                'the model\'s outputs are "output" (FP32 [-1, 3])'
            ),
        ),
    ],
    ids=["name", "datatype", "shape", "count", "raw-size", "raw-count", "output"],
)
async def test_bad_input_names_the_tensor_and_what_was_expected(
    stub: Stub, request_: pb.ModelInferRequest, message: str
) -> None:
    error = await infer_error(stub, request_)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


async def test_orca_out_of_band_reports(served: tuple[ReplicaServer, Serving], stub: Stub) -> None:
    await stub.ModelInfer(raw_request("demo", {"input": ("FP32", demo_input())}))
    request = OrcaLoadReportRequest()
    request.report_interval.FromMilliseconds(100)
    async with grpc.aio.insecure_channel(served[1].endpoint) as channel:
        stream = channel.unary_stream(
            f"/{ORCA_SERVICE}/{ORCA_METHOD}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=OrcaLoadReport.FromString,
        )(request)
        reports = []
        async for report in stream:
            reports.append(report)
            if len(reports) == 3:
                stream.cancel()
                break
    assert all(report.rps_fractional > 0 for report in reports)
    assert {"inflight", "latency_ms"} <= set(reports[-1].named_metrics)


async def test_a_checksum_mismatch_never_serves(tmp_path: Path, demo: DemoModel) -> None:
    wrong = hashlib.sha256(b"another model").hexdigest()
    server = ReplicaServer(
        [app_pb2.Model(name="demo", uri=str(demo.path), sha256=wrong)], settings(tmp_path)
    )
    with pytest.raises(
        ChecksumError, match=f"sha256 mismatch for {demo.path}: expected {wrong}, got {demo.sha256}"
    ):
        await server.start()
    await server.stop()


async def test_a_model_onnx_runtime_refuses_fails_with_its_message(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    model = app_pb2.Model(
        name="broken", uri=str(garbage), sha256=hashlib.sha256(garbage.read_bytes()).hexdigest()
    )
    server = ReplicaServer([model], settings(tmp_path))
    with pytest.raises(
        ModelLoadError, match=r"ONNX Runtime cannot load model broken version 1: .*(?i:protobuf)"
    ):
        await server.start()
    await server.stop()


async def test_drain_under_load_loses_no_request(tmp_path: Path) -> None:
    heavy = write_demo_model(tmp_path, name="heavy.onnx", hidden=256, depth=6)
    model = app_pb2.Model(name="heavy", uri=str(heavy.path), sha256=heavy.sha256)
    server = ReplicaServer([model], settings(tmp_path, workers=2))
    serving = await server.start()
    batch = demo_input(64)
    expected = heavy.reference(batch)
    outcomes: Counter[str] = Counter()
    drained = asyncio.Event()

    async def client(stub: Stub) -> None:
        while not drained.is_set():
            try:
                response = await stub.ModelInfer(raw_request("heavy", {"input": ("FP32", batch)}))
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1
                assert "draining" in exc.details()
                continue
            result = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(expected.shape)
            np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
            outcomes["OK"] += 1

    async with grpc.aio.insecure_channel(serving.endpoint) as channel:
        stub = Stub(channel)
        clients = [asyncio.ensure_future(client(stub)) for _ in range(8)]
        await eventually(lambda: outcomes["OK"] >= 20, timeout=30, what="requests flow")
        await eventually(lambda: server.load.in_flight > 0, what="requests in flight")
        await server.drain()  # shuts the gate before its first await: those stay admitted
        assert server.load.in_flight == 0  # every admitted request finished
        assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await eventually(lambda: outcomes["UNAVAILABLE"] >= 8, what="refusals after the drain")
        drained.set()
        await asyncio.gather(*clients)
    await server.stop()
    assert set(outcomes) == {"OK", "UNAVAILABLE"}


async def test_a_service_time_holds_the_worker_and_counts_in_the_load(
    tmp_path: Path, demo: DemoModel
) -> None:
    """The benchmarks' slower replica: each inference keeps its worker ``service_time``
    longer, and the load reports count that time as work."""
    model = app_pb2.Model(name="demo", uri=str(demo.path), sha256=demo.sha256)
    server = ReplicaServer([model], settings(tmp_path, workers=1, service_time=0.25))
    serving = await server.start()
    try:
        async with grpc.aio.insecure_channel(serving.endpoint) as channel:
            batch = demo_input(2)
            response = await Stub(channel).ModelInfer(
                raw_request("demo", {"input": ("FP32", batch)})
            )
        result = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(2, 3)
        np.testing.assert_allclose(result, demo.reference(batch), rtol=1e-4, atol=1e-5)
        report = server.load
        assert report.latency_ms >= 250
        assert report.utilization > 0
    finally:
        await server.stop()
