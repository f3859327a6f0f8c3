"""Following a prefix of the store: events forever, a fresh read after a compaction."""

from __future__ import annotations

import logging
from collections.abc import Callable

from astra.store import CompactedError, Event, RangeResult, Store

_log = logging.getLogger(__name__)


async def follow(
    store: Store,
    prefix: str,
    *,
    revision: Callable[[], int],
    apply: Callable[[list[Event]], None],
    reload: Callable[[RangeResult], None],
) -> None:
    """Call ``apply`` with the events under ``prefix`` after ``revision()``, forever. When
    the watch falls behind a compaction, ``reload`` gets a fresh read of the prefix and
    the watch goes on from there (``revision()`` must then be the read's revision)."""
    while True:
        try:
            async for events in store.watch(prefix, start_revision=revision() + 1):
                apply(events)
            return
        except CompactedError:
            _log.warning(
                "watch on %s compacted past revision %d: reading it afresh", prefix, revision()
            )
            reload(await store.range(prefix))
