"""What ``astra up`` adds to the control plane for a platform on one machine: a node
agent running a local Ray, and a demo app serving a small ONNX model.

Both are components (see :mod:`programs.cli._up`) placed after the API server, since they
talk to it. The agent is a child process, as on any other machine; leaving the
component sends it SIGTERM, so it drains its replicas and deregisters before
``astra up`` stops the services. It gets SIGTERM too, and drains, when ``astra up``
dies without leaving it (SIGKILL, a crash): see :mod:`astra._with_parent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import grpc

from astra import with_parent
from astra._gen.astra.v1 import app_pb2, app_service_pb2, app_service_pb2_grpc, replica_pb2
from astra.config import settings_env
from astra.runtime import Runtime

_log = logging.getLogger("astra.up")

#: The demo app's id and model name.
DEMO_APP = "demo"
#: How long the agent gets to drain and leave when ``astra up`` stops.
AGENT_EXIT_TIMEOUT = 60.0
#: Seconds between progress lines while the demo replica's phase stays the same.
PROGRESS_EVERY = 10.0
#: The agent's replica runtime unless the ``agent_runtime`` setting names another.
AGENT_RUNTIME = "node_agent.runtime:RayRuntime"


@contextlib.asynccontextmanager
async def local_agent(runtime: Runtime) -> AsyncIterator[None]:
    """A node agent for this machine, running replicas on Ray (``RayRuntime``), or on
    the runtime the ``agent_runtime`` setting names as for ``astra agent``.

    It gets ``astra up``'s settings (as ``ASTRA_*`` variables) with the API's actual
    address, on loopback unless ``node_address`` says otherwise. Its output goes to
    ``<state_dir>/agent.log``.
    """
    spec = runtime.settings.agent_runtime or AGENT_RUNTIME
    address = runtime.settings.node_address or "127.0.0.1"
    settings = runtime.settings.model_copy(
        update={"api_address": runtime.api.address, "node_address": address}
    )
    log_path = settings.state_dir / "agent.log"
    env = settings_env(settings, os.environ)
    command = [sys.executable, "-m", "node_agent", "--runtime", spec]
    with open(log_path, "ab") as log:
        process = await asyncio.create_subprocess_exec(
            *with_parent(command), env=env, stdout=log, stderr=subprocess.STDOUT
        )
    _log.info("node agent started (pid %d, log %s)", process.pid, log_path)
    try:
        yield
    finally:
        await _stop_agent(process)


async def _stop_agent(process: asyncio.subprocess.Process) -> None:
    """SIGTERM: the agent drains its replicas, deregisters and exits."""
    if process.returncode is None:
        _log.info("draining the node agent")
        process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(process.wait(), AGENT_EXIT_TIMEOUT)
    except TimeoutError:
        _log.warning("the node agent did not exit in %gs; killing it", AGENT_EXIT_TIMEOUT)
        process.kill()
        code = await process.wait()
    _log.info("node agent exited with %d", code)


def demo_app_spec(model_uri: str, sha256: str) -> app_pb2.App:
    """One replica of the demo model, half a core and 256 MiB."""
    return app_pb2.App(
        models=[
            app_pb2.Model(
                name=DEMO_APP, version="1", uri=model_uri, sha256=sha256,
                format=app_pb2.MODEL_FORMAT_ONNX,
            )
        ],
        replicas=1,
        resources=app_pb2.ReplicaResources(cpu_millis=500, memory_bytes=256 << 20),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def demo_app(runtime: Runtime) -> AsyncIterator[None]:
    """Deploy the demo app (once: a restarted ``astra up`` finds it in the store) and
    show progress until its replica serves."""
    from astra.models import write_demo_model

    model = write_demo_model(runtime.settings.state_dir / "models")
    async with grpc.aio.insecure_channel(runtime.api.address) as channel:
        apps = app_service_pb2_grpc.AppServiceStub(channel)
        request = app_service_pb2.CreateAppRequest(
            app_id=DEMO_APP, app=demo_app_spec(str(model.path), model.sha256)
        )
        try:
            await apps.CreateApp(request)
            _log.info("demo app deployed: model %r from %s", DEMO_APP, model.path)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            _log.info("demo app found in the store (resumed)")
        await _wait_ready(apps, f"apps/{DEMO_APP}")
    yield


async def _wait_ready(apps: app_service_pb2_grpc.AppServiceStub, name: str) -> None:
    """Log the replicas' phases as they change (and every :data:`PROGRESS_EVERY` seconds
    they do not) until one is READY."""
    loop = asyncio.get_running_loop()
    started = shown_at = loop.time()
    last = ""
    while True:
        listed = await apps.ListReplicas(app_service_pb2.ListReplicasRequest(parent=name))
        phases = [
            replica_pb2.ReplicaPhase.Name(r.phase).removeprefix("REPLICA_PHASE_")
            for r in listed.replicas
        ]
        shown = ", ".join(sorted(phases)) or "not placed yet"
        if shown != last:
            _log.info("%s: %s", name, shown)
            last, shown_at = shown, loop.time()
        elif loop.time() - shown_at >= PROGRESS_EVERY:
            _log.info("%s: %s (%.0fs)", name, shown, loop.time() - started)
            shown_at = loop.time()
        failed = [r for r in listed.replicas if r.phase == replica_pb2.REPLICA_PHASE_FAILED]
        if failed:
            _log.error("%s: replica failed: %s", name, failed[0].message)
        if any(r.phase == replica_pb2.REPLICA_PHASE_READY for r in listed.replicas):
            return
        await asyncio.sleep(0.5)
