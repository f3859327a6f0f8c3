"""App-service replicas on a real etcd: they split the apps by lease, a SIGKILLed
replica's apps go to the others, and a replica killed in the middle of placing an app
never leaves a half-written allocation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.protobuf import field_mask_pb2

from astra import keys
from astra._gen.astra.v1 import app_pb2
from astra._gen.astra.v1 import app_service_pb2 as aps
from astra.store import Store, open_store
from astra.testing import EtcdProcess, running
from tests.node_agent.waiting import eventually
from tests.services.app.app_process import AppProcess
from tests.services.app.plane import Plane, invariants, plane, spec


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    """An etcd of this module's own, so that its keyspace holds only what its tests write."""
    with running(EtcdProcess()) as server:
        assert isinstance(server, EtcdProcess)
        yield server


@pytest.fixture
async def etcd_store(etcd: EtcdProcess) -> AsyncIterator[Store]:
    async with await open_store(etcd.url) as store:
        await store.delete(keys.ROOT, prefix=True)
        yield store


async def test_replicas_split_the_apps_and_a_dead_ones_apps_move(
    etcd: EtcdProcess, etcd_store: Store, tmp_path: Path
) -> None:
    async with plane(etcd_store) as control, control.fleet(4):
        local = control.app_service
        assert local is not None
        other = AppProcess(etcd.url, control.address, "app-other", tmp_path)
        await other.start()
        try:
            await eventually(lambda: len(local.ownership.replicas) == 2, what="two App replicas")
            app_ids = [f"app-{index:02d}" for index in range(16)]
            for app_id in app_ids:
                await control.create(
                    app_id, spec(replicas=1, cpu_millis=500, models=((app_id, "1"),))
                )
            for app_id in app_ids:
                await control.settled(app_id, placed=1)
            mine = local.host.owned()
            assert 0 < len(mine) < len(app_ids), f"one replica owns {sorted(mine)}"
            theirs = sorted(set(app_ids) - mine)

            await other.kill()
            await eventually(
                lambda: local.ownership.replicas == [local.replica_id],
                timeout=10,
                what="the killed replica's lease expired",
            )
            assert local.host.owned() == set(app_ids)
            for app_id in theirs:
                patch = app_pb2.App(name=f"apps/{app_id}", replicas=2)
                mask = field_mask_pb2.FieldMask(paths=["replicas"])
                await control.apps.UpdateApp(aps.UpdateAppRequest(app=patch, update_mask=mask))
            for app_id in theirs:
                app = await control.settled(app_id, placed=2)
                assert app.observed_generation == 2
            assert len(await invariants(etcd_store)) == len(app_ids) + len(theirs)
        finally:
            await other.kill()


async def test_a_replica_killed_mid_commit_leaves_no_half_written_allocation(
    etcd: EtcdProcess, etcd_store: Store, tmp_path: Path
) -> None:
    wanted = 1000  # about 25 transactions: the kill lands while they are being committed
    async with plane(etcd_store, app=False) as control, control.fleet(40):
        replica = AppProcess(etcd.url, control.address, "app-only", tmp_path)
        channel = control.use_apps_at(replica.address)
        try:
            placed_at_kill = []
            for cycle in range(2):
                committed = asyncio.create_task(_next_commit(etcd_store, timeout=60))
                await replica.start()
                if not cycle:
                    await eventually(_serving(control), timeout=30, what="the App replica serving")
                    app = spec(replicas=wanted, cpu_millis=250, memory_bytes=1 << 28)
                    await control.create("big", app)
                assert await committed, "the replica committed nothing"
                await replica.kill()
                placed_at_kill.append(len(await invariants(etcd_store)))
            assert 0 < placed_at_kill[0] < wanted, placed_at_kill
            await replica.start()
            await eventually(_serving(control), timeout=30, what="the App replica back")
            await control.settled("big", placed=wanted, timeout=60)
            assert len(await invariants(etcd_store)) == wanted
        finally:
            await replica.kill()
            await channel.close()


async def _next_commit(store: Store, *, timeout: float) -> bool:
    """Wait for the next write of an allocation; whether one came within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            async for _ in store.watch(keys.ALLOC):
                return True
    except TimeoutError:
        return False
    return False


def _serving(control: Plane):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        try:
            await control.apps.ListApps(aps.ListAppsRequest(), timeout=1)
        except Exception:
            return False
        return True

    return check
