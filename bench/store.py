"""Store benchmark: the embedded backend (SQLite file) against a real etcd.

    python bench/store.py [--tiny] [--backends embedded,etcd]

One run starts its own etcd (and a SQLite file in a temp dir) and measures, with
16 concurrent clients sharing one store object:

- puts/s: each client writes its own keys in turn;
- batched compare-and-swap: each transaction compares the ``mod_revision`` of every
  key of its batch and writes them all, with reads of those keys in the failure
  branch (the schedulers' commit); batches of 1, 16 and 64 keys, reported as
  transactions/s and key updates/s. Clients own disjoint keys, so every
  transaction should succeed; only successful ones count.

The process's garbage collector is set as a service's once it serves, from when the
stores are open (``astra._memory.gc_for_serving``).
Each cell warms up, then runs three timed rounds; the table shows the median rate
and the embedded/etcd ratio. The backends take turns, round by round, so that both see
the same load on a shared machine (the ratio is the number that counts). ``--tiny`` runs each cell for a fraction of a second
(for tests: numbers are then only a smoke signal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from astra import gc_for_serving
from astra.store import Compare, Get, Put, RangeResult, Store, open_store
from astra.testing import EtcdProcess, running

CLIENTS = 16
BATCHES = (1, 16, 64)
VALUE = b"v" * 128
BACKENDS = ("embedded", "etcd")

#: One client's call: does some work, returns how many units of it succeeded.
Work = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Timing:
    warmup: float
    round_seconds: float
    rounds: int = 3


FULL = Timing(warmup=0.5, round_seconds=1.0)
TINY = Timing(warmup=0.05, round_seconds=0.1)


async def _rate(clients: list[Work], seconds: float) -> float:
    """Units of work per second done by ``clients`` running concurrently for ``seconds``."""
    deadline = time.perf_counter() + seconds

    async def loop(work: Work) -> int:
        done = 0
        while time.perf_counter() < deadline:
            done += await work()
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(loop(work) for work in clients))
    return sum(counts) / (time.perf_counter() - started)


async def measure(clients: dict[str, list[Work]], timing: Timing) -> dict[str, float]:
    """The median rate of each backend's clients over ``timing.rounds`` rounds, after a
    warm-up; the backends run one after the other within each round."""
    for work in clients.values():
        await _rate(work, timing.warmup)
    rates: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(timing.rounds):
        for name, work in clients.items():
            rates[name].append(await _rate(work, timing.round_seconds))
    return {name: statistics.median(values) for name, values in rates.items()}


def _put_client(store: Store, prefix: str) -> Work:
    keys = [f"{prefix}{index}" for index in range(256)]
    position = 0

    async def put() -> int:
        nonlocal position
        position = (position + 1) % len(keys)
        await store.put(keys[position], VALUE)
        return 1

    return put


def _cas_client(store: Store, prefix: str, batch: int) -> Work:
    keys = [f"{prefix}{index:04d}" for index in range(max(4 * batch, 64))]
    revisions = dict.fromkeys(keys, 0)  # 0: absent, which is where every key starts
    position = 0

    async def commit() -> int:
        nonlocal position
        chosen = keys[position : position + batch]
        position = (position + batch) % len(keys)
        result = await store.txn(
            [Compare.mod_revision(key) == revisions[key] for key in chosen],
            [Put(key, VALUE) for key in chosen],
            [Get(key) for key in chosen],
        )
        if result.succeeded:
            revisions.update(dict.fromkeys(chosen, result.revision))
            return 1
        for key, fresh in zip(chosen, result.results, strict=True):
            assert isinstance(fresh, RangeResult)
            revisions[key] = fresh.kvs[0].mod_revision if fresh.kvs else 0
        return 0

    return commit


async def bench(stores: dict[str, Store], timing: Timing) -> dict[str, dict[str, float]]:
    """Every row of the table, for every backend."""
    run = f"/bench/{time.time_ns()}/"
    rows: dict[str, dict[str, float]] = {name: {} for name in stores}

    def record(metric: str, rates: dict[str, float], scale: int = 1) -> None:
        for name, rate in rates.items():
            rows[name][metric] = rate * scale

    puts = {
        name: [_put_client(store, f"{run}put/{client}/") for client in range(CLIENTS)]
        for name, store in stores.items()
    }
    record(f"put/s ({CLIENTS} clients)", await measure(puts, timing))
    for batch in BATCHES:
        clients = {
            name: [
                _cas_client(store, f"{run}cas{batch}/{client}/", batch) for client in range(CLIENTS)
            ]
            for name, store in stores.items()
        }
        txns = await measure(clients, timing)
        record(f"CAS batch {batch}: txn/s", txns)
        record(f"CAS batch {batch}: key updates/s", txns, batch)
    return rows


@contextlib.asynccontextmanager
async def open_backend(name: str, etcd: EtcdProcess | None, workdir: Path) -> AsyncIterator[Store]:
    url = etcd.url if name == "etcd" and etcd is not None else f"sqlite:///{workdir / 'bench.db'}"
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.close()


def format_table(results: dict[str, dict[str, float]]) -> Iterator[str]:
    """Rows of the metric, one column per backend, and embedded/etcd when both ran."""
    names = list(results)
    ratio = all(name in results for name in BACKENDS)
    header = f"{'metric':<28}" + "".join(f"{name:>14}" for name in names)
    yield header + (f"{'embedded/etcd':>15}" if ratio else "")
    for metric in next(iter(results.values())):
        line = f"{metric:<28}" + "".join(f"{results[name][metric]:>14,.0f}" for name in names)
        if ratio:
            line += f"{results['embedded'][metric] / results['etcd'][metric]:>14.2f}x"
        yield line


async def run(backends: list[str], timing: Timing) -> dict[str, dict[str, float]]:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="astra-bench-")))
        etcd = stack.enter_context(running(EtcdProcess())) if "etcd" in backends else None
        assert etcd is None or isinstance(etcd, EtcdProcess)
        async with contextlib.AsyncExitStack() as opened:
            stores = {
                name: await opened.enter_async_context(open_backend(name, etcd, workdir))
                for name in backends
            }
            with gc_for_serving():  # started, as a service once it serves
                return await bench(stores, timing)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="run each cell for a fraction of a second"
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: embedded,etcd"
    )
    args = parser.parse_args(argv)
    backends = [name for name in args.backends.split(",") if name]
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    timing = TINY if args.tiny else FULL
    print(
        f"store benchmark: {CLIENTS} concurrent clients, {len(VALUE)}-byte values, "
        f"median of {timing.rounds} x {timing.round_seconds:g} s after {timing.warmup:g} s warm-up"
    )
    results = asyncio.run(run(backends, timing))
    print("\n".join(format_table(results)))


if __name__ == "__main__":
    main()
