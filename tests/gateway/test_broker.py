"""The gateway's AsyncInferenceService: submissions queued in a real Redis, run by a
real ONNX Runtime replica that pulls them, results got, waited for and watched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra._gen.astra.v1 import app_pb2
from astra._gen.astra.v1 import async_inference_service_pb2 as apb
from astra._gen.astra.v1 import async_inference_service_pb2_grpc as apb_grpc
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.broker import QUEUED, RUNNING, SUCCEEDED
from astra.config import OtelSettings
from astra.models import DemoModel, write_demo_model
from astra.testing import RedisProcess, RouteFeed, route_spec, serve_route_feed
from gateway import BrokerOptions, Gateway
from node_agent.replica import ReplicaServer, ReplicaSettings
from tests.gateway.conftest import FAST
from tests.node_agent.replica.pulling import check_output, demo_request, unique
from tests.node_agent.waiting import eventually

Code = grpc.StatusCode


@dataclass
class Fleet:
    """One pulling replica of ``model`` (version 1), routed by a route feed; ``idle`` is
    routed too but has no replica pulling it."""

    demo: DemoModel
    model: str
    idle: str
    feed_address: str
    redis_url: str
    endpoint: str


@pytest.fixture(scope="module")
async def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisProcess
) -> AsyncIterator[Fleet]:
    root = tmp_path_factory.mktemp("broker")
    demo = write_demo_model(root)
    model, idle = unique("demo"), unique("idle")
    replica = ReplicaServer(
        [app_pb2.Model(name=model, uri=str(demo.path), sha256=demo.sha256)],
        ReplicaSettings(
            host="127.0.0.1", cache_dir=str(root / "cache"), redis_url=redis_server.url
        ),
    )
    serving = await replica.start()
    feed = RouteFeed()
    await feed.publish(
        [route_spec(model, "1", serving.endpoint), route_spec(idle, "1", serving.endpoint)]
    )
    feed_server = await serve_route_feed(feed)
    try:
        yield Fleet(demo, model, idle, feed_server.address, redis_server.url, serving.endpoint)
    finally:
        await feed_server.shutdown(grace=0.5)
        await replica.stop()


@dataclass
class Client:
    stub: apb_grpc.AsyncInferenceServiceStub
    channel: grpc.aio.Channel


async def start_gateway(fleet: Fleet, **options: float) -> tuple[Gateway, Client]:
    gateway = Gateway(
        scheduler=fleet.feed_address,
        address="127.0.0.1:0",
        policy=FAST,
        broker=BrokerOptions(redis_url=fleet.redis_url, **options),  # type: ignore[arg-type]
    )
    await gateway.start()
    await gateway.synced(timeout=10)
    channel = grpc.aio.insecure_channel(gateway.address)
    return gateway, Client(apb_grpc.AsyncInferenceServiceStub(channel), channel)


@pytest.fixture
async def client(fleet: Fleet) -> AsyncIterator[Client]:
    gateway, client = await start_gateway(fleet)
    yield client
    await client.channel.close()
    await gateway.shutdown(grace=0.5)


async def status_of(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def submission(model: str, seed: int, inference_id: str = "") -> apb.SubmitInferenceRequest:
    request, _ = demo_request(model, seed)
    return apb.SubmitInferenceRequest(request=request, inference_id=inference_id)


async def test_submit_watch_and_get_a_result(fleet: Fleet, client: Client) -> None:
    request, batch = demo_request(fleet.model, 7)
    submitted = await client.stub.SubmitInference(apb.SubmitInferenceRequest(request=request))
    inference = submitted.inference
    assert inference.state == QUEUED and len(inference.inference_id) == 32
    assert (inference.model, inference.version) == (fleet.model, "1")
    watched = [
        message.inference
        async for message in client.stub.WatchInferenceResult(
            apb.WatchInferenceResultRequest(inference_id=inference.inference_id)
        )
    ]
    states = [item.state for item in watched]
    assert states[-1] == SUCCEEDED and set(states) <= {QUEUED, RUNNING, SUCCEEDED}, states
    done = watched[-1]
    assert (done.attempts, done.replica) == (1, fleet.endpoint)
    assert done.response.id == "req-7"
    check_output(fleet.demo, done.response, batch)
    assert done.submit_time.ToMilliseconds() <= done.start_time.ToMilliseconds()
    assert done.start_time.ToMilliseconds() <= done.finish_time.ToMilliseconds()
    got = await client.stub.GetInferenceResult(
        apb.GetInferenceResultRequest(inference_id=inference.inference_id)
    )
    assert got.inference == done


async def test_get_waits_for_the_result(fleet: Fleet, client: Client) -> None:
    request, batch = demo_request(fleet.model, 3)
    submitted = await client.stub.SubmitInference(
        apb.SubmitInferenceRequest(request=request, inference_id="wait-" + unique("x"))
    )
    got = await client.stub.GetInferenceResult(
        apb.GetInferenceResultRequest(
            inference_id=submitted.inference.inference_id, wait=Duration(seconds=20)
        ),
        timeout=30,
    )
    assert got.inference.state == SUCCEEDED
    check_output(fleet.demo, got.inference.response, batch)


async def test_submitting_an_id_again_returns_the_accepted_inference(
    fleet: Fleet, client: Client
) -> None:
    inference_id = unique("once")
    first = await client.stub.SubmitInference(submission(fleet.idle, 1, inference_id))
    again = await client.stub.SubmitInference(submission(fleet.idle, 2, inference_id))
    assert again.inference == first.inference


async def test_malformed_submissions_are_invalid(fleet: Fleet, client: Client) -> None:
    raw = client.channel.unary_unary("/astra.v1.AsyncInferenceService/SubmitInference")
    error = await status_of(raw(b"\xff\xff\xff"))
    assert error.code() == Code.INVALID_ARGUMENT
    assert "does not parse" in (error.details() or "")
    cases = {
        "request: is required": apb.SubmitInferenceRequest(),
        "request.model_name": apb.SubmitInferenceRequest(
            request=pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="x")])
        ),
        "request.inputs: must have at least one": apb.SubmitInferenceRequest(
            request=pb.ModelInferRequest(model_name=fleet.model)
        ),
        "inference_id: must be 1 to 128": submission(fleet.model, 0, "no spaces"),
    }
    for expected, message in cases.items():
        error = await status_of(client.stub.SubmitInference(message))
        assert error.code() == Code.INVALID_ARGUMENT, expected
        assert expected in (error.details() or ""), (expected, error.details())
    error = await status_of(client.stub.GetInferenceResult(apb.GetInferenceResultRequest()))
    assert (error.code(), "inference_id" in (error.details() or "")) == (
        Code.INVALID_ARGUMENT,
        True,
    )
    error = await status_of(
        client.stub.GetInferenceResult(
            apb.GetInferenceResultRequest(inference_id="x", wait=Duration(seconds=-1))
        )
    )
    assert error.code() == Code.INVALID_ARGUMENT and "wait" in (error.details() or "")


async def test_unknown_models_and_inferences_are_not_found(fleet: Fleet, client: Client) -> None:
    error = await status_of(client.stub.SubmitInference(submission("nope", 0)))
    assert (error.code(), error.details()) == (Code.NOT_FOUND, "model 'nope' is not served")
    wrong_version = submission(fleet.model, 0)
    wrong_version.request.model_version = "9"
    error = await status_of(client.stub.SubmitInference(wrong_version))
    assert error.code() == Code.NOT_FOUND and "versions: '1'" in (error.details() or "")
    for call in (
        client.stub.GetInferenceResult(apb.GetInferenceResultRequest(inference_id="unknown")),
        client.stub.WatchInferenceResult(
            apb.WatchInferenceResultRequest(inference_id="unknown")
        ).read(),
    ):
        error = await status_of(call)
        assert error.code() == Code.NOT_FOUND and "no inference 'unknown'" in (
            error.details() or ""
        )


async def test_a_full_backlog_is_resource_exhausted(fleet: Fleet) -> None:
    """The idle model has no replica pulling: its backlog only grows."""
    gateway, client = await start_gateway(fleet, max_backlog=3)
    try:
        backlog = await gateway._broker.backlog(fleet.idle, "1")  # type: ignore[union-attr]
        for seed in range(max(0, 3 - backlog)):
            await client.stub.SubmitInference(submission(fleet.idle, seed))
        error = await status_of(client.stub.SubmitInference(submission(fleet.idle, 9)))
        assert error.code() == Code.RESOURCE_EXHAUSTED
        assert "the limit is 3" in (error.details() or "")
    finally:
        await client.channel.close()
        await gateway.shutdown(grace=0.5)


async def test_results_expire_after_their_ttl(fleet: Fleet) -> None:
    gateway, client = await start_gateway(fleet, result_ttl=0.5)
    try:
        submitted = await client.stub.SubmitInference(submission(fleet.model, 5))
        get = apb.GetInferenceResultRequest(
            inference_id=submitted.inference.inference_id, wait=Duration(seconds=20)
        )
        done = (await client.stub.GetInferenceResult(get, timeout=30)).inference
        assert done.state == SUCCEEDED
        ttl = done.expire_time.ToMilliseconds() - done.finish_time.ToMilliseconds()
        assert ttl == 500

        async def expired() -> bool:
            try:
                await client.stub.GetInferenceResult(get)
            except grpc.aio.AioRpcError as error:
                return error.code() == Code.NOT_FOUND
            return False

        await eventually(expired, what="the result expired")
    finally:
        await client.channel.close()
        await gateway.shutdown(grace=0.5)


async def test_submission_and_run_are_traced_and_counted(fleet: Fleet) -> None:
    """The replica's run span joins the submission's trace through the queue."""
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry.configure(OtelSettings(exporter="none"), span_exporter=spans, metric_reader=metrics)
    try:
        gateway, client = await start_gateway(fleet)
        try:
            submitted = await client.stub.SubmitInference(submission(fleet.model, 11))
            get = apb.GetInferenceResultRequest(
                inference_id=submitted.inference.inference_id, wait=Duration(seconds=20)
            )
            assert (await client.stub.GetInferenceResult(get, timeout=30)).inference.state == (
                SUCCEEDED
            )
        finally:
            await client.channel.close()
            await gateway.shutdown(grace=0.5)

        def named(name: str) -> list[Any]:
            return [span for span in spans.get_finished_spans() if span.name == name]

        await eventually(lambda: bool(named("AsyncInference.run")), what="the run span")
        (enqueue,) = named("AsyncInference.enqueue")
        (run,) = named("AsyncInference.run")
        assert run.context.trace_id == enqueue.context.trace_id
        assert run.attributes["astra.inference_id"] == submitted.inference.inference_id
        assert enqueue.attributes["astra.inference_id"] == submitted.inference.inference_id
        data = metrics.get_metrics_data()
        names = {
            metric.name
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }
        assert "astra.broker.submissions" in names
    finally:
        telemetry.shutdown()
