"""The Ray runtime with a real local Ray: one cluster shared by this module (a head
replica started once), worker replicas joining it, tritonclient calling them.

Ray is slow to start (seconds per node), so the tests are few and each covers a whole
story.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from astra._gen.astra.v1 import replica_pb2
from astra.config import Settings
from astra.models import DemoModel, write_demo_model
from node_agent import ReplicaRuntime, load_runtime_factory
from node_agent.runtime import RayRuntime, RayRuntimeConfig
from tests.node_agent.ray_helpers import (
    READY,
    Reports,
    TritonLoad,
    demo_batch,
    ray_process,
    replica,
    short_dir,
    triton_check,
)

HEAD = "apps/demo/replicas/head"
WORKER = replica_pb2.REPLICA_ROLE_WORKER
#: Ray startup is slow on a busy two-core machine.
START = 120.0
pytestmark = pytest.mark.timeout(300)


@dataclass
class Cluster:
    runtime: RayRuntime
    reports: Reports
    model: DemoModel
    head_address: str
    head_endpoint: str


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    """A runtime running one head replica (Ray head + actor) with the demo model."""
    root = short_dir()
    model = write_demo_model(root / "models")
    reports = Reports()
    runtime = RayRuntime(
        reports, config=RayRuntimeConfig(address="127.0.0.1", cache_dir=root / "cache", root=root)
    )
    try:
        await runtime.start(replica(HEAD, model))
        ready = await reports.until(HEAD, READY, timeout=START)
        yield Cluster(runtime, reports, model, ready.ray_head_address, ready.endpoint)
    finally:
        await runtime.close()
        shutil.rmtree(root, ignore_errors=True)


def test_the_agent_loads_the_runtime_by_name_and_hands_it_its_settings(tmp_path: Path) -> None:
    settings = Settings.load(
        overrides={
            "node_address": "10.9.8.7",
            "state_dir": str(tmp_path),
            "redis_url": "redis://cache:6379/0",
            "broker": {"claim_idle": "2s"},
        }
    )
    runtime = load_runtime_factory("node_agent.runtime:RayRuntime", settings)(lambda report: None)
    assert isinstance(runtime, RayRuntime) and isinstance(runtime, ReplicaRuntime)
    config = runtime.config
    assert (config.address, config.ray_ip) == ("10.9.8.7", "10.9.8.7")
    assert (config.cache_dir, config.redis_url) == (tmp_path / "models", "redis://cache:6379/0")
    assert config.claim_idle == 2.0
    with pytest.raises(TypeError, match="needs the agent's settings or a RayRuntimeConfig"):
        RayRuntime(lambda report: None)


async def test_a_head_replica_serves_tritonclient_what_numpy_computes(cluster: Cluster) -> None:
    reports = cluster.reports
    assert reports.phases(HEAD)[0] == "STARTING"
    ready = reports.last(HEAD)
    assert ready.execution_provider == "CPUExecutionProvider"
    assert ready.ray_head_address.startswith("127.0.0.2:")
    assert ready.endpoint.startswith("127.0.0.1:")
    batch = demo_batch()
    seen = await triton_check(cluster.head_endpoint, batch)
    assert (seen["live"], seen["ready"], seen["model_ready"], seen["server"]) == (
        True,
        True,
        True,
        "astra-replica",
    )
    assert seen["inputs"] == [["input", "FP32"]]
    np.testing.assert_allclose(np.array(seen["output"]), cluster.model.reference(batch), rtol=1e-5)


async def test_a_worker_restarts_after_a_crash_then_drains_under_load(cluster: Cluster) -> None:
    runtime, reports, name = cluster.runtime, cluster.reports, "apps/demo/replicas/worker"
    await runtime.start(replica(name, cluster.model, role=WORKER, head=cluster.head_address))
    first = await reports.until(name, READY, timeout=START)
    unit = runtime.unit(name)
    assert unit is not None and unit.node is not None
    batch = demo_batch(8)
    expected = cluster.model.reference(batch)
    np.testing.assert_allclose(
        np.array((await triton_check(first.endpoint, batch))["output"]), expected, rtol=1e-5
    )

    # A crash: the worker's raylet dies; the agent restarts the worker.
    crashed_node = unit.node.pid
    ray_process(crashed_node, "raylet").kill()
    seen = len(reports.by_replica[name])
    again = await reports.until(name, READY, timeout=START, after=seen)
    restarting = next(report for report in reports.by_replica[name][seen:] if report.message)
    assert restarting.phase == replica_pb2.REPLICA_PHASE_STARTING
    assert (
        "Ray worker exited with 1" in restarting.message and "restarting in" in restarting.message
    )
    assert unit.restarts == 1 and unit.node is not None and unit.node.pid != crashed_node
    assert (
        not psutil.pid_exists(crashed_node)
        or psutil.Process(crashed_node).status() == psutil.STATUS_ZOMBIE
    )

    # A drain under load: every request is answered right or refused before it ran.
    load = await TritonLoad.start(again.endpoint, batch, expected)
    try:
        await runtime.drain(name)
        await reports.until(name, replica_pb2.REPLICA_PHASE_DRAINED, timeout=60)
        outcomes = await load.stop()
    finally:
        await load.kill()
    assert outcomes["OK"] >= 20
    assert set(outcomes) <= {"OK", "UNAVAILABLE"}, outcomes
    assert reports.phases(name)[-2:] == ["DRAINING", "DRAINED"]

    node = unit.node.pid
    await runtime.stop(name)
    assert runtime.unit(name) is None
    assert not psutil.pid_exists(node) or psutil.Process(node).status() == psutil.STATUS_ZOMBIE


async def test_a_model_failing_its_checksum_fails_the_replica_until_its_spec_changes(
    cluster: Cluster,
) -> None:
    runtime, reports, name = cluster.runtime, cluster.reports, "apps/demo/replicas/bad"
    wrong = hashlib.sha256(b"some other model").hexdigest()
    await runtime.start(
        replica(name, cluster.model, role=WORKER, head=cluster.head_address, sha256=wrong)
    )
    failed = await reports.until(name, replica_pb2.REPLICA_PHASE_FAILED, timeout=START)
    assert failed.message == (
        f"sha256 mismatch for {cluster.model.path}: expected {wrong}, got {cluster.model.sha256}"
    )
    assert not failed.endpoint
    assert "READY" not in reports.phases(name)
    unit = runtime.unit(name)
    assert unit is not None and unit.restarts == 0 and unit.node is None  # torn down, not retried

    seen = len(reports.by_replica[name])
    await runtime.start(replica(name, cluster.model, role=WORKER, head=cluster.head_address))
    fixed = await reports.until(name, READY, timeout=START, after=seen)
    assert fixed.endpoint and not fixed.message
    await runtime.stop(name)


async def test_another_apps_cluster_shares_the_machine(cluster: Cluster) -> None:
    runtime, reports, name = cluster.runtime, cluster.reports, "apps/other/replicas/head"
    await runtime.start(replica(name, cluster.model))
    ready = await reports.until(name, READY, timeout=START)
    other, first = runtime.unit(name), runtime.unit(HEAD)
    assert other is not None and other.node is not None and first is not None
    assert ready.ray_head_address != cluster.head_address and other.temp_dir != first.temp_dir
    batch = demo_batch(3)
    for endpoint in (ready.endpoint, cluster.head_endpoint):
        seen = await triton_check(endpoint, batch)
        np.testing.assert_allclose(
            np.array(seen["output"]), cluster.model.reference(batch), rtol=1e-5
        )

    node = other.node.pid
    await runtime.stop(name)
    assert not psutil.pid_exists(node) or psutil.Process(node).status() == psutil.STATUS_ZOMBIE
    assert (await triton_check(cluster.head_endpoint, batch))["ready"]  # the first one serves on
