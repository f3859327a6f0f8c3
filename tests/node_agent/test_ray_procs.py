"""What the Ray runtime starts: ``ray start`` command lines and environments, Redis
targets, and GPUs handed out without overlap. No Ray is started here."""

from __future__ import annotations

import inspect
import json
import tomllib
from pathlib import Path

import pytest
import ray

from astra._gen.astra.v1 import app_pb2, replica_pb2
from node_agent.runtime import RayNodeSpec, RayRuntime, RayRuntimeConfig, RedisTarget, ray_ip_for
from tests.node_agent.ray_helpers import Reports
from tests.node_agent.waiting import eventually


def flags(command: list[str]) -> dict[str, str]:
    return dict(
        arg.removeprefix("--").partition("=")[::2] for arg in command if arg.startswith("--")
    )


def test_a_head_gets_its_placement_its_own_ports_and_gcs_fault_tolerance(tmp_path: Path) -> None:
    redis = RedisTarget.from_url("redis://user:secret@10.1.2.3:6380/0")
    spec = RayNodeSpec(
        temp_dir=tmp_path,
        ip="127.0.0.2",
        gcs_port=6399,
        cpus=1500,
        gpus=1,
        memory_bytes=1 << 30,
        resources={"astra_replica_x": 1},
        redis=redis,
        storage_namespace="astra-x",
        cuda_devices="1",
    )
    command = spec.command()
    given = flags(command)
    assert "--head" in command and "--block" in command
    assert given["port"] == "6399" and spec.gcs_address == "127.0.0.2:6399"
    assert (given["num-cpus"], given["num-gpus"], given["memory"]) == ("2", "1", str(1 << 30))
    assert json.loads(given["resources"]) == {"astra_replica_x": 1}
    assert (given["temp-dir"], given["node-ip-address"]) == (str(tmp_path), "127.0.0.2")
    assert (given["redis-password"], given["redis-username"]) == ("secret", "user")
    ports = [int(value) for key, value in given.items() if key.endswith("port") and value != "0"]
    assert len(ports) == len(set(ports)) == 9  # GCS and 8 more, distinct: clusters share a machine
    env = spec.env({"PATH": "/bin"})
    assert env["RAY_REDIS_ADDRESS"] == "10.1.2.3:6380"
    assert env["RAY_external_storage_namespace"] == "astra-x"
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["PATH"] == "/bin"
    assert env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] == "0"


def test_a_worker_joins_its_head_without_head_settings(tmp_path: Path) -> None:
    spec = RayNodeSpec(
        temp_dir=tmp_path,
        ip="127.0.0.2",
        head_address="127.0.0.2:6399",
        redis=RedisTarget("h:1"),
    )
    given = flags(spec.command())
    assert given["address"] == "127.0.0.2:6399" and not spec.head
    assert not {"head", "port", "redis-password", "memory"} & set(given)
    assert "RAY_REDIS_ADDRESS" not in spec.env({}) and "CUDA_VISIBLE_DEVICES" not in spec.env({})


def test_redis_targets() -> None:
    assert RedisTarget.from_url("rediss://cache:7000") == RedisTarget("rediss://cache:7000")
    assert RedisTarget.from_url("redis://cache") == RedisTarget("cache:6379")
    with pytest.raises(ValueError, match="needs a redis:// or rediss:// URL"):
        RedisTarget.from_url("unix:///run/redis.sock")


def test_the_private_ray_function_that_deletes_gcs_state_is_as_pinned() -> None:
    """``RedisTarget.delete_namespace`` calls Ray's private ``cleanup_redis_storage``
    (test_ray_head_recovery.py shows it empties Redis): only with the Ray it was written for."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("ray")]
    assert pins == ["ray==2.60.0"] and ray.__version__ == "2.60.0"
    from ray._private.gcs_utils import cleanup_redis_storage

    parameters = inspect.signature(cleanup_redis_storage).parameters
    assert list(parameters) == [
        "host", "port", "password", "use_ssl", "storage_namespace", "username",
    ]  # fmt: skip
    assert parameters["username"].default is None
    assert all(
        parameter.default is inspect.Parameter.empty
        for name, parameter in parameters.items()
        if name != "username"
    )


def test_ray_stays_on_loopback_for_a_loopback_node() -> None:
    assert ray_ip_for("127.0.0.1") == ray_ip_for("localhost") == "127.0.0.2"
    assert ray_ip_for("10.0.0.7") == "10.0.0.7"


async def test_a_replica_needing_more_gpus_than_are_free_is_retried(tmp_path: Path) -> None:
    reports = Reports()
    config = RayRuntimeConfig(address="127.0.0.1", cache_dir=tmp_path, root=tmp_path, gpus=2)
    runtime = RayRuntime(reports, config=config)
    name = "apps/big/replicas/r0"
    try:
        await runtime.start(
            replica_pb2.Replica(name=name, resources=app_pb2.ReplicaResources(gpus=3))
        )
        await eventually(lambda: any(r.message for r in reports.by_replica[name]))
        failure = next(report for report in reports.by_replica[name] if report.message)
        assert failure.phase == replica_pb2.REPLICA_PHASE_STARTING
        assert failure.message.startswith("needs 3 GPU(s), 2 free on this node; restarting in")
    finally:
        await runtime.close()
