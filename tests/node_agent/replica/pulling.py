"""Helpers for the async broker's tests: demo-model requests and their numpy check, and
real replica processes that pull from the broker.

``python -m tests.node_agent.replica.pulling CONFIG`` runs one replica server (no Ray:
the server Ray's actor would run) from a JSON config ``{"model": {name, uri, sha256},
"settings": {...ReplicaSettings}}``, prints ``{"endpoint", "consumer"}`` as one JSON
line once it serves and pulls, and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from astra._gen.astra.v1 import app_pb2
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.inference import decode_raw, encode_raw
from astra.models import DemoModel

ROOT = Path(__file__).resolve().parents[3]


def unique(prefix: str) -> str:
    """A model name no other test uses (the session's Redis is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def demo_request(model: str, seed: int, rows: int = 2) -> tuple[pb.ModelInferRequest, np.ndarray]:
    """A raw ModelInferRequest of the demo model with a batch drawn from ``seed``."""
    batch = np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=model, id=f"req-{seed}")
    request.inputs.add(name="input", datatype="FP32", shape=batch.shape)
    request.raw_input_contents.append(encode_raw(batch, "FP32"))
    return request, batch


def check_output(demo: DemoModel, response: pb.ModelInferResponse, batch: np.ndarray) -> None:
    """``response`` is the demo model's answer to ``batch``."""
    (output,) = response.outputs
    assert (output.name, output.datatype) == ("output", "FP32")
    result = decode_raw(response.raw_output_contents[0], "FP32", tuple(output.shape))
    np.testing.assert_allclose(result, demo.reference(batch), rtol=1e-5)


class PullingReplica:
    """A replica process serving the demo model as ``model`` and pulling from Redis."""

    def __init__(self, demo: DemoModel, model: str, settings: dict[str, Any]) -> None:
        config = {
            "model": {"name": model, "uri": str(demo.path), "sha256": demo.sha256},
            "settings": settings,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.node_agent.replica.pulling", json.dumps(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.endpoint = ""
        self.consumer = ""

    async def ready(self, timeout: float = 60.0) -> PullingReplica:
        """Wait for the replica's ready line."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        assert line, f"the replica exited with {self.process.wait()} before serving"
        ready = json.loads(line)
        self.endpoint, self.consumer = ready["endpoint"], ready["consumer"]
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no acknowledgement, nothing."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (a clean stop), SIGKILL if that takes too long; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


async def _serve(config: dict[str, Any]) -> None:
    from node_agent.replica import ReplicaServer, ReplicaSettings

    server = ReplicaServer(
        [app_pb2.Model(**config["model"])], ReplicaSettings(**config["settings"])
    )
    serving = await server.start()
    assert server.puller is not None, "the settings name no Redis"
    print(
        json.dumps({"endpoint": serving.endpoint, "consumer": server.puller.consumer.name}),
        flush=True,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1])))
