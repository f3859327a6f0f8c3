"""Every app record in memory, in id order: what ListApps pages through and what the
app owners learn of spec changes from.

A replica's writes wait for its catalog to hold them before they are answered, so a
client reads its own writes through the replica it wrote through; other replicas'
catalogs follow within a watch's latency.

Fed by one :class:`Follower` of ``/astra/v1/apps/``. Lookups are O(1); a page is
O(log n + page) by bisection over the sorted ids; adding or removing an app is O(n)
(a list insertion), which a control plane's app count keeps cheap.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from astra import keys
from astra.coordination import Follower
from astra.records import AppRecord
from astra.store import KeyValue, Store


class Catalog:
    """App records by id (those being deleted included), kept current by a watch."""

    def __init__(self, store: Store) -> None:
        self.follower = Follower(store, keys.APPS, self._changed, mirror=False)
        self.apps: dict[str, AppRecord] = {}
        self._ids: list[str] = []
        #: Called with the id of every app whose record changed or went.
        self.listeners: list[Callable[[str], None]] = []

    def page(self, after: str, limit: int) -> tuple[list[AppRecord], bool]:
        """Up to ``limit`` live apps with ids after ``after`` (``""``: from the first),
        and whether more follow."""
        found: list[AppRecord] = []
        for index in range(bisect.bisect_right(self._ids, after), len(self._ids)):
            record = self.apps[self._ids[index]]
            if record.deleting:
                continue
            if len(found) == limit:
                return found, True
            found.append(record)
        return found, False

    def _changed(self, key: str, kv: KeyValue | None) -> None:
        app_id = keys.last_segment(key)
        if kv is None:
            if self.apps.pop(app_id, None) is not None:
                del self._ids[bisect.bisect_left(self._ids, app_id)]
        else:
            if app_id not in self.apps:
                bisect.insort(self._ids, app_id)
            self.apps[app_id] = AppRecord.from_bytes(kv.value)
        for listener in self.listeners:
            listener(app_id)
