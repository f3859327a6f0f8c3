"""What ``astra up`` prints once the demo model serves through the gateway: how to call
it with ``astra infer``, with tritonclient and with ``buf curl``.

:func:`how_to_call` is the last component of ``astra up`` (after the gateway): it waits
until the gateway reports the demo model ready, showing progress, then prints the block
on stdout (the logs go to stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click
import grpc

from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra._gen.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from astra.config import Settings
from astra.runtime import Runtime
from programs.cli._local import DEMO_APP

_log = logging.getLogger("astra.up")

#: What the printed examples send the demo model: one row of its four features (FP32).
DEMO_INPUT = [[1, 2, 3, 4]]
#: How often the gateway is asked whether it routes the demo model yet.
POLL_INTERVAL = 0.25
#: The line the block starts with.
HEADER = "AstraRay is serving"


@contextlib.asynccontextmanager
async def how_to_call(runtime: Runtime) -> AsyncIterator[None]:
    """Wait until the gateway routes the demo model to a ready replica, then print how
    to call it."""
    gateway = runtime.gateway_address
    if gateway is None:
        raise RuntimeError("the gateway is not started yet: put this component after it")
    await wait_routed(gateway, DEMO_APP)
    click.echo(usage(gateway=gateway, api=runtime.api.address, model=DEMO_APP))
    yield


async def wait_routed(gateway: str, model: str) -> None:
    """Return once the gateway at ``gateway`` answers ModelReady for ``model``."""
    _log.info("gateway %s: waiting for a route to model %r", gateway, model)
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        ready = False
        while not ready:
            try:
                # Asking of a model before the routes are in answers NOT_FOUND (logged).
                ready = (await stub.ServerReady(pb.ServerReadyRequest(), timeout=5)).ready and (
                    await stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=5)
                ).ready
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise
            if not ready:
                await asyncio.sleep(POLL_INTERVAL)
    _log.info("gateway %s: model %r is ready", gateway, model)


def astra_command() -> str:
    """How to run this ``astra`` from a shell: ``astra`` when that is the one on ``PATH``,
    else its path (``.venv/bin/astra``, relative when under the working directory)."""
    local = Path(sys.executable).parent / "astra"
    if not local.exists():
        return "astra"
    found = shutil.which("astra")
    if found and Path(found).resolve() == local.resolve():
        return "astra"
    with contextlib.suppress(ValueError):
        return os.path.join(".", local.absolute().relative_to(Path.cwd()))
    return str(local)


def usage(*, gateway: str, api: str, model: str) -> str:
    """The how-to-call block for ``model`` on the gateway at ``gateway``."""
    given = json.dumps(DEMO_INPUT)
    infer = [astra_command(), "infer", model, "--input", f"input={given}"]
    if gateway != Settings.model_fields["gateway_address"].default:
        infer += ["--gateway", gateway]
    shape = [len(DEMO_INPUT), len(DEMO_INPUT[0])]
    request = {
        "model_name": model,
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": shape,
                "contents": {"fp32_contents": [x for row in DEMO_INPUT for x in row]},
            }
        ],
    }
    buf = [
        "npx", "--package=@bufbuild/buf", "buf", "curl", "--protocol", "grpc",
        "--http2-prior-knowledge", "-d", json.dumps(request),
        f"http://{gateway}/inference.GRPCInferenceService/ModelInfer",
    ]  # fmt: skip
    return f"""
{HEADER} model {model!r} on the gateway {gateway} (Open Inference Protocol, gRPC);
the control-plane API is on {api}. Ctrl-C stops everything.

Call it with astra:

{shlex.join(infer)}

with tritonclient (pip install 'tritonclient[grpc]'):

python3 - <<'EOF'
import numpy as np
import tritonclient.grpc as triton

client = triton.InferenceServerClient({json.dumps(gateway)})
x = triton.InferInput("input", {shape}, "FP32")
x.set_data_from_numpy(np.array({given}, dtype=np.float32))
print(client.infer({json.dumps(model)}, [x]).as_numpy("output").tolist())
EOF

or with buf curl (gRPC through the gateway's reflection):

{shlex.join(buf)}
"""
