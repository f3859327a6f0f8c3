"""``astra serve node``: the Node service alone in its own process."""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from astra._gen.astra.v1 import node_service_pb2, node_service_pb2_grpc
from astra.testing import free_port
from tests.programs.cli.running import ROOT, child_env


async def test_serves_assignments_and_stops_cleanly_on_sigterm() -> None:
    address = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "programs.cli", "serve", "node", "--store-url", "memory://", "--api-address", address,
        env=child_env(), cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=60, wait_for_ready=True
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            request = node_service_pb2.WatchAssignmentsRequest(node="nodes/n1")
            stream = node_service_pb2_grpc.NodeServiceStub(channel).WatchAssignments(request)
            first = await stream.read()
            assert first.snapshot and not first.replicas
            stream.cancel()
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, err.decode()
        assert f"Node service serving on {address}" in err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
