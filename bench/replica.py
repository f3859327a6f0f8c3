"""Replica benchmark: a model served by a replica (a Ray actor, through tritonclient)
against the same model called in-process with ONNX Runtime, in one run.

    python bench/replica.py [--tiny] [--clients 8] [--batch 16]

One run writes the demo model (a 4-layer perceptron, 512 wide), starts a local Ray head
replica serving it (``RayRuntime``, as the node agent runs it) and measures, for both:

- latency: p50 and p99 of sequential calls from one client;
- throughput: inferences per second from ``--clients`` concurrent clients.

The replica side pays for gRPC, protobuf, validation and the hop to the inference
workers; the table ends with the overhead ratio (replica / in-process latency at p50)
and the throughput ratio. ``--tiny`` measures for a fraction of a second (for tests:
the numbers are then only a smoke signal).

The server runs in a child process (``--serve``): tritonclient registers the same
protobuf symbols as AstraRay's stubs, so one process cannot hold both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL_SHAPE = {"inputs": 4, "hidden": 512, "outputs": 3, "depth": 4}


@dataclass(frozen=True)
class Timing:
    calls: int  # sequential calls for the latency percentiles
    seconds: float  # per throughput measurement
    warmup: int


FULL = Timing(calls=2000, seconds=5.0, warmup=200)
TINY = Timing(calls=50, seconds=0.3, warmup=10)

Call = Callable[[], object]


def latencies(call: Call, timing: Timing) -> tuple[float, float]:
    """p50 and p99 of ``call``'s latency in milliseconds, one call at a time."""
    for _ in range(timing.warmup):
        call()
    samples = []
    for _ in range(timing.calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    quantiles = statistics.quantiles(samples, n=100, method="inclusive")
    return quantiles[49], quantiles[98]


def throughput(make_call: Callable[[], Call], clients: int, seconds: float) -> float:
    """Calls per second of ``clients`` threads, each with its own ``make_call()``."""
    calls = [make_call() for _ in range(clients)]
    counts = [0] * clients
    start_line = threading.Barrier(clients + 1)
    deadline = 0.0

    def loop(index: int) -> None:
        start_line.wait()
        while time.perf_counter() < deadline:
            calls[index]()
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    start_line.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def in_process_call(path: Path, batch: np.ndarray) -> Call:
    """The model in this process, as a replica runs it (one intra-op thread, CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return lambda: session.run(None, {"input": batch})


def replica_call(endpoint: str, batch: np.ndarray) -> Call:
    """The model through the replica, with tritonclient (raw tensors, as Triton sends)."""
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(endpoint)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return lambda: client.infer("demo", [tensor]).as_numpy("output")


@contextlib.contextmanager
def replica(path: Path, sha256: str) -> Iterator[str]:
    """A replica serving the model at ``path``, in a child process; yields its endpoint."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(path), sha256],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if not line.startswith("endpoint "):
            raise RuntimeError(f"the replica did not start: {line or 'no output'}")
        yield line.removeprefix("endpoint ")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve(path: Path, sha256: str) -> int:
    """``--serve``: run one head replica with the model, print ``endpoint HOST:PORT``
    once READY, stop when stdin closes."""
    from astra._gen.astra.v1 import app_pb2, node_service_pb2, replica_pb2
    from node_agent.runtime import RayRuntime, RayRuntimeConfig

    async def run() -> int:
        ready: asyncio.Future[node_service_pb2.ReplicaStatusReport] = (
            asyncio.get_running_loop().create_future()
        )

        def report(status: node_service_pb2.ReplicaStatusReport) -> None:
            if (
                status.phase in (replica_pb2.REPLICA_PHASE_READY, replica_pb2.REPLICA_PHASE_FAILED)
                and not ready.done()
            ):
                ready.set_result(status)

        with tempfile.TemporaryDirectory(
            prefix="astra-b", dir="/tmp" if os.path.isdir("/tmp") else None
        ) as root:
            config = RayRuntimeConfig(
                address="127.0.0.1", cache_dir=Path(root) / "cache", root=Path(root)
            )
            runtime = RayRuntime(report, config=config)
            try:
                await runtime.start(
                    replica_pb2.Replica(
                        name="apps/bench/replicas/r0",
                        role=replica_pb2.REPLICA_ROLE_HEAD,
                        resources=app_pb2.ReplicaResources(cpu_millis=1000),
                        models=[app_pb2.Model(name="demo", uri=str(path), sha256=sha256)],
                    )
                )
                status = await asyncio.wait_for(ready, 300)
                if status.phase != replica_pb2.REPLICA_PHASE_READY:
                    print(f"failed {status.message}", flush=True)
                    return 1
                print(f"endpoint {status.endpoint}", flush=True)
                await asyncio.to_thread(sys.stdin.read)
                return 0
            finally:
                await runtime.close()

    return asyncio.run(run())


def format_table(rows: dict[str, tuple[float, float]]) -> Iterator[str]:
    """One row per metric: in-process, replica, and replica / in-process."""
    yield f"{'metric':<30}{'in-process':>14}{'replica':>14}{'replica/in-process':>20}"
    for metric, (local, remote) in rows.items():
        yield f"{metric:<30}{local:>14,.3f}{remote:>14,.3f}{remote / local:>19.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="measure for a fraction of a second")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for throughput")
    parser.add_argument("--batch", type=int, default=16, help="rows per inference")
    parser.add_argument("--serve", nargs=2, metavar=("MODEL", "SHA256"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(Path(args.serve[0]), args.serve[1])
    from astra.models import write_demo_model

    timing = TINY if args.tiny else FULL
    batch = (
        np.random.default_rng(0)
        .standard_normal((args.batch, MODEL_SHAPE["inputs"]))
        .astype(np.float32)
    )
    with tempfile.TemporaryDirectory(prefix="astra-bench-") as workdir:
        model = write_demo_model(Path(workdir), **MODEL_SHAPE)
        local = in_process_call(model.path, batch)
        rows: dict[str, tuple[float, float]] = {}
        with replica(model.path, model.sha256) as endpoint:
            remote = replica_call(endpoint, batch)
            np.testing.assert_allclose(remote(), model.reference(batch), rtol=1e-4, atol=1e-5)
            (local_p50, local_p99), (remote_p50, remote_p99) = (
                latencies(local, timing),
                latencies(remote, timing),
            )
            rows["latency p50 (ms)"] = local_p50, remote_p50
            rows["latency p99 (ms)"] = local_p99, remote_p99
            rows[f"throughput ({args.clients} clients, inf/s)"] = (
                throughput(
                    lambda: in_process_call(model.path, batch), args.clients, timing.seconds
                ),
                throughput(lambda: replica_call(endpoint, batch), args.clients, timing.seconds),
            )
    print(
        f"replica benchmark: demo model {MODEL_SHAPE}, batch {args.batch}, CPU, "
        f"{timing.calls} sequential calls, {timing.seconds:g} s per throughput run"
    )
    print("\n".join(format_table(rows)))
    p50 = rows["latency p50 (ms)"]
    print(f"overhead ratio (p50 latency, replica / in-process): {p50[1] / p50[0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
