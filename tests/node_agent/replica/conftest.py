"""Replica servers on loopback, serving models the tests build."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from astra._gen.astra.v1 import app_pb2
from astra._gen.inference import grpc_predict_v2_pb2_grpc
from astra.models import DemoModel, write_demo_model
from node_agent.replica import ReplicaServer, ReplicaSettings, Serving
from tests.node_agent.replica.models import echo_model, half_model


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def demo(models_dir: Path) -> DemoModel:
    return write_demo_model(models_dir)


@pytest.fixture(scope="session")
def echo(models_dir: Path) -> tuple[Path, str]:
    return echo_model(models_dir)


@pytest.fixture(scope="session")
def half(models_dir: Path) -> tuple[Path, str]:
    return half_model(models_dir)


def settings(tmp_path: Path, **more: object) -> ReplicaSettings:
    cache = str(tmp_path / "cache")
    return ReplicaSettings(host="127.0.0.1", cache_dir=cache, **more)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def served(
    tmp_path_factory: pytest.TempPathFactory,
    demo: DemoModel,
    echo: tuple[Path, str],
    half: tuple[Path, str],
) -> AsyncIterator[tuple[ReplicaServer, Serving]]:
    """One server with the demo model (versions 1 and 2), the echo and half models."""
    models = [
        app_pb2.Model(name="demo", uri=str(demo.path), sha256=demo.sha256),
        app_pb2.Model(name="demo", version="2", uri=f"file://{demo.path}", sha256=demo.sha256),
        app_pb2.Model(
            name="echo", uri=str(echo[0]), sha256=echo[1], format=app_pb2.MODEL_FORMAT_ONNX
        ),
        app_pb2.Model(name="half", uri=str(half[0]), sha256=half[1]),
    ]
    server = ReplicaServer(models, settings(tmp_path_factory.mktemp("served")))
    serving = await server.start()
    yield server, serving
    await server.stop()


@pytest.fixture(scope="module")
async def stub(
    served: tuple[ReplicaServer, Serving],
) -> AsyncIterator[grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(served[1].endpoint) as channel:
        yield grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
