"""A scheduler killed in the middle of its plans leaves no half-written placement."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from astra import keys
from astra.store import open_store
from astra.testing import EtcdProcess
from tests.scheduling.fleets import (
    assert_consistent,
    assert_history_safe,
    holdings,
    node_record,
    write_nodes,
)

ROOT = Path(__file__).resolve().parents[4]
NODES = [node_record(f"n{i:03d}", cpu=4000) for i in range(60)]


async def run_until_placed(url: str, count: int, *, timeout: float = 60.0) -> None:
    """Run the crashing scheduler until it has placed ``count`` replicas, then SIGKILL it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.scheduling.crashing_scheduler",
        url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = await process.stdout.readline()
                assert line, "the scheduler process ended by itself"
                if int(line) >= count:
                    return
    finally:
        process.kill()
        await process.wait()


@pytest.mark.parametrize("backend", ["etcd", "sqlite"])
@pytest.mark.parametrize("kill_after", [150, 700])
async def test_a_killed_scheduler_leaves_consistent_allocations(
    backend: str, kill_after: int, own_etcd: EtcdProcess, tmp_path: Path
) -> None:
    url = own_etcd.url if backend == "etcd" else f"sqlite://{tmp_path / 'state.db'}"
    async with await open_store(url) as store:
        await store.delete(keys.ROOT, prefix=True)
        since = await store.current_revision() + 1
        await write_nodes(store, NODES)
    await run_until_placed(url, kill_after)
    async with await open_store(url) as store:
        held = await holdings(store)
        assert_consistent(held)
        assert held.replicas, "the scheduler placed nothing before it was killed"
        await assert_history_safe(
            store, {node.node_id: node.capacity for node in NODES}, since=since
        )
