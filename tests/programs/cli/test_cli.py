"""The ``astra`` command: help, settings, and ``astra up`` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from astra import YOUNG_THRESHOLD
from astra.config import Settings
from astra.testing import free_port
from programs.cli import LocalRuntime, main, run_components
from tests.node_agent.waiting import eventually

ROOT = Path(__file__).parents[3]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment for a child ``astra``: no ASTRA_*/OTEL_* of the machine, state in tmp."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRA_", "OTEL_"))}
    return {**clean, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp_path / "xdg")}


def astra(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "programs.cli", *args],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"astra did not exit within {timeout}s:\n{err}") from None
    return process.returncode, out, err


def test_help_lists_the_commands(env):
    code, out, err = finish(astra("--help", env=env))
    assert code == 0, err
    assert "Commands:" in out and "up " in out and "config " in out


@contextlib.asynccontextmanager
async def running_up(
    env: dict[str, str], *args: str
) -> AsyncIterator[tuple[subprocess.Popen[str], str]]:
    """``astra up`` on a free port, yielded once it answers health checks; killed if left
    running."""
    address = f"127.0.0.1:{free_port()}"
    process = astra(
        "up", "--no-agent", "--no-demo", "--no-gateway", "--api-address", address, *args, env=env
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=60, wait_for_ready=True
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_up_serves_health_and_stops_cleanly_on_a_signal(env, tmp_path, signum):
    state = tmp_path / "state"
    async with running_up(env, "--state-dir", str(state)) as (process, address):
        process.send_signal(signum)
        code, _, err = await asyncio.to_thread(finish, process)
    assert code == 0, err
    assert (state / "store.db").exists()  # the default store: SQLite in the state dir
    assert f"gRPC API on {address}" in err and "AstraRay is up" in err and "stopped" in err
    assert "Traceback" not in err


async def test_up_on_the_in_memory_store(env):
    async with running_up(env, "--store-url", "memory://") as (process, _):
        process.send_signal(signal.SIGTERM)
        code, _, err = await asyncio.to_thread(finish, process)
    assert code == 0, err
    assert "store: memory://" in err


@pytest.fixture
def busy_address() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-address", "nowhere"], "Error: invalid settings: api_address (--api-address, "),
        (["--store-url", "ftp://x"], "Error: store_url: unknown store URL 'ftp://x'"),
        (["--api-address", "BUSY"], "Error: cannot listen on BUSY"),
    ],
    ids=["bad-setting", "bad-store-url", "busy-port"],
)
def test_up_fails_with_a_clear_message_and_no_traceback(env, tmp_path, busy_address, args, message):
    args = [arg.replace("BUSY", busy_address) for arg in args]
    process = astra(
        "up", "--no-agent", "--no-demo", "--no-gateway", "--state-dir", str(tmp_path),
        "--store-url", "memory://",
        *args, env=env,
    )  # fmt: skip
    code, _, err = finish(process)
    assert code == 1
    assert message.replace("BUSY", busy_address) in err
    assert "Traceback" not in err


def test_config_prints_the_settings_with_flags_over_env(env, tmp_path):
    config = tmp_path / "astra.toml"
    config.write_text('gateway_address = "127.0.0.1:9001"\nredis_url = "redis://127.0.0.1:1/0"\n')
    result = CliRunner().invoke(
        main,
        ["config", "--config", str(config), "--api-address", "127.0.0.1:9100"],
        env=env | {"ASTRA_API_ADDRESS": "127.0.0.1:9200", "ASTRA_GATEWAY_ADDRESS": "127.0.0.1:1"},
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["api_address"] == "127.0.0.1:9100"
    assert shown["gateway_address"] == "127.0.0.1:1"
    assert shown["redis_url"] == "redis://127.0.0.1:1/0"


async def test_components_start_in_order_and_stop_in_reverse_even_after_a_failure():
    events: list[str] = []

    def component(name: str, *, fail: bool = False):
        @contextlib.asynccontextmanager
        async def run(runtime: LocalRuntime) -> AsyncIterator[None]:
            if fail:
                raise RuntimeError(f"{name} cannot start")
            events.append(f"start {name}")
            try:
                yield
            finally:
                events.append(f"stop {name}")

        return run

    settings = Settings.load(overrides={"store_url": "memory://", "api_address": "127.0.0.1:0"})
    runtime = LocalRuntime(settings)
    stop = asyncio.Event()

    async def stop_once_frozen() -> None:
        await eventually(lambda: gc.get_freeze_count() > 0, what="once up, the process frozen")
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        stop.set()

    gc.unfreeze()
    thresholds = gc.get_threshold()
    stopper = asyncio.create_task(stop_once_frozen())
    await run_components(runtime, [component("a"), component("b")], stop)
    await stopper
    assert gc.get_freeze_count() == 0, "given back to the collector once stopping"
    assert gc.get_threshold() == thresholds
    assert events == ["start a", "start b", "stop b", "stop a"]
    events.clear()
    with pytest.raises(RuntimeError, match="c cannot start"):
        components = [component("a"), component("b"), component("c", fail=True)]
        await run_components(runtime, components, stop)
    assert events == ["start a", "start b", "stop b", "stop a"]
