"""The gateway as people run it: ``python -m gateway`` (what ``astra gateway`` runs), a
component of ``astra up``, and tritonclient calling through it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from astra.config import Settings
from astra.runtime import Runtime
from astra.testing import free_port
from gateway import gateway_component
from programs.cli import LocalRuntime, run_components
from programs.cli._up import api_server
from tests.gateway.conftest import Setup
from tests.gateway.replica import add_request, served_by
from tests.gateway.route_feed import DESCRIPTOR, RouteFeed, route
from tests.node_agent.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]

TRITON = """
import json, sys
import numpy as np
import tritonclient.grpc as triton

client = triton.InferenceServerClient(url=sys.argv[1])
x = triton.InferInput("x", [3], "FP32")
x.set_data_from_numpy(np.array([1.0, 2.0, 3.0], dtype=np.float32))
result = client.infer("add", [x], model_version="1", outputs=[triton.InferRequestedOutput("y")])
out = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("add", "1"),
    "metadata": client.get_model_metadata("add", "1", as_json=True),
    "y": result.as_numpy("y").tolist(),
}
try:
    client.infer("nope", [x])
except triton.InferenceServerException as exc:
    out["missing"] = exc.status()
print(json.dumps(out))
"""


def _env() -> dict[str, str]:
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}


async def _ready(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(
                pb.ServerReadyRequest(), timeout=1
            )
        except grpc.aio.AioRpcError:
            return False
        return response.ready


async def test_tritonclient_calls_through_the_gateway(setup: Setup) -> None:
    replica = await setup.replica("one")
    await setup.feed.publish([route("add", "1", replica.address)])
    gateway = await setup.start_gateway()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        TRITON,
        gateway.address,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    out = json.loads(stdout)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["y"] == [2.0, 3.0, 4.0]
    assert out["metadata"]["name"] == "add" and out["metadata"]["inputs"][0]["name"] == "x"
    assert out["missing"] == "StatusCode.NOT_FOUND"
    assert replica.served == 1


@pytest.mark.parametrize("core", ["native", "python"])
async def test_python_m_gateway_serves_until_sigterm(setup: Setup, core: str) -> None:
    replica = await setup.replica("one")
    await setup.feed.publish([route("add", "1", replica.address)])
    address = f"127.0.0.1:{free_port()}"
    env = {**_env(), "ASTRA_PURE_PYTHON": "1" if core == "python" else "0"}
    command = [
        "-m",
        "gateway",
        "--api-address",
        setup.feed_server.address,
        "--gateway-address",
        address,
    ]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        await eventually(lambda: _ready(address), timeout=30, what="the gateway is ready")
        async with grpc.aio.insecure_channel(address) as channel:
            response = await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                add_request([1.0])
            )
        assert served_by(response) == "one"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    # The native core serves through the fast lane, the pure-Python one without.
    front = ", fast lane)" if core == "native" else ")"
    assert f"({core} routing core{front}" in stderr.decode()


@contextlib.asynccontextmanager
async def _feed_on_api(runtime: Runtime, feed: RouteFeed) -> AsyncIterator[None]:
    from astra._gen.astra.v1 import scheduler_service_pb2_grpc as ss_grpc

    runtime.api.add_servicer(feed, ss_grpc.add_SchedulerServiceServicer_to_server, DESCRIPTOR)
    yield


async def test_the_gateway_runs_as_a_component_of_astra_up(setup: Setup) -> None:
    replica = await setup.replica("one")
    feed = RouteFeed()
    await feed.publish([route("add", "1", replica.address)])
    gateway_address = f"127.0.0.1:{free_port()}"
    settings = Settings(
        api_address=f"127.0.0.1:{free_port()}",
        gateway_address=gateway_address,
        store_url="memory://",
        shutdown_grace=1,
    )
    runtime = LocalRuntime(settings)
    stop = asyncio.Event()
    components = (lambda runtime: _feed_on_api(runtime, feed), api_server, gateway_component)
    running = asyncio.create_task(run_components(runtime, components, stop))
    try:
        await eventually(lambda: _ready(gateway_address), timeout=30, what="the gateway is ready")
        async with grpc.aio.insecure_channel(gateway_address) as channel:
            assert (
                served_by(
                    await pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(add_request([1.0]))
                )
                == "one"
            )
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
