"""Membership benchmark: the Resource service with a simulated fleet, over its real gRPC API.

    python bench/membership.py [--tiny] [--nodes 10000,100000]

For each fleet size it starts a fresh etcd and one Resource replica as a subprocess (so
its CPU and memory are its own, read with psutil), registers the nodes, and drives them
with batched heartbeats (one ``HeartbeatRequest`` carries 1,000 nodes) on several streams
while a WatchCluster subscriber follows the fleet. It reports:

- heartbeats/s: the most the replica ingests, flooded by extra streams on top of the
  fleet's own heartbeats (counted once the replica has answered every request);
- CPU: the replica's CPU seconds per second of steady heartbeating, per 10k nodes;
- memory/node: the replica's RSS growth per node, from a warmed-up replica (its first
  1,000 nodes heartbeating, a subscriber attached) to the whole fleet heartbeating;
- drain: from a DrainNode call to the node being DRAINING at the subscriber, p50/p99;
- dead: 1% of the nodes go silent; from each one's last heartbeat to DEAD at the
  subscriber, p50/p99, next to ``dead_after``;
- false DEAD: nodes seen DEAD although they never stopped heartbeating (should be 0).

``--tiny`` runs 200 nodes with a short heartbeat interval and ``dead_after``, in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra._gen.astra.v1 import resource_service_pb2_grpc as rs_grpc
from astra.testing import EtcdProcess, free_port, running, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1000
ZONES = ("zone-a", "zone-b", "zone-c")
ACCELERATORS = ("", "nvidia-a10g", "nvidia-l4")
_CHANNEL = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


@dataclass(frozen=True)
class Profile:
    heartbeat_interval: float
    dead_after: float
    steady_seconds: float
    flood_seconds: float
    flood_streams: int
    drains: int


FULL = Profile(
    heartbeat_interval=1.0,
    dead_after=3.0,
    steady_seconds=10.0,
    flood_seconds=5.0,
    flood_streams=8,
    drains=200,
)
TINY = Profile(
    heartbeat_interval=0.2,
    dead_after=1.0,
    steady_seconds=1.0,
    flood_seconds=0.5,
    flood_streams=2,
    drains=20,
)


@dataclass
class Result:
    nodes: int
    ingest_per_second: float
    cpu_per_10k: float
    memory_per_node: float
    drain: list[float]
    dead: list[float]
    dead_after: float
    missing: dict[str, int] = field(default_factory=dict)
    #: Nodes seen DEAD that kept heartbeating (should be 0).
    false_dead: int = 0
    #: The benchmark's own worst lag sending a heartbeat (if near dead_after, it starved).
    driver_lag: float = 0.0


# -- the Resource replica ---------------------------------------------------------------


@contextlib.contextmanager
def resource_process(store_url: str, profile: Profile) -> Iterator[tuple[str, psutil.Process]]:
    """A Resource replica in its own process; yields its address and psutil handle."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "programs.cli",
        "serve",
        "resource",
        "--store-url",
        store_url,
        "--api-address",
        f"127.0.0.1:{port}",
        "--heartbeat-interval",
        str(profile.heartbeat_interval),
        "--dead-after",
        str(profile.dead_after),
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_for_port(port, timeout=60, process=process)
        yield f"127.0.0.1:{port}", psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# -- the simulated fleet --------------------------------------------------------------------


def _node(index: int) -> node_pb2.Node:
    node = node_pb2.Node(
        name=f"nodes/sim-{index:06d}",
        address=f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}",
        zone=ZONES[index % len(ZONES)],
        accelerator=ACCELERATORS[index % len(ACCELERATORS)],
        labels={"pool": "cheap", "rack": f"r{index % 50}"},
        agent_version="bench",
    )
    node.capacity.cpu_millis, node.capacity.memory_bytes = 16_000, 64 << 30
    node.capacity.gpus = 0 if not node.accelerator else 1
    return node


def _heartbeat(name: str, uid: str) -> rs.NodeHeartbeat:
    usage = node_pb2.NodeUsage(
        cpu_utilization=random.random(),
        memory_used_bytes=random.randrange(1 << 34),
        gpu_utilization=random.random(),
    )
    return rs.NodeHeartbeat(node=name, uid=uid, usage=usage)


class Fleet:
    """The nodes' heartbeats: one stream per batch of nodes, each sending its batch every
    interval. A node heartbeats from the moment its registration returns. Nodes can be
    silenced; the time of each one's last heartbeat is then recorded."""

    def __init__(self, stub: rs_grpc.ResourceServiceStub, interval: float) -> None:
        self._stub = stub
        self._interval = interval
        self._batches: list[dict[str, rs.NodeHeartbeat]] = []
        self.requests: list[rs.HeartbeatRequest] = []
        self._last_sent: list[float] = []
        self._leaving: dict[int, set[str]] = {}
        self._changed: set[int] = set()  # batches whose request must be built again
        self._streams: list[asyncio.Task[None]] = []
        #: Silenced nodes and when their last heartbeat was sent (once known).
        self.last_heartbeat: dict[str, float] = {}
        #: The latest a heartbeat request left after it was due (this process's own lag).
        self.worst_lag = 0.0

    async def join(self, indexes: range, *, concurrency: int = 256) -> None:
        """Register the nodes numbered ``indexes`` as one new batch."""
        index = len(self._batches)
        batch: dict[str, rs.NodeHeartbeat] = {}
        self._batches.append(batch)
        self.requests.append(rs.HeartbeatRequest())
        self._last_sent.append(0.0)
        self._streams.append(asyncio.create_task(self._stream(index)))
        pending = iter(indexes)

        async def worker() -> None:
            for number in pending:
                request = rs.RegisterNodeRequest(node=_node(number))
                node = (await self._stub.RegisterNode(request, timeout=60)).node
                batch[node.name] = _heartbeat(node.name, node.uid)
                self._changed.add(index)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    def names(self) -> list[str]:
        return [name for batch in self._batches for name in batch]

    def silence(self, names: set[str]) -> None:
        """Leave ``names`` out of their streams' requests from the next one on."""
        for index, batch in enumerate(self._batches):
            leaving = names & batch.keys()
            if leaving:
                for name in leaving:
                    del batch[name]
                self._leaving.setdefault(index, set()).update(leaving)
                self._changed.add(index)

    async def close(self) -> None:
        for stream in self._streams:
            stream.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)

    async def _stream(self, index: int) -> None:
        call = self._stub.Heartbeat()
        reader = asyncio.create_task(_drain(call))
        start = time.monotonic()
        try:
            for tick in range(sys.maxsize):
                due = start + tick * self._interval  # a node joining waits at most one
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                self.worst_lag = max(self.worst_lag, time.monotonic() - due)
                leaving = self._leaving.pop(index, set())
                if index in self._changed:
                    self._changed.discard(index)
                    self.requests[index] = rs.HeartbeatRequest(
                        heartbeats=self._batches[index].values()
                    )
                await call.write(self.requests[index])
                for name in leaving:  # the previous request was their last
                    self.last_heartbeat[name] = self._last_sent[index]
                self._last_sent[index] = time.monotonic()
        finally:
            call.cancel()
            reader.cancel()


async def _drain(call: grpc.aio.StreamStreamCall) -> None:
    """Read a heartbeat stream's directives to its end (an unread stream stalls its writes)."""
    while await call.read() is not grpc.aio.EOF:
        pass


async def flood(
    stub: rs_grpc.ResourceServiceStub,
    requests: list[rs.HeartbeatRequest],
    *,
    seconds: float,
    streams: int,
) -> float:
    """Heartbeats per second the replica ingests from ``streams`` streams writing back to
    back for ``seconds``; a stream's count is final when the replica has answered all of it."""

    async def stream(offset: int) -> int:
        call = stub.Heartbeat()
        reader = asyncio.create_task(_drain(call))
        sent = 0
        for turn in range(offset, sys.maxsize):
            if time.monotonic() >= deadline:
                break
            request = requests[turn % len(requests)]
            await call.write(request)
            sent += len(request.heartbeats)
        await call.done_writing()
        await reader
        return sent

    started = time.monotonic()
    deadline = started + seconds
    counts = await asyncio.gather(*(stream(offset * 7) for offset in range(streams)))
    return sum(counts) / (time.monotonic() - started)


class Subscriber:
    """A WatchCluster subscriber noting when each node is first seen DRAINING and DEAD."""

    def __init__(self, stub: rs_grpc.ResourceServiceStub) -> None:
        self._stub = stub
        self.seen: dict[int, dict[str, float]] = {
            node_pb2.NODE_PHASE_DRAINING: {},
            node_pb2.NODE_PHASE_DEAD: {},
        }
        self.ready = asyncio.Event()
        self.nodes = 0

    async def run(self) -> None:
        async for message in self._stub.WatchCluster(rs.WatchClusterRequest(omit_usage=True)):
            now = time.monotonic()
            for node in message.nodes:
                seen = self.seen.get(node.phase)
                if seen is not None:
                    seen.setdefault(node.name, now)
            if message.snapshot:
                self.nodes = len(message.nodes)
                self.ready.set()

    async def wait_for(self, phase: int, names: Sequence[str], timeout: float) -> dict[str, float]:
        """When each of ``names`` was first seen in ``phase`` (those not seen by
        ``timeout`` are left out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(name in self.seen[phase] for name in names):
            await asyncio.sleep(0.02)
        return {name: self.seen[phase][name] for name in names if name in self.seen[phase]}


async def drain_nodes(
    stub: rs_grpc.ResourceServiceStub, names: list[str], *, concurrency: int = 4
) -> dict[str, float]:
    """Drain ``names`` a few at a time, at random moments; returns when each call started."""
    started: dict[str, float] = {}
    pending = iter(names)

    async def worker() -> None:
        for name in pending:
            await asyncio.sleep(random.uniform(0, 0.05))
            started[name] = time.monotonic()
            await stub.DrainNode(rs.DrainNodeRequest(name=name, reason="bench"), timeout=30)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return started


# -- one fleet size ---------------------------------------------------------------------------


async def bench_fleet(
    address: str, process: psutil.Process, count: int, profile: Profile
) -> Result:
    async with grpc.aio.insecure_channel(address, options=_CHANNEL) as channel:
        stub = rs_grpc.ResourceServiceStub(channel)
        fleet = Fleet(stub, profile.heartbeat_interval)
        subscriber = Subscriber(stub)
        watcher: asyncio.Task[None] | None = None
        try:
            # Warm up (every code path run once, a subscriber attached), then the baseline:
            # memory per node is the growth from there, not the process's fixed costs.
            warm = min(BATCH, count // 2)
            started = time.monotonic()
            await fleet.join(range(warm))
            watcher = asyncio.create_task(subscriber.run())
            await asyncio.wait_for(subscriber.ready.wait(), 60)
            await asyncio.sleep(2 * profile.heartbeat_interval)
            baseline = process.memory_info().rss
            for start in range(warm, count, BATCH):
                await fleet.join(range(start, min(start + BATCH, count)))
            print(f"  {count:,} nodes registered in {time.monotonic() - started:.1f} s", flush=True)
            await asyncio.sleep(2 * profile.heartbeat_interval)
            cpu, wall = _cpu_seconds(process), time.monotonic()
            await asyncio.sleep(profile.steady_seconds)
            cpu_rate = (_cpu_seconds(process) - cpu) / (time.monotonic() - wall)
            memory = process.memory_info().rss - baseline
            ingest = await flood(
                stub, fleet.requests, seconds=profile.flood_seconds, streams=profile.flood_streams
            )

            names = [
                name
                for name in fleet.names()
                if name not in subscriber.seen[node_pb2.NODE_PHASE_DEAD]
            ]
            random.shuffle(names)
            drained = names[: min(profile.drains, max(1, count // 100))]
            silent = names[len(drained) : len(drained) + max(1, count // 100)]
            drain_started = await drain_nodes(stub, drained)
            drain_seen = await subscriber.wait_for(
                node_pb2.NODE_PHASE_DRAINING, drained, timeout=30
            )

            fleet.silence(set(silent))
            dead_seen = await subscriber.wait_for(
                node_pb2.NODE_PHASE_DEAD, silent, timeout=profile.dead_after + 30
            )
        finally:
            if watcher is not None:
                watcher.cancel()
            await fleet.close()
    return Result(
        nodes=count,
        ingest_per_second=ingest,
        cpu_per_10k=cpu_rate / (count / 10_000),
        memory_per_node=memory / (count - warm),
        drain=[drain_seen[name] - drain_started[name] for name in drain_seen],
        dead=[
            dead_seen[name] - fleet.last_heartbeat[name]
            for name in dead_seen
            if name in fleet.last_heartbeat
        ],
        dead_after=profile.dead_after,
        missing={"drain": len(drained) - len(drain_seen), "dead": len(silent) - len(dead_seen)},
        false_dead=len(subscriber.seen[node_pb2.NODE_PHASE_DEAD].keys() - set(silent)),
        driver_lag=fleet.worst_lag,
    )


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def format_table(results: list[Result]) -> Iterator[str]:
    yield (
        f"{'nodes':>8} {'heartbeats/s':>13} {'CPU s/s per 10k':>16} {'memory/node':>12} "
        f"{'drain p50/p99 ms':>17} {'dead p50/p99 s (dead_after)':>28} {'false DEAD':>10}"
    )
    for result in results:
        drain_ms = [seconds * 1000 for seconds in result.drain]
        drain = f"{percentile(drain_ms, 0.5):.0f}/{percentile(drain_ms, 0.99):.0f}"
        dead = (
            f"{percentile(result.dead, 0.5):.2f}/{percentile(result.dead, 0.99):.2f} "
            f"({result.dead_after:g})"
        )
        yield (
            f"{result.nodes:>8,} {result.ingest_per_second:>13,.0f} {result.cpu_per_10k:>16.3f} "
            f"{result.memory_per_node:>10,.0f} B {drain:>17} {dead:>28} {result.false_dead:>10}"
        )
        if any(result.missing.values()):
            yield f"{'':>8} not seen at the subscriber: {result.missing}"
        if result.driver_lag > result.dead_after / 3:
            yield f"{'':>8} the driver itself sent heartbeats up to {result.driver_lag:.1f} s late"


async def run(sizes: list[int], profile: Profile) -> list[Result]:
    results = []
    for count in sizes:
        with running(EtcdProcess()) as etcd:
            assert isinstance(etcd, EtcdProcess)
            with resource_process(etcd.url, profile) as (address, process):
                results.append(await bench_fleet(address, process, count, profile))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="200 nodes, short intervals: seconds")
    parser.add_argument(
        "--nodes", help="comma-separated fleet sizes (default: 10000,100000; tiny: 200)"
    )
    args = parser.parse_args(argv)
    profile = TINY if args.tiny else FULL
    sizes = [
        int(size) for size in (args.nodes or ("200" if args.tiny else "10000,100000")).split(",")
    ]
    print(
        f"membership benchmark: heartbeat every {profile.heartbeat_interval:g} s, dead_after "
        f"{profile.dead_after:g} s, batches of {BATCH} heartbeats, one Resource replica on etcd",
        flush=True,
    )
    results = asyncio.run(run(sizes, profile))
    print("\n".join(format_table(results)))


if __name__ == "__main__":
    main()
