"""Writing routes to ``/astra/v1/routes/{model}``, where gateways and WatchRoutes read them.

Each Scheduler replica writes the routes of the models it owns (rendezvous over the
replicas' leases), and only those that differ from what the store holds: a change is
written once, whichever replica computed it, and a route someone else overwrote is
written again by its owner. Changes are batched per tick into transactions of at
most 128 operations.
"""

from __future__ import annotations

import asyncio
import logging
import time

from astra import keys, telemetry
from astra.coordination import Follower, Ownership
from astra.store import MAX_REQUEST_BYTES, MAX_TXN_OPS, Delete, Op, Put, Store, UnavailableError
from services.scheduler._routes import RouteTable

_log = logging.getLogger(__name__)

#: The most route bytes written in one transaction (room left for keys and framing).
_BATCH_BYTES = MAX_REQUEST_BYTES * 3 // 4


class RoutePublisher:
    """Publishes the owned routes of ``table``; see the module's documentation.

    Args:
        store: the store.
        table: where routes are computed.
        ownership: which models this replica owns.
        stored: a mirror of ``/astra/v1/routes/``.
        tick: the longest a change waits to be batched with others, in seconds.
    """

    def __init__(
        self,
        store: Store,
        table: RouteTable,
        ownership: Ownership,
        stored: Follower,
        *,
        tick: float,
    ) -> None:
        self._store = store
        self._table = table
        self._ownership = ownership
        self._stored = stored
        self._tick = tick
        self._wake = asyncio.Event()
        #: Route writes committed (one per changed model).
        self.writes = 0
        self._drain_seconds = telemetry.meter("astra.scheduler").create_histogram(
            "astra.scheduler.drain.out_of_routes",
            unit="s",
            description="Time from a node's DRAINING transition to the commit of the "
            "routes written without it",
        )

    def poke(self) -> None:
        """Something changed in the table: publish at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Publish changes forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._tick)
            try:
                await self.publish()
            except Exception as exc:
                if isinstance(exc, UnavailableError):
                    _log.warning("cannot write routes now: %s", exc)
                else:
                    _log.exception("writing routes failed")
                self._table.touch_all()
                self._wake.set()
                await asyncio.sleep(0.5)

    async def publish(self) -> None:
        """Write every owned route that differs from the stored one, in transactions
        within the store's limits. A route too big for one request is logged and left."""
        ops: list[Op] = []
        drains = self._table.take_drains()
        for model in sorted(self._table.take_dirty()):
            if not self._ownership.owns(model):
                continue
            key = keys.route(model)
            record = self._table.route(model)
            stored = self._stored.entries.get(key)
            if record is None:
                if stored is not None:
                    ops.append(Delete(key))
                continue
            value = record.to_bytes()
            if len(value) > _BATCH_BYTES:
                _log.error(
                    "the route of %s is %d bytes, too big to store: not written", model, len(value)
                )
            elif stored is None or stored.value != value:
                ops.append(Put(key, value))
        batch: list[Op] = []
        size = 0
        for op in ops:
            op_size = len(op.key) + (len(op.value) if isinstance(op, Put) else 0)
            if batch and (len(batch) == MAX_TXN_OPS or size + op_size > _BATCH_BYTES):
                await self._store.txn((), batch)
                batch, size = [], 0
            batch.append(op)
            size += op_size
        if batch:
            await self._store.txn((), batch)
        self.writes += len(ops)
        if ops:  # a drain whose models are all another replica's is that one's to time
            now = time.time()
            for since in drains.values():
                self._drain_seconds.record(max(0.0, now - since))
