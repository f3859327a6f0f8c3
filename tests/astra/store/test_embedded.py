"""What only the embedded store has: its file, crash safety, bounded history, its lifecycle.

The semantics it shares with etcd are tested in test_conformance.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest

from astra.store import (
    CompactedError,
    Delete,
    Event,
    EventType,
    KeyValue,
    Put,
    Store,
    StoreError,
    UnavailableError,
    _sqlite,
    open_store,
)
from astra.store._embedded import MIN_LEASE_TTL, EmbeddedStore
from tests.astra.store.conftest import eventually

_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


async def history_of(store: Store, prefix: str) -> list[Event]:
    """Every retained event under ``prefix``, from the compaction point to now."""
    last = await store.current_revision()
    start = 1
    while True:
        try:
            events: list[Event] = []
            if start > last:
                return events
            async with asyncio.timeout(10):
                async for batch in store.watch(prefix, start_revision=start):
                    events.extend(batch)
                    if batch[-1].kv.mod_revision >= last:
                        return events
        except CompactedError as exc:
            start = exc.compact_revision


def persisted(path: str) -> list[tuple[int, str]]:
    """(revision, key) of every record in the file, read with SQLite itself."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT revision, records FROM log ORDER BY revision").fetchall()
    return [(revision, record[0]) for revision, blob in rows for record in msgpack.unpackb(blob)]


async def test_a_new_store_is_at_revision_1_and_its_first_write_makes_2(path: str) -> None:
    for location in (None, path):
        async with await EmbeddedStore.open(location) as store:
            assert await store.current_revision() == 1
            assert (await store.put("/k", b"v")).revision == 2


async def test_open_store_urls_open_embedded_stores(tmp_path: Path) -> None:
    nested = tmp_path / "new" / "dir" / "state.db"
    for url in ("memory://", f"sqlite://{nested}"):
        async with await open_store(url) as store:
            assert isinstance(store, EmbeddedStore)
            await store.put("/k", b"v")
    assert nested.exists()


async def test_state_history_and_leases_survive_a_reopen(path: str) -> None:
    store = await EmbeddedStore.open(path)
    try:
        lease = await store.lease_grant(60)
        first = await store.put("/p/a", b"1")
        await store.put("/p/leased", b"1", lease=lease.id)
        await store.txn([], [Put("/p/a", b"2"), Put("/p/b", b"1")])
        await store.delete("/p/b")
        point = (await store.put("/p/c", b"1")).revision
        await store.put("/p/a", b"3")
        await store.compact(point)
        before = (
            await store.current_revision(),
            (await store.range("/p/")).kvs,
            await history_of(store, "/p/"),
        )
        at_point = await store.range("/p/", revision=point)
    finally:
        await store.close()

    async with await EmbeddedStore.open(path) as reopened:
        assert (await reopened.current_revision(), (await reopened.range("/p/")).kvs) == before[:2]
        assert await history_of(reopened, "/p/") == before[2]  # with the same previous values
        assert await reopened.range("/p/", revision=point) == at_point
        with pytest.raises(CompactedError):
            await reopened.get("/p/a", revision=first.revision)
        assert await reopened.lease_keepalive(lease.id) == 60
        await reopened.lease_revoke(lease.id)
        assert await reopened.get("/p/leased") is None
        assert (await reopened.put("/p/d", b"1")).revision == before[0] + 2


async def test_a_lease_restarts_its_ttl_when_the_store_reopens(path: str) -> None:
    async with await EmbeddedStore.open(path) as store:
        lease = await store.lease_grant(MIN_LEASE_TTL)
        await store.put("/owned", b"1", lease=lease.id)
    await asyncio.sleep(MIN_LEASE_TTL + 0.5)  # time passes while no store is running

    async with await EmbeddedStore.open(path) as reopened:
        loop = asyncio.get_running_loop()
        opened_at = loop.time()
        assert await reopened.get("/owned") is not None

        async def expired() -> bool:
            return await reopened.get("/owned") is None

        await eventually(expired, timeout=MIN_LEASE_TTL + 5)
        assert loop.time() - opened_at >= MIN_LEASE_TTL - 0.1


async def test_acknowledged_writes_survive_sigkill_mid_write(path: str) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_crash_writer.py")),
        path,
        "40",  # a short history, so that compactions happen too
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(_ROOT)},
    )
    assert writer.stdout is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            lease_id = int((await writer.stdout.readline()).split()[1])
            while len(lines) < 300:
                lines.append(await writer.stdout.readline())
                assert lines[-1], "the writer stopped"
    finally:
        writer.send_signal(signal.SIGKILL)
        # Printed before the kill: acknowledged too. A line the kill cut short (after the
        # last newline) cannot be read; its write counts as the one that may be in the
        # store or not, as the revision check below allows.
        lines += (await writer.stdout.read()).split(b"\n")[:-1]
        await writer.wait()
    assert writer.returncode == -signal.SIGKILL
    acknowledged = [tuple(map(int, line.split())) for line in lines]
    assert [index for index, _ in acknowledged] == list(range(len(acknowledged)))
    last_revision = acknowledged[-1][1]

    async with await EmbeddedStore.open(path, history=40) as store:
        current = await store.current_revision()
        assert current in (
            last_revision,
            last_revision + 1,
        )  # the write killed midway: all or nothing
        for index, revision in acknowledged:
            kv = await store.get(f"/crash/k/{index}")
            assert kv is not None and (kv.mod_revision, kv.version, kv.lease) == (
                revision,
                1,
                lease_id,
            )
        written = (await store.range("/crash/k/")).kvs
        assert len(written) == current - 1  # one key per revision, none lost, none extra
        assert [kv.key for kv in (await store.range("/crash/tmp/")).kvs] == [
            f"/crash/tmp/{current - 2}"
        ]

        # Every retained revision holds exactly one whole write, in order.
        events = await history_of(store, "/crash/")
        revisions = sorted({event.kv.mod_revision for event in events})
        assert revisions == list(range(revisions[0], current + 1))
        for revision in revisions:
            index = revision - 2
            expected = [
                (EventType.PUT, f"/crash/k/{index}"),
                (EventType.PUT, f"/crash/tmp/{index}"),
            ]
            if index:
                expected.append((EventType.DELETE, f"/crash/tmp/{index - 1}"))
            assert [(e.type, e.kv.key) for e in events if e.kv.mod_revision == revision] == expected
        assert await store.lease_keepalive(lease_id) == 3600
        assert (await store.put("/crash/after", b"")).revision == current + 1


async def test_automatic_compaction_keeps_history_and_file_bounded(path: str) -> None:
    history = 100
    async with await EmbeddedStore.open(path, history=history) as store:
        for index in range(2000):
            await store.txn([], [Put(f"/k/{index % 10}", b"v"), Delete(f"/gone/{index}")])
            await store.put(f"/gone/{index + 1}", b"v")
        current = await store.current_revision()
        with pytest.raises(CompactedError) as raised:
            await store.get("/k/0", revision=current - history - 64)
        compacted = raised.value.compact_revision
        assert current - history - 64 < compacted <= current - history + 1
        assert len(store._keyspace.history) <= history + 64
        assert await store.get("/k/0", revision=current - history + 1) is not None

    records = persisted(path)
    assert len(records) <= 11 + 2 * (history + 64)  # the live keys and the retained revisions'
    assert len({revision for revision, _ in records}) <= 10 + history + 64  # one row each
    async with await EmbeddedStore.open(path, history=history) as reopened:
        with pytest.raises(CompactedError) as raised:
            await reopened.get("/k/0", revision=compacted - 1)
        assert raised.value.compact_revision == compacted
        assert len((await reopened.range("/k/")).kvs) == 10


async def test_compaction_frees_the_rows_of_wide_revisions(path: str) -> None:
    history, width = 10, 64
    async with await EmbeddedStore.open(path, history=history) as store:
        for round_ in range(40):  # each revision rewrites every key of the one before it
            await store.txn([], [Put(f"/wide/{key:02d}", b"%d" % round_) for key in range(width)])
        await store.txn([], [Put(f"/many/{key:03d}", b"v") for key in range(100)])
        for start in range(100, 600, 100):
            await store.txn(
                [], [Put(f"/many/{key:03d}", b"v") for key in range(start, start + 100)]
            )
        await store.delete("/many/", prefix=True)  # one revision of 600 deletions
        for round_ in range(40, 120):
            await store.txn([], [Put(f"/wide/{key:02d}", b"%d" % round_) for key in range(width)])
        current = await store.current_revision()
        assert store._keyspace.first > current - history - 64  # compacted past the deletions

    records = persisted(path)
    retained = current - history - 64
    assert {key for revision, key in records if revision < retained} <= {
        f"/wide/{key:02d}" for key in range(width)
    }  # nothing of /many/ is left, nor any old version of a /wide/ key
    assert len(records) <= width * (history + 64 + 1)
    async with await EmbeddedStore.open(path, history=history) as reopened:
        kvs = (await reopened.range("/")).kvs
        assert [(kv.key, kv.value, kv.version) for kv in kvs] == [
            (f"/wide/{key:02d}", b"119", 120) for key in range(width)
        ]


async def test_a_format_1_file_is_converted_to_one_row_per_revision(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:  # one row per key version
        db.executescript(
            """
            CREATE TABLE kv (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB,
                create_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL);
            CREATE TABLE lease (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
            CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
            INSERT INTO lease VALUES (7, 60);
            INSERT INTO meta VALUES ('compacted', 4);
            PRAGMA user_version = 1;
            """
        )
        rows = [  # /a put at 2 and 3 (its row of 2 compacted away), /b put at 3, gone at 4
            ((3 << 24) + 0, "/a", b"2", 2, 2, 0),
            ((3 << 24) + 1, "/b", b"1", 3, 1, 7),
            ((4 << 24) + 0, "/b", None, 0, 0, 0),
        ]
        db.executemany("INSERT INTO kv VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.commit()

    for _ in range(2):  # converted, then opened as it is
        async with await EmbeddedStore.open(path) as store:
            assert await store.current_revision() == 4
            assert await store.get("/a") == KeyValue("/a", b"2", 2, 3, 2)
            assert await store.get("/b") is None
            assert await history_of(store, "/") == [
                Event(
                    EventType.DELETE, KeyValue("/b", b"", 0, 4, 0), KeyValue("/b", b"1", 3, 3, 1, 7)
                )
            ]
            with pytest.raises(CompactedError):
                await store.get("/a", revision=3)
            assert await store.lease_keepalive(7) == 60
    assert persisted(path) == [(3, "/a"), (3, "/b"), (4, "/b")]


async def test_a_watcher_that_falls_behind_compaction_gets_compacted_error() -> None:
    async with await EmbeddedStore.open(None, history=10) as store:
        start = (await store.put("/k", b"0")).revision
        watch = aiter(store.watch("/", start_revision=start))
        assert [event.kv.value for event in await anext(watch)] == [b"0"]
        for index in range(200):  # the watcher reads nothing meanwhile
            await store.put("/k", str(index).encode())
        with pytest.raises(CompactedError) as raised:
            await anext(watch)
        assert raised.value.requested == start + 1


async def test_one_file_serves_one_store_at_a_time(path: str) -> None:
    async with await EmbeddedStore.open(path):
        with pytest.raises(UnavailableError, match="locked"):
            await EmbeddedStore.open(path)
    async with await EmbeddedStore.open(path) as store:  # released on close
        assert await store.current_revision() == 1


async def test_checkpoints_keep_the_wal_bounded_while_writes_go_on(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a checkpoint every 256 KiB and writers held at 1 MiB ahead of it, 32 MiB
    of writes (transactions of 64 puts of 1 KiB, a scheduler's commit) go into the
    database file while the store is open, the WAL stays a fraction of that (SQLite
    writes whole pages), and every value is there after a reopen."""
    monkeypatch.setattr(_sqlite, "_CHECKPOINT_BYTES", 256 << 10)
    monkeypatch.setattr(_sqlite, "_CHECKPOINT_LIMIT", 1 << 20)
    values = [os.urandom(1 << 10) for _ in range(64)]
    txns = 512
    async with await EmbeddedStore.open(path) as store:
        for txn in range(txns):
            await store.txn([], [Put(f"/k/{txn:03d}/{i:02d}", values[i]) for i in range(64)])
        wal, database = os.path.getsize(f"{path}-wal"), os.path.getsize(path)
    assert database > 24 << 20, "checkpoints copied the WAL into the database file"
    assert wal < 4 << 20, f"a WAL of {wal} bytes after 32 MiB of writes"
    async with await EmbeddedStore.open(path) as reopened:
        kvs = (await reopened.range("/k/")).kvs
        assert [kv.value for kv in kvs] == values * txns


async def test_a_failed_commit_closes_the_store_and_leaks_nothing_unwritten(path: str) -> None:
    store = await EmbeddedStore.open(path)
    try:
        before = await store.put("/a", b"1")
        watcher = asyncio.create_task(collect_one(store, before.revision + 1))
        db = store._journal._db  # a real SQLite limit makes the next commit fail: disk full
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages + 4}")

        # The reader saw the write in memory, so it fails with it: it must not see it succeed.
        outcomes = await asyncio.gather(
            store.put("/big", bytes(1 << 20)), store.get("/big"), return_exceptions=True
        )
        outcomes += await asyncio.gather(watcher, return_exceptions=True)
        for outcome in outcomes:
            assert isinstance(outcome, StoreError) and "disk is full" in str(outcome)
        with pytest.raises(StoreError, match="disk is full"):
            await store.get("/a")
    finally:
        await store.close()

    async with await EmbeddedStore.open(path) as reopened:
        assert await reopened.current_revision() == before.revision
        assert await reopened.get("/big") is None


async def collect_one(store: Store, start: int) -> list[Event]:
    async for events in store.watch("/", start_revision=start):
        return events
    raise AssertionError("the watch ended")


@pytest.fixture
async def memory_store() -> AsyncIterator[EmbeddedStore]:
    async with await EmbeddedStore.open(None) as store:
        yield store


async def test_closing_ends_watches_and_refuses_calls(memory_store: EmbeddedStore) -> None:
    events: list[Event] = []
    start = await memory_store.current_revision() + 1

    async def follow() -> None:
        async for batch in memory_store.watch("/", start_revision=start):
            events.extend(batch)

    watcher = asyncio.create_task(follow())
    await memory_store.put("/k", b"1")
    await eventually(lambda: len(events) == 1)
    await memory_store.close()
    with pytest.raises(StoreError, match="closed"):
        await asyncio.wait_for(watcher, 5)
    await memory_store.close()
    with pytest.raises(StoreError, match="closed"):
        await memory_store.put("/k", b"2")
    with pytest.raises(StoreError, match="closed"):
        await memory_store.lease_grant(10)


async def test_synchronous_full_is_durable_and_other_modes_are_refused(path: str) -> None:
    async with await EmbeddedStore.open(path, synchronous="FULL") as store:
        await store.put("/k", b"1")
    async with await EmbeddedStore.open(path) as reopened:
        kv = await reopened.get("/k")
        assert kv is not None and kv.value == b"1"
    with pytest.raises(ValueError, match="synchronous"):
        await EmbeddedStore.open(path, synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="history"):
        await EmbeddedStore.open(None, history=0)
