"""The store follower on a real (in-memory) store: every change once, in order, and
exactly the keys that changed when the watch falls behind a compaction."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from astra.coordination import Follower
from astra.store import KeyValue, open_store

PREFIX = "/astra/v1/test/"


async def test_a_follower_reports_each_change_once_and_across_a_compaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, bytes | None]] = []

    def listener(key: str, kv: KeyValue | None) -> None:
        seen.append((key.removeprefix(PREFIX), None if kv is None else kv.value))

    async with await open_store("memory://") as store:
        for name in ("a", "b", "c"):
            await store.put(PREFIX + name, name.encode())
        await store.put("/astra/v1/other", b"not followed")
        follower = Follower(store, PREFIX, listener)
        loaded = await follower.load()
        assert sorted(seen) == [("a", b"a"), ("b", b"b"), ("c", b"c")]
        assert follower.revision == loaded

        task = asyncio.create_task(follower.follow())
        seen.clear()
        put = await store.put(PREFIX + "a", b"a2")
        assert await follower.caught_up(put.revision, timeout=5)
        assert seen == [("a", b"a2")]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

        # While nobody follows: a change, a delete, a new key, then compaction.
        seen.clear()
        await store.put(PREFIX + "b", b"b2")
        await store.delete(PREFIX + "c")
        last = await store.put(PREFIX + "d", b"d")
        await store.compact(last.revision)
        task = asyncio.create_task(follower.follow())
        try:
            assert await follower.caught_up(last.revision, timeout=5)
            assert sorted(seen, key=lambda item: item[0]) == [
                ("b", b"b2"),
                ("c", None),
                ("d", b"d"),
            ]
            assert {key.removeprefix(PREFIX) for key in follower.entries} == {"a", "b", "d"}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert "fell behind compaction" in caplog.text
