"""What only the etcd backend has: endpoints and failover, etcd restarts under a
watch, etcd's own errors mapped onto the store's. The semantics every backend
shares are tested in test_conformance.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from astra.store import (
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    CompactedError,
    Compare,
    Delete,
    Event,
    EventType,
    LeaseNotFoundError,
    LimitError,
    Put,
    StoreError,
    TooManyOpsError,
    UnavailableError,
    ValueTooLargeError,
    open_store,
)
from astra.store._etcd import EtcdStore
from astra.testing import EtcdProcess, free_port, running


@pytest.fixture
async def store(etcd_server: EtcdProcess) -> AsyncIterator[EtcdStore]:
    async with await EtcdStore.connect([etcd_server.endpoint]) as opened:
        assert isinstance(opened, EtcdStore)
        yield opened


@pytest.fixture
def prefix() -> str:
    return f"/test-etcd/{uuid.uuid4().hex}/"


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0) -> None:
    """Wait until ``check()`` is true, tolerating an unavailable store meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except UnavailableError:
            pass
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_open_store_url_gives_an_etcd_store(etcd_server: EtcdProcess, prefix: str) -> None:
    async with await open_store(etcd_server.url) as store:
        assert isinstance(store, EtcdStore)
        put = await store.put(prefix + "k", b"v")
        assert (await store.get(prefix + "k")) is not None
        assert await store.current_revision() >= put.revision


async def test_connect_without_a_reachable_member_raises_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(UnavailableError):
        await EtcdStore.connect([f"127.0.0.1:{free_port()}"], connect_timeout=0.5)
    assert time.monotonic() - started < 5


async def test_calls_fail_over_to_the_next_endpoint(etcd_server: EtcdProcess, prefix: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with await EtcdStore.connect([dead, etcd_server.endpoint]) as store:
        put = await store.put(prefix + "k", b"v")
        result = await store.txn(
            [Compare.mod_revision(prefix + "k") == put.revision], [Put(prefix + "k", b"w")]
        )
        assert result.succeeded
        kv = await store.get(prefix + "k")
        assert kv is not None and kv.value == b"w"


async def test_a_write_moves_to_the_next_member_when_the_current_one_is_down(
    etcd_server: EtcdProcess, prefix: str
) -> None:
    # Two single-member clusters stand in for two members: the write must land in the second.
    with running(EtcdProcess()) as other:
        assert isinstance(other, EtcdProcess)
        async with (
            await EtcdStore.connect([etcd_server.endpoint, other.endpoint]) as store,
            await EtcdStore.connect([other.endpoint]) as other_store,
        ):
            await store.put(prefix + "before", b"1")
            etcd_server.stop()
            try:
                # Refused connections never reached etcd, so even a write is retried at once.
                await store.put(prefix + "during", b"2")
            finally:
                etcd_server.start()
            kv = await other_store.get(prefix + "during")
            assert kv is not None and kv.value == b"2"
            assert await other_store.get(prefix + "before") is None


async def test_calls_raise_unavailable_while_etcd_is_down_and_recover(
    etcd_server: EtcdProcess, store: EtcdStore, prefix: str
) -> None:
    await store.put(prefix + "k", b"1")
    etcd_server.stop()
    try:
        with pytest.raises(UnavailableError):
            await store.put(prefix + "k", b"2")
        with pytest.raises(UnavailableError):
            await store.get(prefix + "k")
    finally:
        etcd_server.start()

    async def readable() -> bool:
        kv = await store.get(prefix + "k")
        return kv is not None and kv.value == b"1"

    await eventually(readable)


async def test_watch_resumes_across_an_etcd_restart_without_loss_or_repeats(
    etcd_server: EtcdProcess, store: EtcdStore, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    start = await store.current_revision() + 1
    received: list[Event] = []

    async def collect() -> None:
        async for events in store.watch(prefix, start_revision=start):
            received.extend(events)

    async def received_count(count: int) -> bool:
        return len(received) >= count

    collector = asyncio.create_task(collect())
    try:
        for index in range(5):
            await store.put(f"{prefix}{index}", b"before")
        await eventually(lambda: received_count(5))
        etcd_server.stop(kill=True)
        etcd_server.start()
        await eventually(store.current_revision)  # writable again
        # Written while the watch is still reconnecting: must arrive exactly once.
        for index in range(5, 10):
            await store.put(f"{prefix}{index}", b"after")
        await store.delete(f"{prefix}0")
        await store.put(prefix + "end", b"")  # a repeat would arrive before this one
        await eventually(lambda: received_count(12))
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)

    assert any("resuming" in record.getMessage() for record in caplog.records)
    keys = [event.kv.key.removeprefix(prefix) for event in received]
    assert keys == [str(index) for index in range(10)] + ["0", "end"]
    revisions = [event.kv.mod_revision for event in received]
    assert revisions == sorted(set(revisions))
    deleted = received[10]
    assert deleted.type is EventType.DELETE
    assert deleted.prev is not None and deleted.prev.value == b"before"


async def test_watch_catching_up_splits_etcd_responses_by_revision(
    store: EtcdStore, prefix: str
) -> None:
    first = (await store.put(prefix + "a", b"1")).revision
    await store.put(prefix + "a", b"2")
    await store.txn([], [Put(prefix + "b", b"1"), Put(prefix + "c", b"1"), Delete(prefix + "a")])
    groups: list[list[Event]] = []
    async with asyncio.timeout(10):
        async for events in store.watch(prefix, start_revision=first):
            groups.append(events)
            if len(groups) == 3:
                break
    assert [[event.kv.key.removeprefix(prefix) for event in group] for group in groups] == [
        ["a"],
        ["a"],
        ["b", "c", "a"],
    ]
    assert [group[0].kv.mod_revision for group in groups] == [first, first + 1, first + 2]
    assert {event.kv.mod_revision for event in groups[2]} == {first + 2}
    assert groups[1][0].prev is not None and groups[1][0].prev.value == b"1"
    assert groups[2][2].type is EventType.DELETE and groups[2][2].prev is not None


async def test_compacted_revisions_report_etcds_compaction_point(
    store: EtcdStore, prefix: str
) -> None:
    old = (await store.put(prefix + "k", b"1")).revision
    point = (await store.put(prefix + "k", b"2")).revision
    await store.compact(point)
    with pytest.raises(CompactedError) as raised:
        await store.get(prefix + "k", revision=old)
    assert (raised.value.requested, raised.value.compact_revision) == (old, point)
    with pytest.raises(CompactedError) as raised:
        async with asyncio.timeout(10):
            async for _ in store.watch(prefix, start_revision=old):
                pass
    assert raised.value.compact_revision == point
    for again in (old, point):  # etcd refuses to compact at the point itself, too
        with pytest.raises(CompactedError) as raised:
            await store.compact(again)
        assert raised.value.compact_revision == point
    kv = await store.get(prefix + "k", revision=point)
    assert kv is not None and kv.value == b"2"


async def test_etcds_own_limits_map_to_limit_errors(store: EtcdStore, prefix: str) -> None:
    key = prefix + "big"
    # Within the shared size check, but over etcd's limit once framed as protobuf.
    with pytest.raises(ValueTooLargeError):
        await store.put(key, b"x" * (MAX_REQUEST_BYTES - len(key)))
    with pytest.raises(LimitError, match="twice"):
        await store.txn([], [Put(prefix + "dup", b"1"), Put(prefix + "dup", b"2")])
    # The shared check refuses this before etcd sees it; bypass it to see etcd's answer.
    too_many = [Put(f"{prefix}{index}", b"") for index in range(MAX_TXN_OPS + 1)]
    with pytest.raises(TooManyOpsError) as raised:
        await store._txn([], too_many, [])
    assert raised.value.count == MAX_TXN_OPS + 1
    assert (await store.range(prefix)).kvs == []


async def test_leases_keep_alive_expire_and_delete_their_keys(
    store: EtcdStore, prefix: str
) -> None:
    lease = await store.lease_grant(1)
    assert lease.ttl >= 1  # etcd raises short TTLs to its minimum
    assert await store.lease_keepalive(lease.id) == lease.ttl
    await store.put(prefix + "owned", b"1", lease=lease.id)
    kv = await store.get(prefix + "owned")
    assert kv is not None and kv.lease == lease.id

    async def expired() -> bool:
        return await store.get(prefix + "owned") is None

    await eventually(expired, timeout=lease.ttl + 10)
    with pytest.raises(LeaseNotFoundError):
        await store.lease_keepalive(lease.id)
    with pytest.raises(LeaseNotFoundError) as raised:
        await store.put(prefix + "orphan", b"1", lease=lease.id)
    assert raised.value.lease_id == lease.id
    await store.lease_revoke(lease.id)  # unknown ids are ignored


async def test_a_closed_store_refuses_calls(etcd_server: EtcdProcess) -> None:
    store = await EtcdStore.connect([etcd_server.endpoint])
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.current_revision()
