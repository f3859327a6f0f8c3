"""Scheduling benchmark: many optimistic schedulers placing a million replicas.

    python bench/scheduling.py [--tiny] [--nodes N] [--replicas N] [--apps N]
                               [--schedulers N] [--views N] [--backends embedded,etcd]
                               [--compare-replicas N] [--seed N]

A heterogeneous fleet (CPU-only nodes and three GPU types, across four zones, with
labels) is written to the store; then ``--schedulers`` workers take the apps from a
work queue, one :class:`AppScheduler` per app, and place every replica. Workers share
``--views`` fleet views, each fed by its own store watch: a view is one App-service
replica, and by default there is one, as on a two-core machine, its 16 workers seeing
each other's in-flight plans. Every worker commits through a planner of its own. Once
on the embedded store (SQLite file) and once on a real etcd, each in a fresh process,
it reports:

- placements/s over the whole run, and placements and nodes per committed transaction;
- conflicts per committed transaction (lost races / commits);
- p50 and p99 time for an app to become fully placed, from the moment a worker takes
  it (apps wait in the queue before that: 16 workers, 1,000 apps);
- the process's peak RSS (schedulers, views and, for the embedded store, the store);
- the ceiling: the raw batched-CAS rate of the same store, measured in the same run with
  16 clients sending transactions of the run's average shape (compares, puts and failure
  reads, value sizes), in placements/s, and our rate as a fraction of it;
- a verification after the run: no node over its capacity, no replica in two
  allocations, allocations and replica records naming the same replicas.

Then Omega's comparison of conflict detection, on a fleet and workload twenty times
smaller (``--compare-replicas``) where every scheduler has a private view, as in Omega:
fine-grained (ours), all-or-nothing, and coarse (one global sequence key), each from an
empty store, on both backends.

``--tiny`` runs a small fleet for tests; its numbers are only a smoke signal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from astra import gc_for_serving, keys
from astra.records import AllocRecord, NodeRecord, Quantity
from astra.store import MAX_TXN_OPS, Compare, Get, Put, RangeResult, Store, open_store
from astra.testing import EtcdProcess, running
from scheduling import (
    AppScheduler,
    AppSpec,
    CommitStats,
    ConflictMode,
    FleetView,
    Planner,
    StoreFeed,
    Strategy,
    WorkQueue,
)

GIB = 1 << 30
BACKENDS = ("embedded", "etcd")
ZONES = ("zone-a", "zone-b", "zone-c", "zone-d")
#: Node kinds: (share of the fleet, accelerator, cpu_millis, memory GiB, gpus).
NODE_KINDS = (
    (0.80, "", 16_000, 64, 0),
    (0.10, "nvidia-a10g", 32_000, 128, 4),
    (0.05, "nvidia-l4", 48_000, 192, 8),
    (0.05, "nvidia-h100", 96_000, 1024, 8),
)
GPU_PREFERENCES = (
    ("nvidia-h100",),
    ("nvidia-a10g", "nvidia-l4"),
    ("nvidia-l4", "nvidia-h100"),
    (),
)
#: Share of the replicas that need GPUs (about half the fleet's GPUs).
GPU_SHARE = 0.05
#: Reconciles of one app before its worker gives up on what is still pending.
SETTLE_ROUNDS = 10


@dataclass(frozen=True)
class Workload:
    nodes: int
    replicas: int
    apps: int
    schedulers: int
    views: int
    seed: int
    ceiling_seconds: float

    def smaller(self, replicas: int) -> Workload:
        """The same mix at ``replicas`` replicas, fleet and apps scaled alike."""
        scale = replicas / self.replicas
        return dataclasses.replace(
            self,
            nodes=max(20, round(self.nodes * scale)),
            replicas=replicas,
            apps=max(4, round(self.apps * scale)),
        )


# -- the fleet and the apps --------------------------------------------------------------


def make_fleet(workload: Workload) -> list[NodeRecord]:
    rng = random.Random(workload.seed)
    records = []
    index = 0
    for share, accelerator, cpu, memory, gpus in NODE_KINDS:
        for _ in range(round(workload.nodes * share)):
            labels = {"tier": "premium" if rng.random() < 0.1 else "standard"}
            labels["disk"] = "ssd" if rng.random() < 0.5 else "hdd"
            records.append(
                NodeRecord(
                    node_id=f"node-{index:06d}",
                    uid=f"uid-{index}",
                    capacity=Quantity(cpu, memory * GIB, gpus),
                    zone=ZONES[index % len(ZONES)],
                    accelerator=accelerator,
                    labels=labels,
                )
            )
            index += 1
    return records


def _shares(rng: random.Random, total: int, count: int) -> list[int]:
    """``total`` split into ``count`` heavy-tailed parts of at least one each."""
    if count == 0:
        return []
    weights = [rng.paretovariate(1.5) for _ in range(count)]
    scale = (total - count) / sum(weights)
    parts = [1 + int(weight * scale) for weight in weights]
    for index in range(total - sum(parts)):
        parts[index % count] += 1
    return parts


def make_apps(workload: Workload) -> list[AppSpec]:
    rng = random.Random(workload.seed + 1)
    gpu_apps = max(1, workload.apps * 15 // 100)
    cpu_apps = workload.apps - gpu_apps
    gpu_replicas = max(gpu_apps, round(workload.replicas * GPU_SHARE))
    counts = _shares(rng, workload.replicas - gpu_replicas, cpu_apps) + _shares(
        rng, gpu_replicas, gpu_apps
    )
    apps = []
    for index, replicas in enumerate(counts):
        app_id = f"app-{index:05d}"
        common = {
            "app_id": app_id,
            "replicas": replicas,
            "ray_clusters": rng.randint(1, 4),
            "spread_zones": rng.random() < 0.2,
            "strategy": rng.choices(list(Strategy), weights=(15, 15, 70))[0],
        }
        if index < cpu_apps:
            selector = rng.choices(({}, {"tier": "premium"}, {"disk": "ssd"}), weights=(85, 5, 10))[
                0
            ]
            resources = Quantity(
                rng.choice((250, 500, 1000, 2000)), rng.choice((1, 2, 4, 8)) * GIB // 2, 0
            )
            apps.append(
                AppSpec(
                    **common,  # type: ignore[arg-type]
                    resources=resources,
                    node_selector=selector,
                    max_per_node=rng.choice((0, 0, 0, 8)),
                )
            )
        else:
            gpus = rng.choices((1, 2), weights=(80, 20))[0]
            apps.append(
                AppSpec(
                    **common,  # type: ignore[arg-type]
                    resources=Quantity(4000, 16 * GIB, gpus),
                    accelerators=rng.choice(GPU_PREFERENCES),
                )
            )
    return apps


async def write_fleet(store: Store, records: list[NodeRecord]) -> None:
    puts = [Put(keys.node(record.node_id), record.to_bytes()) for record in records]
    for start in range(0, len(puts), MAX_TXN_OPS):
        await store.txn((), puts[start : start + MAX_TXN_OPS])


# -- one run -----------------------------------------------------------------------------


@dataclass
class Run:
    """What one scheduling run measured."""

    seconds: float
    stats: CommitStats
    latencies: list[float]
    unplaceable: int
    pending: int
    peak_rss: int = 0  # bytes
    ceiling: float = 0.0  # placements/s of raw batched CAS
    overcommitted: int = -1
    inconsistent: int = -1

    @property
    def rate(self) -> float:
        return self.stats.placements / self.seconds

    @property
    def conflicts_per_txn(self) -> float:
        return self.stats.conflicts / max(1, self.stats.txns)

    @property
    def placements_per_txn(self) -> float:
        return self.stats.placements / max(1, self.stats.txns)

    @property
    def nodes_per_txn(self) -> float:
        return self.stats.allocations / max(1, self.stats.txns)


async def schedule(
    store: Store, workload: Workload, apps: list[AppSpec], mode: ConflictMode
) -> Run:
    """Place every app with ``workload.schedulers`` workers over ``workload.views`` views."""
    async with contextlib.AsyncExitStack() as stack:
        views = [FleetView() for _ in range(workload.views)]
        for view in views:
            await stack.enter_async_context(StoreFeed(store, view))
        stack.enter_context(gc_for_serving())  # as an App service's once it serves
        queue = WorkQueue()
        for app in apps:
            queue.add(app.app_id)
        specs = {app.app_id: app for app in apps}
        planners = [
            Planner(store, views[index % len(views)], mode=mode)
            for index in range(workload.schedulers)
        ]
        latencies: list[float] = []
        left = {"unplaceable": 0, "pending": 0}

        async def work(index: int) -> None:
            planner, rng = planners[index], random.Random(workload.seed + index)
            while (app_id := queue.try_get()) is not None:
                started = time.perf_counter()
                scheduler = AppScheduler(specs[app_id], planner.view, planner, rng=rng)
                for _ in range(SETTLE_ROUNDS):
                    result = await scheduler.reconcile()
                    if not result.pending:
                        break
                latencies.append(time.perf_counter() - started)
                left["unplaceable"] += len(result.unplaceable)
                left["pending"] += result.pending
                queue.done(app_id)

        progress = asyncio.create_task(_report_progress(planners))
        started = time.perf_counter()
        try:
            await asyncio.gather(*(work(index) for index in range(workload.schedulers)))
        finally:
            progress.cancel()
        seconds = time.perf_counter() - started
    stats = CommitStats()
    for planner in planners:
        stats.add(planner.stats)
    return Run(seconds, stats, latencies, left["unplaceable"], left["pending"])


async def _report_progress(planners: list[Planner]) -> None:
    started = time.perf_counter()
    while True:
        await asyncio.sleep(15)
        placed = sum(planner.stats.placements for planner in planners)
        elapsed = time.perf_counter() - started
        print(
            f"  ... {placed:,} placed in {elapsed:.0f} s ({placed / elapsed:,.0f}/s)",
            file=sys.stderr,
        )


async def verify(store: Store, apps: list[AppSpec]) -> tuple[int, int, int, int]:
    """(over-committed nodes, inconsistent replicas, mean allocation bytes, mean record bytes).

    Inconsistent: in two allocations, or allocated without a record, or the reverse.
    """
    capacity = {
        keys.last_segment(kv.key): NodeRecord.from_bytes(kv.value).capacity
        for kv in (await store.range(keys.NODES)).kvs
    }
    allocs = (await store.range(keys.ALLOC)).kvs
    overcommitted = inconsistent = 0
    allocated: set[str] = set()
    for kv in allocs:
        record = AllocRecord.from_bytes(kv.value)
        if not record.used().fits_in(capacity[keys.last_segment(kv.key)]):
            overcommitted += 1
        inconsistent += len(allocated & record.replicas.keys())
        allocated.update(record.replicas)
    records = record_bytes = 0
    for app in apps:
        for kv in (await store.range(keys.replicas_of(app.app_id))).kvs:
            records += 1
            record_bytes += len(kv.value)
            name = f"apps/{app.app_id}/replicas/{keys.last_segment(kv.key)}"
            if name not in allocated:
                inconsistent += 1
    inconsistent += max(0, len(allocated) - records)
    mean_alloc = sum(len(kv.value) for kv in allocs) // max(1, len(allocs))
    return overcommitted, inconsistent, mean_alloc, record_bytes // max(1, records)


async def batched_cas_ceiling(
    store: Store, run: Run, alloc_bytes: int, record_bytes: int, seconds: float
) -> float:
    """Placements/s of raw transactions shaped like the run's commits, on disjoint keys."""
    nodes = max(1, round(run.nodes_per_txn))
    placements = max(1, round(run.placements_per_txn))
    alloc_value, record_value = b"a" * alloc_bytes, b"r" * record_bytes
    deadline_box = [0.0]

    async def client(index: int) -> int:
        alloc_keys = [f"/bench/ceiling/{index}/alloc/{n}" for n in range(4 * nodes)]
        revisions = dict.fromkeys(alloc_keys, 0)
        done = serial = 0
        while time.perf_counter() < deadline_box[0]:
            chosen = alloc_keys[(serial * nodes) % len(alloc_keys) :][:nodes]
            fresh = [f"/bench/ceiling/{index}/replica/{serial}-{p}" for p in range(placements)]
            serial += 1
            result = await store.txn(
                [Compare.mod_revision(key) == revisions[key] for key in chosen]
                + [Compare.version(key) == 0 for key in fresh],
                [Put(key, alloc_value) for key in chosen]
                + [Put(key, record_value) for key in fresh],
                [Get(key) for key in chosen],
            )
            if result.succeeded:
                revisions.update(dict.fromkeys(chosen, result.revision))
                done += placements
            else:
                for key, read in zip(chosen, result.results, strict=True):
                    assert isinstance(read, RangeResult)
                    revisions[key] = read.kvs[0].mod_revision if read.kvs else 0
        return done

    clients = 16
    deadline_box[0] = time.perf_counter() + min(1.0, seconds / 4)
    await asyncio.gather(*(client(index) for index in range(clients)))  # warm-up
    started = time.perf_counter()
    deadline_box[0] = started + seconds
    done = sum(await asyncio.gather(*(client(index) for index in range(clients))))
    return done / (time.perf_counter() - started)


# -- backends, each run in a fresh process -----------------------------------------------


@contextlib.asynccontextmanager
async def opened(backend: str, etcd_url: str | None, workdir: str) -> AsyncIterator[Store]:
    url = etcd_url if backend == "etcd" and etcd_url else f"sqlite://{Path(workdir) / 'bench.db'}"
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.close()


async def _main_run(backend: str, etcd_url: str | None, workload: Workload) -> Run:
    with tempfile.TemporaryDirectory(prefix="astra-sched-bench-") as workdir:
        async with opened(backend, etcd_url, workdir) as store:
            await write_fleet(store, make_fleet(workload))
            apps = make_apps(workload)
            run = await schedule(store, workload, apps, ConflictMode.FINE)
            run.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            run.overcommitted, run.inconsistent, alloc_bytes, record_bytes = await verify(
                store, apps
            )
            run.ceiling = await batched_cas_ceiling(
                store, run, alloc_bytes, record_bytes, workload.ceiling_seconds
            )
            return run


async def _mode_run(
    backend: str, etcd_url: str | None, workload: Workload, mode: ConflictMode
) -> Run:
    with tempfile.TemporaryDirectory(prefix="astra-sched-bench-") as workdir:
        async with opened(backend, etcd_url, workdir) as store:
            await write_fleet(store, make_fleet(workload))
            apps = make_apps(workload)
            run = await schedule(store, workload, apps, mode)
            run.overcommitted, run.inconsistent, _, _ = await verify(store, apps)
            return run


def main_run(backend: str, etcd_url: str | None, workload: Workload) -> Run:
    return asyncio.run(_main_run(backend, etcd_url, workload))


def mode_run(backend: str, etcd_url: str | None, workload: Workload, mode: ConflictMode) -> Run:
    return asyncio.run(_mode_run(backend, etcd_url, workload, mode))


@contextlib.contextmanager
def backend_server(backend: str) -> Iterator[str | None]:
    """A fresh etcd for the etcd backend (so that runs never share a history)."""
    if backend != "etcd":
        yield None
        return
    with running(EtcdProcess()) as server:
        assert isinstance(server, EtcdProcess)
        yield server.url


def in_child(function: object, *args: object) -> Run:
    """Run ``function(*args)`` in a fresh process: its memory and CPU are its own."""
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        return pool.submit(function, *args).result()  # type: ignore[arg-type]


# -- the report --------------------------------------------------------------------------


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


MAIN_ROWS: tuple[tuple[str, str, object], ...] = (
    ("placements/s", ",.0f", lambda run: run.rate),
    ("conflicts per committed txn", ".3f", lambda run: run.conflicts_per_txn),
    ("placements per committed txn", ".1f", lambda run: run.placements_per_txn),
    ("nodes per committed txn", ".1f", lambda run: run.nodes_per_txn),
    ("app fully placed p50 (s)", ".2f", lambda run: _percentile(run.latencies, 0.5)),
    ("app fully placed p99 (s)", ".2f", lambda run: _percentile(run.latencies, 0.99)),
    ("replicas unplaceable / pending", "", lambda run: f"{run.unplaceable} / {run.pending}"),
    ("peak RSS of the process (MiB)", ",.0f", lambda run: run.peak_rss / 2**20),
    ("ceiling: batched CAS placements/s", ",.0f", lambda run: run.ceiling),
    ("our rate / ceiling", ".2f", lambda run: run.rate / max(run.ceiling, 1e-9)),
    ("over-committed nodes (verified)", "", lambda run: run.overcommitted),
    ("replicas inconsistent (verified)", "", lambda run: run.inconsistent),
    ("wall time of the run (s)", ".1f", lambda run: run.seconds),
)


def main_table(runs: dict[str, Run]) -> Iterator[str]:
    yield f"{'metric':<36}" + "".join(f"{name:>14}" for name in runs)
    for label, spec, value in MAIN_ROWS:
        cells = (format(value(run), spec) for run in runs.values())  # type: ignore[operator]
        yield f"{label:<36}" + "".join(f"{cell:>14}" for cell in cells)


def mode_table(runs: dict[tuple[str, ConflictMode], Run]) -> Iterator[str]:
    yield (
        f"{'mode':<16}{'backend':<10}{'placements/s':>14}{'conflicts/txn':>15}"
        f"{'handed back':>13}{'refits':>10}{'misfits':>9}{'over-commit':>13}"
    )
    for (backend, mode), run in runs.items():
        stats = run.stats
        yield (
            f"{mode.value:<16}{backend:<10}{run.rate:>14,.0f}{run.conflicts_per_txn:>15.3f}"
            f"{stats.handed_back:>13,}{stats.refits:>10,}{stats.misfits:>9,}{run.overcommitted:>13}"
        )


def targets(runs: dict[str, Run]) -> Iterator[str]:
    checks = []
    if "etcd" in runs:
        etcd = runs["etcd"]
        checks += [
            (">= 5,000 placements/s through etcd", etcd.rate >= 5000),
            (">= 50% of the etcd ceiling", etcd.rate >= 0.5 * etcd.ceiling),
            ("<= 0.1 conflicts per committed txn (etcd)", etcd.conflicts_per_txn <= 0.1),
        ]
    if "embedded" in runs:
        checks.append(
            (">= 20,000 placements/s on the embedded store", runs["embedded"].rate >= 20000)
        )
    checks.append(
        (
            "zero over-commit, zero inconsistency",
            all(not r.overcommitted and not r.inconsistent for r in runs.values()),
        )
    )
    for label, met in checks:
        yield f"  [{'met' if met else 'MISSED'}] {label}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a small fleet, for tests")
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=1_000_000)
    parser.add_argument("--apps", type=int, default=1_000)
    parser.add_argument("--schedulers", type=int, default=16)
    parser.add_argument(
        "--views",
        type=int,
        default=1,
        help="fleet views the schedulers share (App-service replicas)",
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: embedded,etcd"
    )
    parser.add_argument(
        "--compare-replicas",
        type=int,
        default=0,
        help="replicas of the conflict-mode comparison (default: a twentieth)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    backends = [name for name in args.backends.split(",") if name]
    if not backends or set(backends) - set(BACKENDS):
        parser.error(f"choose backends from {', '.join(BACKENDS)}")
    if args.tiny:
        args.nodes, args.replicas, args.apps = 200, 2_000, 20
    workload = Workload(
        nodes=args.nodes,
        replicas=args.replicas,
        apps=args.apps,
        schedulers=args.schedulers,
        views=min(args.views, args.schedulers),
        seed=args.seed,
        ceiling_seconds=0.3 if args.tiny else 5.0,
    )
    # Omega's setting: every scheduler with a private view of its own.
    compared = dataclasses.replace(
        workload.smaller(args.compare_replicas or max(workload.apps, workload.replicas // 20)),
        views=workload.schedulers,
    )
    print(
        f"scheduling benchmark: {workload.nodes:,} nodes, {workload.replicas:,} replicas in "
        f"{workload.apps:,} apps, {workload.schedulers} schedulers sharing {workload.views} views"
    )
    runs: dict[str, Run] = {}
    for backend in backends:
        with backend_server(backend) as etcd_url:
            runs[backend] = in_child(main_run, backend, etcd_url, workload)
        print(f"  {backend}: {runs[backend].rate:,.0f} placements/s", file=sys.stderr)
    print("\n".join(main_table(runs)))
    print("targets:")
    print("\n".join(targets(runs)))
    print(
        f"\nconflict detection (Omega): {compared.nodes:,} nodes, {compared.replicas:,} "
        f"replicas in {compared.apps:,} apps, {compared.schedulers} schedulers with a view each"
    )
    modes: dict[tuple[str, ConflictMode], Run] = {}
    for backend in backends:
        for mode in ConflictMode:
            with backend_server(backend) as etcd_url:
                modes[(backend, mode)] = in_child(mode_run, backend, etcd_url, compared, mode)
    print("\n".join(mode_table(modes)))


if __name__ == "__main__":
    main()
