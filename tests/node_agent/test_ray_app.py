"""A placed app becomes a running Ray cluster: an app created through the App service is
placed by its scheduler on a real agent's node; the agent's Ray runtime starts the
cluster's head, the worker joins it once the app's owner has linked it to the head's
address, both replicas serve tritonclient what numpy computes, the app reports READY
and the Scheduler routes both."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import numpy as np
import pytest

from astra._gen.astra.v1 import app_pb2, replica_pb2, scheduler_service_pb2
from astra.models import write_demo_model
from astra.store import open_store
from node_agent import AgentConfig, Machine, NodeAgent
from node_agent.runtime import RayRuntime, RayRuntimeConfig
from tests.node_agent.ray_helpers import demo_batch, short_dir, triton_check
from tests.node_agent.test_agent import running
from tests.node_agent.waiting import eventually
from tests.services.app.plane import GIB, Plane, plane

MACHINE = Machine(cpu_cores=2, memory_bytes=8 * GIB)
START = 240.0


@pytest.fixture
async def control() -> AsyncIterator[Plane]:
    """Every service, on the in-memory store; a node is dead only after 30 s of silence
    (Ray starting on a busy machine must not stall the agent's heartbeats into a death)."""
    async with (
        await open_store("memory://") as store,
        plane(store, scheduler={}, dead_after=30.0) as started,
    ):
        yield started


@pytest.mark.timeout(600)
async def test_a_created_app_becomes_a_ray_cluster_serving_tritonclient(control: Plane) -> None:
    root = short_dir()
    try:
        model = write_demo_model(root / "models")
        agent = NodeAgent(
            AgentConfig(
                node_id="ray-node",
                server=control.address,
                address="127.0.0.1",
                drain_timeout=60.0,
                backoff_base=0.05,
                backoff_cap=0.5,
            ),
            machine=MACHINE,
            runtime=lambda report: RayRuntime(
                report,
                config=RayRuntimeConfig(address="127.0.0.1", cache_dir=root / "cache", root=root),
            ),
        )
        async with running(agent) as task:
            app = app_pb2.App(
                models=[
                    app_pb2.Model(
                        name="demo",
                        version="1",
                        uri=str(model.path),
                        sha256=model.sha256,
                        format=app_pb2.MODEL_FORMAT_ONNX,
                    )
                ],
                replicas=2,
                resources=app_pb2.ReplicaResources(cpu_millis=500, memory_bytes=GIB // 2),
                ray=app_pb2.RayClusterSpec(clusters=1),
            )
            await control.create("demo", app)
            await control.settled("demo", placed=2, timeout=30)

            async def serving() -> bool:
                found = await control.app("demo")
                return found.replica_counts.ready == 2

            await eventually(serving, timeout=START, what="both replicas READY")
            replicas = await control.replicas("demo")
            head = next(r for r in replicas if r.role == replica_pb2.REPLICA_ROLE_HEAD)
            worker = next(r for r in replicas if r.role == replica_pb2.REPLICA_ROLE_WORKER)
            assert head.ray_head_address and worker.ray_head_address == head.ray_head_address
            assert {r.execution_provider for r in replicas} == {"CPUExecutionProvider"}
            batch = demo_batch()
            for replica in (head, worker):
                seen = await triton_check(replica.endpoint, batch)
                np.testing.assert_allclose(
                    np.array(seen["output"]), model.reference(batch), rtol=1e-5
                )

            async def routed() -> bool:
                request = scheduler_service_pb2.GetRoutesRequest(models=["demo"])
                routes = (await control.scheduler.GetRoutes(request)).routes
                return len(routes) == 1 and {e.address for e in routes[0].endpoints} == {
                    head.endpoint,
                    worker.endpoint,
                }

            await eventually(routed, what="both endpoints routed")
            agent.request_drain("test over")
            assert await asyncio.wait_for(task, 120) == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
