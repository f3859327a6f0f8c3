"""The whole path on a node: a replica placed through the store reaches a real agent
(real Resource and Node services on etcd), whose Ray runtime starts a Ray head and the
replica's actor; its READY status, endpoint and execution provider land in the store;
a graceful exit drains it."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from astra import keys
from astra.models import write_demo_model
from astra.records import Quantity, ReplicaPhase, ReplicaRecord, ReplicaRole
from astra.store import Store
from node_agent import Machine, NodeAgent
from node_agent.runtime import RayRuntime, RayRuntimeConfig
from tests.node_agent.control_plane import ControlPlane
from tests.node_agent.ray_helpers import demo_batch, short_dir, triton_check
from tests.node_agent.test_agent import config, registered, running
from tests.node_agent.waiting import eventually
from tests.services.node.placement import place

MACHINE = Machine(cpu_cores=2, memory_bytes=8 << 30)


async def stored(store: Store, record: ReplicaRecord) -> ReplicaRecord:
    kv = await store.get(keys.replica(record.app_id, record.replica_id))
    assert kv is not None
    return ReplicaRecord.from_bytes(kv.value)


@pytest.mark.timeout(300)
async def test_a_placed_head_replica_serves_and_drains_through_the_agent(
    plane: ControlPlane, store: Store, node_id: str
) -> None:
    root = short_dir()
    model = write_demo_model(root / "models")
    record = ReplicaRecord(
        app_id="demo",
        replica_id="r0",
        node_id=node_id,
        ray_cluster="c0",
        role=ReplicaRole.HEAD.value,
        resources=Quantity(1000, 1 << 30, 0),
        models=[
            {
                "name": "demo",
                "version": "1",
                "uri": str(model.path),
                "sha256": model.sha256,
                "format": "ONNX",
            }
        ],
        app_generation=1,
    )
    runtime_config = RayRuntimeConfig(address="127.0.0.1", cache_dir=root / "cache", root=root)
    agent = NodeAgent(
        config(plane, node_id, drain_timeout=30.0),
        machine=MACHINE,
        runtime=lambda report: RayRuntime(report, config=runtime_config),
    )
    try:
        async with running(agent) as task:
            await registered(plane, node_id)
            await place(store, node_id, [record])

            async def ready() -> bool:
                return (await stored(store, record)).phase == ReplicaPhase.READY.value

            await eventually(ready, timeout=180, what="READY in the store")
            replica = await stored(store, record)
            assert replica.execution_provider == "CPUExecutionProvider"
            assert replica.ray_head_address.startswith(
                "127.0.0.2:"
            ) and replica.endpoint.startswith("127.0.0.1:")
            batch = demo_batch()
            seen = await triton_check(replica.endpoint, batch)
            np.testing.assert_allclose(np.array(seen["output"]), model.reference(batch), rtol=1e-5)

            agent.request_drain("test: SIGTERM")
            assert await asyncio.wait_for(task, 120) == 0
        assert (await stored(store, record)).phase == ReplicaPhase.DRAINED.value
    finally:
        shutil.rmtree(root, ignore_errors=True)
