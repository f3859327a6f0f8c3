"""Each service run on its own (``astra serve SERVICE``) on a real etcd: the server answers
gRPC health for itself and its service, lists its service, health and reflection through
reflection, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from astra.testing import EtcdProcess, free_port
from tests.programs.cli.running import ROOT, child_env

_HEALTH = "grpc.health.v1.Health"
_REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


@contextlib.asynccontextmanager
async def _service(name: str, *args: str) -> AsyncIterator[str]:
    """``astra serve NAME ARGS`` on a free port; yields its address, then stops it with
    SIGTERM and checks that it exits 0."""
    address = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "programs.cli", "serve", name, "--api-address", address, *args,
        env=child_env(), cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield address
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=60, wait_for_ready=True
    )
    return response.status


async def _reflected(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request]), timeout=10):
        return {service.name for service in response.list_services_response.service}
    raise AssertionError("reflection answered nothing")


async def _check(address: str, service: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await _health(channel, "") == serving
        assert await _health(channel, service) == serving
        assert {service, _HEALTH, _REFLECTION} <= await _reflected(channel)


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("resource", "astra.v1.ResourceService"),
        ("node", "astra.v1.NodeService"),
        ("app", "astra.v1.AppService"),
        ("scheduler", "astra.v1.SchedulerService"),
    ],
)
async def test_a_service_process_serves_health_and_reflection(
    etcd_server: EtcdProcess, name: str, service: str
) -> None:
    store = ("--store-url", etcd_server.url)
    if name in ("resource", "node"):
        async with _service(name, *store) as address:
            await _check(address, service)
        return
    async with (
        _service("resource", *store) as resource,
        _service(name, *store, "--resource-address", resource) as address,
    ):
        await _check(address, service)
