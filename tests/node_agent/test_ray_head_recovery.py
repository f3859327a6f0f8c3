"""Ray head fault tolerance on a real Redis: a killed head process restarts, its cluster
recovers its state from Redis, and the replica on the worker keeps serving throughout."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys

import numpy as np
import pytest
import redis

from astra._gen.astra.v1 import replica_pb2
from astra.models import write_demo_model
from astra.testing import RedisProcess
from node_agent.runtime import RayRuntime, RayRuntimeConfig
from tests.node_agent.ray_helpers import (
    READY,
    ROOT,
    Reports,
    TritonLoad,
    demo_batch,
    ray_process,
    replica,
    short_dir,
    triton_check,
)

HEAD, WORKER = "apps/demo/replicas/head", "apps/demo/replicas/worker"
START = 240.0

#: Run in a process of its own: what the recovered cluster knows.
_PROBE = """
import json, sys, ray
ray.init(
    address=sys.argv[1], _temp_dir=sys.argv[2], _node_ip_address="127.0.0.2", log_to_driver=False
)
print(json.dumps({
    "alive_nodes": sum(node["Alive"] for node in ray.nodes()),
    "actors": sorted(actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)),
}))
"""


async def probe(head_address: str, temp_dir: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PROBE, head_address, temp_dir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads(out.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(900)
async def test_a_killed_head_recovers_its_cluster_while_the_worker_serves(
    redis_server: RedisProcess,
) -> None:
    root = short_dir()
    model = write_demo_model(root / "models")
    reports = Reports()
    config = RayRuntimeConfig(
        address="127.0.0.1", cache_dir=root / "cache", root=root, redis_url=redis_server.url
    )
    runtime = RayRuntime(reports, config=config)
    store = redis.Redis.from_url(redis_server.url)
    load: TritonLoad | None = None
    try:
        await runtime.start(replica(HEAD, model))
        head_ready = await reports.until(HEAD, READY, timeout=START)
        await runtime.start(
            replica(
                WORKER,
                model,
                role=replica_pb2.REPLICA_ROLE_WORKER,
                head=head_ready.ray_head_address,
            )
        )
        worker_ready = await reports.until(WORKER, READY, timeout=START)
        head, worker = runtime.unit(HEAD), runtime.unit(WORKER)
        assert (
            head is not None
            and head.node is not None
            and worker is not None
            and worker.node is not None
        )
        namespace = head.storage_namespace
        assert any(namespace.encode() in key for key in store.scan_iter()), (
            "the GCS keeps its state in Redis"
        )
        worker_node = worker.node.pid
        batch = demo_batch(8)
        # A steady trickle (a busy machine delays the head's restart past Ray's limits).
        load = await TritonLoad.start(
            worker_ready.endpoint, batch, model.reference(batch), threads=1, pause=0.05
        )

        ray_process(head.node.pid, "gcs_server").kill()
        seen = len(reports.by_replica[HEAD])
        back = await reports.until(HEAD, READY, timeout=START, after=seen)
        restarting = next(report for report in reports.by_replica[HEAD][seen:] if report.message)
        assert "Ray head exited" in restarting.message
        assert (
            back.ray_head_address == head_ready.ray_head_address
        )  # workers reconnect to the same GCS

        known = await probe(back.ray_head_address, str(head.temp_dir))
        assert known == {"alive_nodes": 2, "actors": ["head", "worker"]}
        outcomes = await load.stop()
        assert set(outcomes) == {"OK"} and outcomes["OK"] >= 20, (
            outcomes
        )  # the worker never stopped serving
        # A starved machine may need more than one try to bring a head up (Ray gives its
        # agents 15 s); the worker must never have been restarted.
        assert head.restarts >= 1 and worker.restarts == 0
        assert worker.node is not None and worker.node.pid == worker_node
        np.testing.assert_allclose(
            np.array((await triton_check(back.endpoint, batch))["output"]),
            model.reference(batch),
            rtol=1e-5,
        )
    finally:
        if load is not None:
            await load.kill()
        await runtime.close()
        shutil.rmtree(root, ignore_errors=True)
    assert not any(namespace.encode() in key for key in store.scan_iter()), (
        "a stopped head leaves nothing in Redis"
    )
    store.close()
