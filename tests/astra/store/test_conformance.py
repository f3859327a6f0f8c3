"""The store's semantics, the same on every backend: in memory, SQLite and a real etcd.

Every test runs once per backend (the ``backend`` fixture of conftest.py) and works
under its own key prefix. A behaviour that differs between backends is a bug.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from astra.store import (
    MAX_REQUEST_BYTES,
    MAX_TXN_OPS,
    CompactedError,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    EmptyKeyError,
    Event,
    EventType,
    Get,
    KeyValue,
    LeaseNotFoundError,
    LimitError,
    Put,
    PutResult,
    RangeResult,
    Store,
    StoreError,
    TooManyOpsError,
    ValueTooLargeError,
)
from tests.astra.store.conftest import Backend, eventually


async def collect(
    store: Store, prefix: str, start: int, count: int, *, timeout: float = 20.0
) -> list[list[Event]]:
    """The first batches of a watch, until they hold ``count`` events."""
    batches: list[list[Event]] = []
    async with asyncio.timeout(timeout):
        async for events in store.watch(prefix, start_revision=start):
            batches.append(events)
            if sum(map(len, batches)) >= count:
                return batches
    raise AssertionError("the watch ended")


def keys_of(events: list[Event], prefix: str) -> list[tuple[EventType, str]]:
    return [(event.type, event.kv.key.removeprefix(prefix)) for event in events]


# -- single keys ---------------------------------------------------------------------------


async def test_puts_make_revisions_and_count_versions(backend: Backend) -> None:
    store, key = backend.store, backend.prefix + "k"
    first = await store.put(key, b"1")
    assert first == PutResult(first.revision)
    assert await store.current_revision() == first.revision
    created = KeyValue(key, b"1", first.revision, first.revision, 1)
    assert await store.get(key) == created

    second = await store.put(key, b"2", prev_kv=True)
    assert second == PutResult(first.revision + 1, created)
    assert await store.get(key) == KeyValue(key, b"2", first.revision, second.revision, 2)
    assert (await store.put(key, b"3")).prev is None  # previous values only when asked


async def test_deleting_a_key_resets_it(backend: Backend) -> None:
    store, key = backend.store, backend.prefix + "k"
    put = await store.put(key, b"1")
    deleted = await store.delete(key)
    assert deleted == DeleteResult(
        put.revision + 1, 1, [KeyValue(key, b"1", put.revision, put.revision, 1)]
    )
    assert await store.get(key) is None

    nothing = await store.delete(key)
    assert nothing == DeleteResult(deleted.revision, 0, [])  # no change, no new revision
    assert await store.current_revision() == deleted.revision

    again = await store.put(key, b"2")
    assert await store.get(key) == KeyValue(key, b"2", again.revision, again.revision, 1)


async def test_an_absent_key_reads_as_none(backend: Backend) -> None:
    assert await backend.store.get(backend.prefix + "absent") is None
    assert (await backend.store.range(backend.prefix)).kvs == []


# -- ranges --------------------------------------------------------------------------------


async def test_range_reads_a_prefix_in_key_order_with_a_limit(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    for name in ("a/2", "a/10", "a/1", "a", "b/1"):
        await store.put(p + name, name.encode())
    last = await store.current_revision()

    result = await store.range(p + "a/")
    assert [kv.key.removeprefix(p) for kv in result.kvs] == ["a/1", "a/10", "a/2"]
    assert (result.revision, result.more) == (last, False)
    assert all(kv.value == kv.key.removeprefix(p).encode() for kv in result.kvs)

    limited = await store.range(p + "a/", limit=2)
    assert [kv.key.removeprefix(p) for kv in limited.kvs] == ["a/1", "a/10"]
    assert limited.more
    exact = await store.range(p + "a/", limit=3)
    assert len(exact.kvs) == 3 and not exact.more

    inside = await store.txn([], [Get(p + "a/", prefix=True, limit=1), Get(p + "a")])
    listed, single = inside.results
    assert isinstance(listed, RangeResult) and isinstance(single, RangeResult)
    assert [kv.key for kv in listed.kvs] == [p + "a/1"] and listed.more
    assert [kv.key for kv in single.kvs] == [p + "a"] and not single.more


async def test_reads_at_an_older_revision_see_the_past(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    a1 = (await store.put(p + "a", b"1")).revision
    b1 = (await store.put(p + "b", b"1")).revision
    a2 = (await store.put(p + "a", b"2")).revision
    b_gone = (await store.delete(p + "b")).revision
    c1 = (await store.put(p + "c", b"1")).revision

    def values(result: RangeResult) -> dict[str, bytes]:
        return {kv.key.removeprefix(p): kv.value for kv in result.kvs}

    assert values(await store.range(p, revision=a1)) == {"a": b"1"}
    assert values(await store.range(p, revision=b1)) == {"a": b"1", "b": b"1"}
    assert values(await store.range(p, revision=a2)) == {"a": b"2", "b": b"1"}
    assert values(await store.range(p, revision=b_gone)) == {"a": b"2"}
    assert values(await store.range(p)) == {"a": b"2", "c": b"1"}
    assert (await store.range(p, revision=a2)).revision == a2

    old_a = await store.get(p + "a", revision=b1)
    assert old_a == KeyValue(p + "a", b"1", a1, a1, 1)
    assert await store.get(p + "b", revision=b_gone) is None
    assert await store.get(p + "c", revision=b_gone) is None
    assert await store.get(p + "c", revision=c1) is not None

    limited = await store.range(p, limit=1, revision=a2)
    assert [kv.key for kv in limited.kvs] == [p + "a"] and limited.more


async def test_delete_by_prefix_returns_every_previous_value(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    for name in ("x/1", "x/2", "y"):
        await store.put(p + name, b"v")
    deleted = await store.delete(p + "x/", prefix=True)
    assert deleted.deleted == 2
    assert [kv.key for kv in deleted.prev] == [p + "x/1", p + "x/2"]
    assert [kv.key for kv in (await store.range(p)).kvs] == [p + "y"]


# -- transactions --------------------------------------------------------------------------


async def test_a_transaction_applies_its_ops_in_order_at_one_revision(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    before = await store.put(p + "old", b"0")
    result = await store.txn(
        [Compare.version(p + "x") == 0],
        [Put(p + "x", b"1"), Put(p + "y", b"1"), Delete(p + "old"), Get(p, prefix=True)],
    )
    assert result.succeeded
    revision = before.revision + 1
    assert result.revision == revision
    put_x, put_y, delete_old, read = result.results
    assert put_x == PutResult(revision) and put_y == PutResult(revision)
    assert delete_old == DeleteResult(
        revision, 1, [KeyValue(p + "old", b"0", before.revision, before.revision, 1)]
    )
    assert isinstance(read, RangeResult)
    assert [kv.key for kv in read.kvs] == [p + "x", p + "y"]  # a read sees the writes before it
    assert {kv.mod_revision for kv in (await store.range(p)).kvs} == {revision}
    assert await store.current_revision() == revision


async def test_racing_compare_and_swap_increments_lose_no_update(backend: Backend) -> None:
    store, key = backend.store, backend.prefix + "counter"
    await store.put(key, b"0")
    attempts, successes = 16 * 12, 0

    async def increment_repeatedly() -> None:
        nonlocal successes
        for _ in range(attempts // 16):
            kv = await store.get(key)
            assert kv is not None
            await asyncio.sleep(0)  # let the others read the same revision
            swap = [Compare.mod_revision(key) == kv.mod_revision]
            result = await store.txn(swap, [Put(key, str(int(kv.value) + 1).encode())])
            successes += result.succeeded

    await asyncio.gather(*(increment_repeatedly() for _ in range(16)))
    final = await store.get(key)
    assert final is not None
    assert int(final.value) == successes
    assert final.version == successes + 1
    assert 0 < successes < attempts  # they did race, and every reported success counted


async def test_a_failed_compare_changes_nothing_and_reads_fresh_values(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    a = await store.put(p + "a", b"1")
    b = await store.put(p + "b", b"1")
    moved = await store.put(p + "b", b"2")
    result = await store.txn(
        [Compare.mod_revision(p + "a") == a.revision, Compare.mod_revision(p + "b") == b.revision],
        [Put(p + "a", b"x"), Put(p + "b", b"x"), Put(p + "c", b"x")],
        [Get(p + "a"), Get(p + "b")],
    )
    assert not result.succeeded
    assert result.revision == moved.revision == await store.current_revision()
    fresh_a, fresh_b = result.results
    assert isinstance(fresh_a, RangeResult) and isinstance(fresh_b, RangeResult)
    assert [kv.value for kv in fresh_a.kvs] == [b"1"]
    assert [(kv.value, kv.mod_revision) for kv in fresh_b.kvs] == [(b"2", moved.revision)]
    assert {kv.key.removeprefix(p): kv.value for kv in (await store.range(p)).kvs} == {
        "a": b"1",
        "b": b"2",
    }


_EXPECTED = {  # the operator's truth for an operand below, equal to and above the actual value
    CompareOp.EQUAL: (False, True, False),
    CompareOp.NOT_EQUAL: (True, False, True),
    CompareOp.LESS: (False, False, True),
    CompareOp.GREATER: (True, False, False),
}


async def test_compares_on_every_target_with_every_operator(backend: Backend) -> None:
    store, key = backend.store, backend.prefix + "k"
    created = await store.put(key, b"m")
    modified = await store.put(key, b"m")
    actual: dict[CompareTarget, tuple[int | bytes, ...]] = {
        CompareTarget.MOD: (modified.revision - 1, modified.revision, modified.revision + 1),
        CompareTarget.CREATE: (created.revision - 1, created.revision, created.revision + 1),
        CompareTarget.VERSION: (1, 2, 3),
        CompareTarget.VALUE: (b"l", b"m", b"n"),
    }
    outcomes = {}
    for (target, operands), (op, expected) in itertools.product(actual.items(), _EXPECTED.items()):
        for operand, holds in zip(operands, expected, strict=True):
            result = await store.txn([Compare(key, target, op, operand)], [], [])
            outcomes[target.name, op.name, operand] = (result.succeeded, holds)
    assert {case: got for case, (got, _) in outcomes.items()} == {
        case: want for case, (_, want) in outcomes.items()
    }

    absent = backend.prefix + "absent"
    for compare, holds in [
        (Compare.version(absent) == 0, True),
        (Compare.create_revision(absent) == 0, True),
        (Compare.mod_revision(absent) < 1, True),
        (Compare.value(absent) == b"", False),  # a value compare on an absent key always fails
        (Compare.value(absent) != b"x", False),
    ]:
        assert (await store.txn([compare], [], [])).succeeded is holds, compare
    assert await store.current_revision() == modified.revision


# -- watch ---------------------------------------------------------------------------------


async def test_a_watch_delivers_whole_revisions_in_order_with_previous_values(
    backend: Backend,
) -> None:
    store, p = backend.store, backend.prefix
    start = await store.current_revision() + 1
    watching = asyncio.create_task(collect(store, p + "in/", start, 5))
    a = await store.put(p + "in/a", b"1")
    await store.put(p + "out", b"ignored")
    both = await store.txn([], [Put(p + "in/b", b"1"), Put(p + "in/c", b"1"), Delete(p + "in/a")])
    gone = await store.delete(p + "in/b")
    batches = await watching

    events = [event for batch in batches for event in batch]
    assert keys_of(events, p + "in/") == [
        (EventType.PUT, "a"),
        (EventType.PUT, "b"),
        (EventType.PUT, "c"),
        (EventType.DELETE, "a"),
        (EventType.DELETE, "b"),
    ]
    assert [event.kv.mod_revision for event in events] == [a.revision] + [both.revision] * 3 + [
        gone.revision
    ]
    for revision in {event.kv.mod_revision for event in events}:  # never split across batches
        assert (
            sum(any(event.kv.mod_revision == revision for event in batch) for batch in batches) == 1
        )
    deleted = events[3]
    assert (deleted.kv.key, deleted.kv.value, deleted.kv.mod_revision) == (
        p + "in/a",
        b"",
        both.revision,
    )
    assert deleted.prev == KeyValue(p + "in/a", b"1", a.revision, a.revision, 1)
    assert events[0].prev is None


async def test_a_watch_from_an_old_revision_replays_then_follows(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    first = await store.put(p + "k", b"1")
    await store.put(p + "k", b"2")
    watching = asyncio.create_task(collect(store, p, first.revision, 3))
    await store.put(p + "k", b"3")
    events = [event for batch in await watching for event in batch]
    assert [event.kv.value for event in events] == [b"1", b"2", b"3"]
    assert [event.kv.version for event in events] == [1, 2, 3]
    assert [event.prev.value if event.prev else None for event in events] == [None, b"1", b"2"]


async def _create_once(store: Store, key: str, value: bytes) -> None:
    """Create ``key``, retrying while the store is unavailable: a retry cannot write twice."""

    async def created() -> bool:
        await store.txn([Compare.version(key) == 0], [Put(key, value)])
        return True

    await eventually(created)


async def _delete_once(store: Store, key: str) -> None:
    async def deleted() -> bool:
        await store.delete(key)
        return True

    await eventually(deleted)


async def test_a_watch_resumes_across_a_restart_without_loss_or_repeats(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    received: list[Event] = []

    async def follow(watched: Store, start: int) -> None:
        async for events in watched.watch(p, start_revision=start):
            received.extend(events)

    watcher = asyncio.create_task(follow(store, await store.current_revision() + 1))
    try:
        for index in range(5):
            await _create_once(store, f"{p}{index}", b"before")
        await eventually(lambda: len(received) >= 5)

        restarted = await backend.restart()
        if restarted is not store:
            # A closed store ends its watches; go on from the last revision seen.
            with pytest.raises(StoreError, match="closed"):
                await asyncio.wait_for(watcher, 10)
            watcher = asyncio.create_task(follow(restarted, received[-1].kv.mod_revision + 1))
        # Written while the watch may still be reconnecting: each must arrive exactly once.
        for index in range(5, 10):
            await _create_once(restarted, f"{p}{index}", b"after")
        await _delete_once(restarted, f"{p}0")
        await _create_once(restarted, p + "end", b"")  # a repeat would arrive before this
        await eventually(lambda: len(received) >= 12)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    assert keys_of(received, p) == [(EventType.PUT, str(index)) for index in range(10)] + [
        (EventType.DELETE, "0"),
        (EventType.PUT, "end"),
    ]
    revisions = [event.kv.mod_revision for event in received]
    assert revisions == sorted(set(revisions))
    assert received[10].prev is not None and received[10].prev.value == b"before"


# -- leases --------------------------------------------------------------------------------


async def test_an_expired_lease_deletes_its_keys_in_one_revision(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    lease = await store.lease_grant(1)
    assert lease.ttl >= 1  # etcd raises short TTLs to its minimum, and so does the embedded store
    await store.put(p + "a", b"1", lease=lease.id)
    await store.put(p + "b", b"1", lease=lease.id)
    await store.put(p + "free", b"1")
    kv = await store.get(p + "a")
    assert kv is not None and kv.lease == lease.id
    watching = asyncio.create_task(
        collect(store, p, await store.current_revision() + 1, 2, timeout=lease.ttl + 20)
    )

    batches = await watching
    assert [sorted(keys_of(batch, p)) for batch in batches] == [
        [(EventType.DELETE, "a"), (EventType.DELETE, "b")]
    ]
    assert [kv.key for kv in (await store.range(p)).kvs] == [p + "free"]
    with pytest.raises(LeaseNotFoundError):
        await store.lease_keepalive(lease.id)
    with pytest.raises(LeaseNotFoundError) as raised:
        await store.put(p + "orphan", b"1", lease=lease.id)
    assert raised.value.lease_id == lease.id
    assert await store.get(p + "orphan") is None


async def test_keepalive_extends_a_lease_and_revoke_ends_it_at_once(backend: Backend) -> None:
    store, key = backend.store, backend.prefix + "owned"
    lease = await store.lease_grant(1)
    await store.put(key, b"1", lease=lease.id)
    loop = asyncio.get_running_loop()
    until = loop.time() + lease.ttl + 1.5  # well past the TTL
    while loop.time() < until:
        assert await store.lease_keepalive(lease.id) == lease.ttl
        assert await store.get(key) is not None
        await asyncio.sleep(0.3)
    await store.lease_revoke(lease.id)
    assert await store.get(key) is None
    with pytest.raises(LeaseNotFoundError):
        await store.lease_keepalive(lease.id)
    await store.lease_revoke(lease.id)  # unknown ids are ignored


async def test_a_put_with_an_unknown_lease_fails_the_whole_transaction(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    lease = await store.lease_grant(30)
    await store.lease_revoke(lease.id)
    before = await store.current_revision()
    with pytest.raises(LeaseNotFoundError):
        await store.txn([], [Put(p + "a", b"1"), Put(p + "b", b"1", lease=lease.id)])
    assert (await store.range(p)).kvs == []
    assert await store.current_revision() == before


# -- compaction ----------------------------------------------------------------------------


async def test_compacted_revisions_cannot_be_read_or_watched(backend: Backend) -> None:
    store, key = backend.store, backend.prefix + "k"
    old = (await store.put(key, b"1")).revision
    point = (await store.put(key, b"2")).revision
    await store.put(key, b"3")
    await store.compact(point)

    with pytest.raises(CompactedError) as raised:
        await store.get(key, revision=old)
    assert (raised.value.requested, raised.value.compact_revision) == (old, point)
    with pytest.raises(CompactedError):
        await store.range(backend.prefix, revision=old)
    with pytest.raises(CompactedError) as raised:
        await collect(store, backend.prefix, old, 1)
    assert raised.value.compact_revision == point
    with pytest.raises(CompactedError):
        await store.compact(point)

    kv = await store.get(key, revision=point)
    assert kv is not None and kv.value == b"2"
    events = [event for batch in await collect(store, backend.prefix, point, 2) for event in batch]
    assert [event.kv.value for event in events] == [b"2", b"3"]


# -- limits --------------------------------------------------------------------------------


async def test_a_branch_over_128_operations_is_refused(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    puts = [Put(f"{p}{index}", b"") for index in range(MAX_TXN_OPS + 1)]
    for compares, success, failure in [
        ([], puts, []),
        ([], [], puts),
        ([Compare.version(op.key) == 0 for op in puts], [], []),
    ]:
        with pytest.raises(TooManyOpsError, match="128") as raised:
            await store.txn(compares, success, failure)
        assert (raised.value.count, raised.value.limit) == (129, 128)
    assert (await store.range(p)).kvs == []
    assert (await store.txn([], puts[:MAX_TXN_OPS])).succeeded
    assert len((await store.range(p)).kvs) == MAX_TXN_OPS


async def test_a_request_over_1_5_mib_is_refused(backend: Backend) -> None:
    store, key = backend.store, backend.prefix + "big"
    with pytest.raises(ValueTooLargeError, match=str(MAX_REQUEST_BYTES)):
        await store.put(key, bytes(MAX_REQUEST_BYTES + 1))
    with pytest.raises(ValueTooLargeError):
        await store.txn(
            [], [Put(f"{key}{index}", bytes(MAX_REQUEST_BYTES // 2)) for index in range(3)]
        )
    assert await store.get(key) is None
    await store.put(key, bytes(1 << 20))  # a mebibyte is fine
    kv = await store.get(key)
    assert kv is not None and len(kv.value) == 1 << 20


async def test_empty_keys_are_refused(backend: Backend) -> None:
    store = backend.store
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get(""),
        lambda: store.range(""),
        lambda: store.put("", b"v"),
        lambda: store.delete(""),
        lambda: store.txn([Compare.version("") == 0], []),
        lambda: store.txn([], [Get("")]),
        lambda: collect(store, "", 0, 1),
    ]
    for call in calls:
        with pytest.raises(EmptyKeyError, match="empty"):
            await call()


async def test_a_branch_writing_a_key_twice_is_refused(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    for ops in [
        [Put(p + "k", b"1"), Put(p + "k", b"2")],
        [Delete(p, prefix=True), Put(p + "k", b"1")],
        [Put(p + "k", b"1"), Delete(p + "k")],
    ]:
        with pytest.raises(LimitError, match="twice"):
            await store.txn([], ops)
        with pytest.raises(LimitError, match="twice"):
            await store.txn([Compare.version(p + "k") == 0], [], ops)  # checked in both branches
    assert await store.get(p + "k") is None
    overlapping = await store.txn([], [Delete(p, prefix=True), Delete(p + "k"), Get(p + "k")])
    assert overlapping.succeeded
