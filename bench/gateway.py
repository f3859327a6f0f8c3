"""Gateway benchmark: AstraRay's gateway against clients straight to the replicas,
Debian's nginx (``grpc_pass``, static weights) and Ray Serve's gRPC proxy, in one run.

    python bench/gateway.py [--tiny] [--replicas 4] [--connections 4] [--streams 8]

Every target serves the same ONNX model (the demo perceptron, built with onnx.helper)
and gets the same load: h2load (Debian's nghttp2-client) POSTing the same
length-prefixed gRPC ModelInferRequest frame over h2c, pinned to one CPU (the last one
unless ``--load-cpu``), ``--connections`` connections with ``--streams`` streams each.
A warm-up run precedes every measured run.

1. Every replica alike. Our replicas (ONNX Runtime OIP servers, ``ReplicaServer``, one
   process each) are measured (a) straight from the clients (connections spread over the
   replicas: the limit), (b) through the gateway (``python -m gateway``, fed the route by
   a stand-in Scheduler, :class:`astra.testing.RouteFeed`) and (c) through nginx (one
   worker, as the gateway is one process; an upstream with equal weights, nginx's own
   smooth weighted round robin, keepalive connections). (d) Ray Serve on a local Ray
   started here: the same model as a deployment of as many replicas, behind Serve's gRPC
   proxy, as a user deploys it (access logs off).
2. One of four replicas is 5x slower: every replica holds each inference's worker
   ``--service-ms`` more (``ReplicaSettings.service_time``, a setting for benchmarks and
   tests only), one of them five times that; Ray Serve's replica of rank 0 likewise.
   The default (20 ms) makes service times, not the CPUs, bound the run, so that p99
   shows how requests are spread. Printed: p99 through the gateway, nginx and Ray Serve.

Correctness is checked apart from h2load, which does not read gRPC's status trailers:
real calls through each target before and after its runs must answer what numpy
computes, and h2load's received DATA bytes must be exactly its successful requests
times the size of that answer (a failed call answers no message).

Throughput is requests per second of the measured run; p50 and p99 come from h2load's
per-request log. Each table ends with the CPU time per request of the proxy's and the
replicas' processes over the measured run (a figure the machine's other load disturbs
less than throughput). ``--tiny`` runs each target for about a second (for tests: the numbers
are then only a smoke signal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL, VERSION = "demo", "1"
MODEL_SHAPE = {"inputs": 4, "hidden": 32, "outputs": 3, "depth": 2}
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
#: The servicer Ray Serve's gRPC proxy is given (the protocol's generated stubs).
SERVICER = (
    "astra._gen.inference.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server"
)
#: Inference workers per replica, ours (``ReplicaSettings.workers``) and Ray Serve's.
WORKERS = 2
#: How many times slower the slow replica is.
SLOWDOWN = 5
#: Seconds a process gets to start serving.
START_TIMEOUT = 120.0


class BenchError(RuntimeError):
    """A target answered wrongly, a tool is missing, or a process did not start."""


@dataclass(frozen=True)
class Timing:
    seconds: float  # per measured run
    warmup: float  # per warm-up run before it
    checks: int  # real calls through a target before and after its runs


FULL = Timing(seconds=10.0, warmup=3.0, checks=16)
TINY = Timing(seconds=1.0, warmup=0.5, checks=8)


@dataclass(frozen=True)
class Load:
    connections: int
    streams: int
    cpu: int  # h2load runs pinned to it


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    #: CPU seconds (user + system) per request, in microseconds, of groups of processes.
    cpu_us: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """The request every target gets, and what a right answer holds."""

    body: bytes  # a serialized ModelInferRequest
    frame: Path  # the body as one length-prefixed gRPC message, for h2load
    expected: np.ndarray


def tool(name: str, package: str) -> str:
    """The path of a binary the benchmark needs; fails loudly without it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise BenchError(
            f"{name} not found: install Debian's {package} (apt-get install {package})"
        )
    return path


def child_env(*more: Path) -> dict[str, str]:
    """This environment, with the repository (and ``more``) on the Python path."""
    paths = [str(ROOT), *map(str, more), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}


# -- checking answers --------------------------------------------------------------------


async def check(address: str, request: Request, calls: int) -> int:
    """Make ``calls`` real ModelInfer calls to ``address``; each must answer the model's
    output. Returns the size of the answer as a gRPC frame (all the same)."""
    import grpc

    from astra._gen.inference import grpc_predict_v2_pb2 as pb

    sizes = set()
    async with grpc.aio.insecure_channel(address) as channel:
        infer = channel.unary_unary(MODEL_INFER)
        for _ in range(calls):
            try:
                raw: bytes = await infer(request.body, timeout=30)
            except grpc.aio.AioRpcError as exc:
                raise BenchError(f"{address}: {exc.code().name}: {exc.details()}") from exc
            response = pb.ModelInferResponse.FromString(raw)
            output = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
            try:
                np.testing.assert_allclose(
                    output.reshape(request.expected.shape), request.expected, rtol=1e-4, atol=1e-5
                )
            except (AssertionError, ValueError) as exc:
                raise BenchError(f"{address} answered wrongly: {exc}") from exc
            sizes.add(len(raw) + 5)
    if len(sizes) != 1:
        raise BenchError(f"{address} answered the same request with sizes {sorted(sizes)}")
    return sizes.pop()


async def wait_serving(address: str, request: Request, *, alive: Callable[[], bool]) -> None:
    """Return once ``address`` answers a ModelInfer rightly."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            await check(address, request, 1)
            return
        except (BenchError, OSError) as exc:
            if not alive() or time.monotonic() > deadline:
                raise BenchError(f"{address} does not serve: {exc}") from exc
        await asyncio.sleep(0.2)


# -- the load: h2load --------------------------------------------------------------------

_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx")
_DATA = re.compile(r"\((\d+)\) data")
_RATE = re.compile(r"finished in [\d.]+\w*, ([\d.]+) req/s")


def spread(connections: int, targets: int) -> list[int]:
    """``connections`` over ``targets``, as evenly as possible."""
    return [connections // targets + (index < connections % targets) for index in range(targets)]


async def h2load(
    addresses: Sequence[str], load: Load, request: Request, logs: Path, *, runs: Sequence[str]
) -> tuple[Result, list[float]]:
    """One h2load per address, at once (the connections spread over them), each for
    its ``runs`` item: ``-D`` and a duration (a warm-up), or ``-n`` and a number of
    requests (a measured run: every request is seen to its end, so the bytes received
    must be exactly those of the answers). Their throughputs add up and their
    per-request latencies pool; also returns each one's requests per second."""
    binary = tool("h2load", "nghttp2-client")
    commands = []
    for index, (address, connections, run) in enumerate(
        zip(addresses, spread(load.connections, len(addresses)), runs, strict=True)
    ):
        log = logs.with_name(f"{logs.name}-{index}.tsv")
        log.unlink(missing_ok=True)
        argv = [
            "taskset", "-c", str(load.cpu), binary, "-t1",
            f"-c{connections}", f"-m{load.streams}", run,
            "-d", str(request.frame),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"--log-file={log}", f"http://{address}{MODEL_INFER}",
        ]  # fmt: skip
        commands.append((address, log, argv, run.startswith("-n")))
    outputs = await asyncio.gather(*(_run(argv) for _, _, argv, _ in commands))
    frame = await check(addresses[0], request, 1)
    rates, succeeded, latencies = [], 0, []
    for (address, log, _, exact), output in zip(commands, outputs, strict=True):
        rate, done = _validate(address, output, frame, exact=exact)
        rates.append(rate)
        succeeded += done
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
        latencies += [int(row[2]) / 1000 for row in rows if row[1] == "200"]
    if not latencies:
        raise BenchError(f"h2load logged no request to {', '.join(addresses)}")
    p50, p99 = np.percentile(latencies, [50, 99])
    result = Result(rps=sum(rates), p50_ms=float(p50), p99_ms=float(p99), requests=succeeded)
    return result, rates


async def _run(argv: Sequence[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode:
        raise BenchError(f"{' '.join(argv)} exited with {process.returncode}: {err.decode()}")
    return out.decode()


def _validate(address: str, output: str, frame: int, *, exact: bool) -> tuple[float, int]:
    """h2load's req/s and successful requests, once no request is seen to fail: with
    ``exact`` (every request ran to its end), the message bytes received are exactly
    one answer per success; else (stopped at a deadline) at least that."""
    counts, status, data, rate = (
        pattern.search(output) for pattern in (_REQUESTS, _STATUS, _DATA, _RATE)
    )
    if counts is None or status is None or data is None or rate is None:
        raise BenchError(f"h2load's output to {address} is not understood:\n{output}")
    total, succeeded, failed, errored, timeout = (int(counts.group(i)) for i in (1, 4, 5, 6, 7))
    if not succeeded or failed or errored or timeout or (exact and succeeded != total):
        raise BenchError(f"h2load to {address}: requests failed:\n{output}")
    received, expected = int(data.group(1)), succeeded * frame
    if received < expected or (exact and (received != expected or int(status.group(1)) != total)):
        raise BenchError(
            f"h2load to {address} got {received} bytes of messages for {succeeded} "
            f"requests answering {frame}: some calls answered no message (a gRPC error)"
        )
    return float(rate.group(1)), succeeded


# -- the processes -----------------------------------------------------------------------


def cpu_seconds(sessions: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by the live processes of ``sessions``."""
    wanted, ticks, total = set(sessions), os.sysconf("SC_CLK_TCK"), 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[3]) in wanted:  # the session; utime, stime follow
                total += int(fields[11]) + int(fields[12])
    return total / ticks


class Processes:
    """The children of one stage; each is stopped (its whole group) on exit."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._stack = contextlib.AsyncExitStack()
        #: The session of each child (its pid: each leads one).
        self.sessions: list[int] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def spawn(self, argv: Sequence[str], *, what: str, pipes: bool = False) -> Any:
        """Start ``argv`` in a session of its own, SIGTERMed should this process die
        (through util-linux's setpriv, where there is one); stderr (and stdout unless
        ``pipes``) go to a log named after ``what``."""
        from node_agent.runtime import ChildProcess

        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            argv = [setpriv, "--pdeathsig", "TERM", *argv]
        log = self._logs / f"{what.replace(' ', '-')}.log"
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=child_env(),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if pipes else sink,
                stderr=sink,
                start_new_session=True,
            )
        child = ChildProcess(process, what=what)
        self.sessions.append(process.pid)
        self._stack.push_async_callback(self._stop, child)
        return child

    async def endpoint(self, child: Any) -> str:
        """The ``endpoint HOST:PORT`` line a child prints once it serves."""
        try:
            line = await asyncio.wait_for(child.process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        text = line.decode().strip()
        if not text.startswith("endpoint "):
            log = self._logs / f"{child.what.replace(' ', '-')}.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise BenchError(f"{child.what} did not start ({text or 'no output'}):\n{tail}")
        return text.removeprefix("endpoint ")

    @staticmethod
    async def _stop(child: Any) -> None:
        if child.process.stdin is not None:
            child.process.stdin.close()  # a driver of ours stops on its own
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.process.wait(), 20)
        await child.stop(grace=5)


def nginx_config(directory: Path, port: int, upstreams: Sequence[str], workers: int) -> str:
    """nginx in the foreground on 127.0.0.1:``port`` (h2c), ``grpc_pass`` to the
    upstreams with equal static weights over keepalive connections."""
    servers = "\n".join(f"        server {address} weight=1;" for address in upstreams)
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes {workers};
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp}
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    http2_max_concurrent_streams 1024;
    upstream replicas {{
{servers}
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            grpc_pass grpc://replicas;
        }}
    }}
}}
"""


@dataclass
class Bench:
    """One run: the model, the request, the load, and where logs go."""

    workdir: Path
    model: Any  # astra.models.DemoModel
    request: Request
    load: Load
    timing: Timing
    nginx_workers: int

    async def measure(
        self, name: str, addresses: Sequence[str], cpu: dict[str, list[int]] | None = None
    ) -> Result:
        """Check ``addresses``, warm them up, measure them, check them again; with the
        CPU per request of ``cpu``'s groups of sessions over the measured run."""
        print(f"measuring {name}", file=sys.stderr, flush=True)
        for address in addresses:
            await check(address, self.request, self.timing.checks)
        logs = self.workdir / "logs" / name
        warmup = [f"-D{round(self.timing.warmup * 1000)}ms"] * len(addresses)
        _, rates = await h2load(addresses, self.load, self.request, logs, runs=warmup)
        # As many requests as the warm-up's pace makes last the measured run's seconds.
        least = 8 * self.load.connections * self.load.streams
        counts = [f"-n{max(least, round(rate * self.timing.seconds))}" for rate in rates]
        groups = cpu or {}
        before = {group: cpu_seconds(sessions) for group, sessions in groups.items()}
        result, _ = await h2load(addresses, self.load, self.request, logs, runs=counts)
        used = {
            group: (cpu_seconds(sessions) - before[group]) / result.requests * 1e6
            for group, sessions in groups.items()
        }
        for address in addresses:
            await check(address, self.request, self.timing.checks)
        return replace(result, cpu_us=used)

    async def replicas(self, processes: Processes, service_times: Sequence[float]) -> list[str]:
        """Our replicas, one process each, with these service times; their endpoints."""
        children = []
        for index, service_time in enumerate(service_times):
            config = {
                "model": str(self.model.path),
                "sha256": self.model.sha256,
                "cache": str(self.workdir / "cache"),
                "service_time": service_time,
            }
            argv = [sys.executable, __file__, "--replica", json.dumps(config)]
            children.append(await processes.spawn(argv, what=f"replica {index}", pipes=True))
        return [await processes.endpoint(child) for child in children]

    async def gateway(self, processes: Processes, scheduler: str) -> str:
        """``python -m gateway`` following the routes of ``scheduler``; its address."""
        from astra.testing import free_port

        address = f"127.0.0.1:{free_port()}"
        argv = [
            sys.executable, "-m", "gateway", "--api-address", scheduler,
            "--gateway-address", address, "--log-level", "WARNING",
        ]  # fmt: skip
        child = await processes.spawn(argv, what="gateway")
        await wait_serving(address, self.request, alive=lambda: child.returncode is None)
        return address

    async def nginx(self, processes: Processes, upstreams: Sequence[str], what: str) -> str:
        """Debian's nginx in front of ``upstreams``; its address."""
        from astra.testing import free_port

        binary = tool("nginx", "nginx-light")
        directory = self.workdir / what
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = directory / "nginx.conf"
        config.write_text(nginx_config(directory, port, upstreams, self.nginx_workers))
        argv = [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")]
        child = await processes.spawn(argv, what=what)
        address = f"127.0.0.1:{port}"
        await wait_serving(address, self.request, alive=lambda: child.returncode is None)
        return address

    async def ours(self, service_times: Sequence[float], *, direct: bool) -> dict[str, Result]:
        """Our replicas with these service times: (direct,) gateway, nginx."""
        from astra.testing import RouteFeed, route_spec, serve_route_feed

        results = {}
        async with Processes(self.workdir) as processes:
            endpoints = await self.replicas(processes, service_times)
            replicas = {"replicas": processes.sessions}
            if direct:
                results["direct"] = await self.measure("direct", endpoints, replicas)
            feed = RouteFeed()
            await feed.publish([route_spec(MODEL, VERSION, *endpoints)])
            scheduler = await serve_route_feed(feed)
            try:
                async with Processes(self.workdir) as gateway:
                    address = await self.gateway(gateway, scheduler.address)
                    cpu = {"proxy": gateway.sessions, **replicas}
                    results["gateway"] = await self.measure("gateway", [address], cpu)
            finally:
                await scheduler.shutdown(0.5)
            async with Processes(self.workdir) as nginx:
                address = await self.nginx(nginx, endpoints, f"nginx-{len(results)}")
                cpu = {"proxy": nginx.sessions, **replicas}
                results["nginx"] = await self.measure("nginx", [address], cpu)
        return results

    async def ray_serve(self, scenarios: Sequence[tuple[int, float, float]]) -> list[Result]:
        """Ray Serve on a local Ray head, one deployment per scenario (replicas, service
        time, the slow replica's service time)."""
        from astra.testing import free_port
        from node_agent.runtime import RayNodeSpec, start_ray_node

        spec = RayNodeSpec(
            temp_dir=self.workdir / "ray",
            ip="127.0.0.1",
            gcs_port=free_port(),
            cpus=1000 * max(replicas for replicas, _, _ in scenarios),
            object_store_bytes=80_000_000,
        )
        # Serve's proxy pickles the requests it hands to replicas: the generated messages
        # go by their proto module (``inference.grpc_predict_v2_pb2``), importable from
        # the generated code's root, as a user's own stubs would be.
        stubs = Path(importlib.import_module("astra._gen").__file__ or "").parent
        head = await start_ray_node(spec, timeout=START_TIMEOUT, env=child_env(stubs))
        results = []
        try:
            async with Processes(self.workdir) as processes:
                argv = [
                    sys.executable, __file__, "--ray-serve", spec.gcs_address,
                    str(self.model.path),
                ]  # fmt: skip
                driver = await processes.spawn(argv, what="ray serve", pipes=True)
                for replicas, service_time, slow_time in scenarios:
                    driver.process.stdin.write(f"{replicas} {service_time} {slow_time}\n".encode())
                    await driver.process.stdin.drain()
                    address = await processes.endpoint(driver)
                    await wait_serving(address, self.request, alive=lambda: True)
                    results.append(await self.measure("ray-serve", [address]))
        finally:
            await head.stop(grace=10)
        return results


# -- the children ------------------------------------------------------------------------


def serve_replica(config: dict[str, Any]) -> int:
    """``--replica``: one of our replicas; prints ``endpoint HOST:PORT`` once it serves,
    stops when stdin closes."""
    from astra import server
    from astra._gen.astra.v1 import app_pb2
    from node_agent.replica import ReplicaServer, ReplicaSettings

    async def run() -> int:
        model = app_pb2.Model(
            name=MODEL, version=VERSION, uri=config["model"], sha256=config["sha256"]
        )
        settings = ReplicaSettings(
            host="127.0.0.1",
            cache_dir=config["cache"],
            workers=WORKERS,
            service_time=config["service_time"],
        )
        replica = ReplicaServer([model], settings)
        try:
            serving = await replica.start()
            print(f"endpoint {serving.endpoint}", flush=True)
            await asyncio.to_thread(sys.stdin.read)
        finally:
            await replica.stop()
        return 0

    return server.run(run())


def _held(model: Any, prepared: Any, service_time: float) -> list[np.ndarray]:
    """What our replica's inference worker does: run the model, hold the worker."""
    results: list[np.ndarray] = model.run(prepared)
    if service_time > 0:
        time.sleep(service_time)
    return results


class ServeReplica:
    """The model as a Ray Serve deployment: the same ONNX Runtime session, request
    checks and answer as our replicas (``OnnxModel``), ``WORKERS`` inference threads,
    and the same service time; the replica of rank 0 is the slow one when asked."""

    def __init__(self, path: str, service_time: float, slow_time: float) -> None:
        import onnxruntime as ort
        from ray import serve

        from node_agent.replica import OnnxModel, plan_providers

        plan = plan_providers(gpus=0, available=ort.get_available_providers())
        self.model = OnnxModel.load(MODEL, VERSION, Path(path), plan=plan, threads=1)
        slow = slow_time > 0 and serve.get_replica_context().rank.rank == 0
        self.service_time = slow_time if slow else service_time
        self.workers = ThreadPoolExecutor(WORKERS)

    async def ModelInfer(self, request: Any) -> Any:  # the gRPC method's name
        prepared = self.model.prepare(request)
        results = await asyncio.get_running_loop().run_in_executor(
            self.workers, _held, self.model, prepared, self.service_time
        )
        return self.model.respond(request, prepared, results)


def serve_ray(gcs: str, model: str) -> int:
    """``--ray-serve``: Ray Serve with its gRPC proxy on the Ray at ``gcs``. Each stdin
    line ``REPLICAS SERVICE_TIME SLOW_TIME`` (re)deploys the model and answers
    ``endpoint HOST:PORT`` once it runs; Serve shuts down when stdin closes."""
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from astra.testing import free_port

    ray.init(
        address=gcs, namespace="astra-bench", log_to_driver=False, logging_level=logging.WARNING
    )
    port = free_port()
    serve.start(
        http_options=HTTPOptions(host="127.0.0.1", port=free_port()),
        grpc_options=gRPCOptions(port=port, grpc_servicer_functions=[SERVICER]),
    )
    deployed = False
    try:
        for line in sys.stdin:
            replicas, service_time, slow_time = line.split()
            if deployed:
                serve.delete(MODEL)
            deployment = serve.deployment(
                ServeReplica,
                name=MODEL,
                num_replicas=int(replicas),
                ray_actor_options={"num_cpus": 1},
                logging_config={"enable_access_log": False, "log_level": "WARNING"},
            )
            serve.run(
                deployment.bind(model, float(service_time), float(slow_time)),
                name=MODEL,
            )
            deployed = True
            print(f"endpoint 127.0.0.1:{port}", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


# -- the report --------------------------------------------------------------------------


def format_table(rows: dict[str, Result], baseline: Result | None) -> list[str]:
    """One row per target: req/s, p50, p99 (and req/s against the baseline)."""
    header = f"{'target':<12}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}"
    lines = [header + (f"{'req/s vs direct':>18}" if baseline else "")]
    for name, result in rows.items():
        line = f"{name:<12}{result.rps:>12,.1f}{result.p50_ms:>10.3f}{result.p99_ms:>10.3f}"
        if baseline:
            line += f"{result.rps / baseline.rps:>17.2f}x"
        lines.append(line)
    return lines


def verdict(ratio: float, target: float, *, at_least: bool) -> str:
    met = ratio >= target if at_least else ratio <= target
    return "met" if met else "MISSED"


def cpu_line(rows: dict[str, Result]) -> str:
    """The CPU per request each target's processes used."""
    parts = [
        f"{name}: " + ", ".join(f"{group} {value:,.0f}" for group, value in result.cpu_us.items())
        for name, result in rows.items()
        if result.cpu_us
    ]
    return "CPU per request, microseconds (user + system): " + "; ".join(parts)


def report(even: dict[str, Result], slow: dict[str, Result]) -> list[str]:
    """The two tables and the ratios, with the targets next to them."""
    lines = ["every replica alike:", *format_table(even, even["direct"]), cpu_line(even)]
    gateway = even["gateway"]
    for other, target in (("nginx", 0.8), ("ray-serve", 5.0)):
        ratio = gateway.rps / even[other].rps
        lines.append(
            f"ratio gateway/{other} throughput: {ratio:.2f}x "
            f"(target >= {target:g}x: {verdict(ratio, target, at_least=True)})"
        )
    lines += ["", f"one of four replicas {SLOWDOWN}x slower:", *format_table(slow, None)]
    lines.append(cpu_line(slow))
    ratio = slow["gateway"].p99_ms / slow["nginx"].p99_ms
    lines.append(
        f"ratio gateway/nginx p99: {ratio:.2f}x (target <= 0.5x: "
        f"{verdict(ratio, 0.5, at_least=False)})"
    )
    ratio = slow["gateway"].p99_ms / slow["ray-serve"].p99_ms
    lines.append(f"ratio gateway/ray-serve p99: {ratio:.2f}x")
    return lines


async def run(args: argparse.Namespace) -> int:
    from astra._gen.inference import grpc_predict_v2_pb2 as pb
    from astra.models import write_demo_model

    tool("h2load", "nghttp2-client")
    tool("nginx", "nginx-light")
    timing = TINY if args.tiny else FULL
    cpu = args.load_cpu if args.load_cpu is not None else max(os.sched_getaffinity(0))
    load = Load(connections=args.connections, streams=args.streams, cpu=cpu)
    service = args.service_ms / 1000
    batch = (np.random.default_rng(0).standard_normal((args.batch, MODEL_SHAPE["inputs"]))).astype(
        np.float32
    )
    with tempfile.TemporaryDirectory(prefix="astra-gb-") as root:
        workdir = Path(root)
        (workdir / "logs").mkdir()
        model = write_demo_model(workdir / "models", **MODEL_SHAPE)
        message = pb.ModelInferRequest(model_name=MODEL, model_version=VERSION, id="bench")
        message.inputs.add(name="input", datatype="FP32", shape=list(batch.shape))
        message.raw_input_contents.append(batch.tobytes())
        body = message.SerializeToString()
        frame = workdir / "request.bin"
        frame.write_bytes(b"\0" + len(body).to_bytes(4, "big") + body)
        request = Request(body=body, frame=frame, expected=model.reference(batch))
        bench = Bench(workdir, model, request, load, timing, args.nginx_workers)
        slow_times = [service * SLOWDOWN] + [service] * 3
        even = await bench.ours([0.0] * args.replicas, direct=True)
        slow = await bench.ours(slow_times, direct=False)
        serve_even, serve_slow = await bench.ray_serve(
            [(args.replicas, 0.0, 0.0), (4, service, service * SLOWDOWN)]
        )
    even["ray-serve"], slow["ray-serve"] = serve_even, serve_slow
    print(
        f"gateway benchmark: demo model {MODEL_SHAPE}, batch {args.batch}, CPU; "
        f"{args.replicas} replicas of {WORKERS} workers; h2load on CPU {cpu}, "
        f"{load.connections} connections x {load.streams} streams; nginx "
        f"{args.nginx_workers} worker(s); {timing.seconds:g} s per target after "
        f"{timing.warmup:g} s of warm-up; slow scenario: service time {args.service_ms:g} ms, "
        f"one replica {args.service_ms * SLOWDOWN:g} ms"
    )
    print("\n".join(report(even, slow)))
    return 0


async def _until_terminated(work: Coroutine[Any, Any, int]) -> int:
    """``work``, cancelled on SIGTERM as on Ctrl-C, so that it stops what it started."""
    task = asyncio.ensure_future(work)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="about a second per target")
    parser.add_argument("--replicas", type=int, default=4, help="replicas when all are alike")
    parser.add_argument("--connections", type=int, default=4, help="h2load connections")
    parser.add_argument("--streams", type=int, default=8, help="streams per connection")
    parser.add_argument("--batch", type=int, default=4, help="rows per inference")
    parser.add_argument(
        "--service-ms", type=float, default=20.0, help="service time, slow scenario"
    )
    parser.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes")
    parser.add_argument("--load-cpu", type=int, help="the CPU h2load runs on (default: the last)")
    parser.add_argument("--replica", help=argparse.SUPPRESS)
    parser.add_argument("--ray-serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replica:
        return serve_replica(json.loads(args.replica))
    if args.ray_serve:
        return serve_ray(*args.ray_serve)
    if args.connections < args.replicas:
        parser.error("--connections must be at least --replicas (direct: one per replica)")
    try:
        return asyncio.run(_until_terminated(run(args)))
    except BenchError as exc:
        print(f"gateway benchmark failed: {exc}", file=sys.stderr)
        return 1
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("gateway benchmark stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
