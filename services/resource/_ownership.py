"""Which replica of the Resource service owns which node.

Each replica keeps ``/astra/v1/owners/resource/{replica_id}`` (its advertised address) alive
under a lease. Every replica watches that prefix, so all agree on the live replicas, and
the owner of a node is the replica with the highest hash of (replica, node): rendezvous
hashing, which any replica computes alone (to redirect an agent) and which moves only the
nodes of a replica that joins or leaves. A replica that dies stops renewing its lease; when
etcd expires it, the others see the key go and take over its nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from astra import keys
from astra.server import Tasks
from astra.store import (
    Event,
    EventType,
    LeaseNotFoundError,
    RangeResult,
    Store,
    StoreError,
    UnavailableError,
)
from services.resource._follow import follow

_log = logging.getLogger(__name__)

PREFIX = keys.OWNERS + "resource/"


class Ownership:
    """This replica's lease, the live replicas, and the owner of any node.

    Args:
        store: where the leases live.
        replica_id: this replica's unique id.
        address: the ``host:port`` agents are redirected to for nodes this replica owns.
        ttl: the lease's time to live in seconds: how long a dead replica's nodes wait
            for a new owner (etcd may round a short TTL up to its minimum, about 2 s).
    """

    def __init__(self, store: Store, *, replica_id: str, address: str, ttl: int) -> None:
        self._store = store
        self.replica_id = replica_id
        self.address = address
        self._ttl = ttl
        self._lease = 0
        self._advertising = asyncio.Lock()
        self._revision = 0
        #: Live replicas: id -> address.
        self.replicas: dict[str, str] = {}
        self._hashers: list[tuple[str, hashlib.blake2b]] = []
        #: Called after the set of live replicas changed.
        self.listeners: list[Callable[[], None]] = []

    # -- owners ----------------------------------------------------------------------

    def owner(self, name: str) -> str:
        """The id of the replica that owns node ``name``. O(replicas)."""
        if len(self._hashers) == 1:
            return self._hashers[0][0]
        best_id, best = self.replica_id, b""
        data = name.encode()
        for replica_id, hasher in self._hashers:
            hashed = hasher.copy()
            hashed.update(data)
            score = hashed.digest()
            if score > best:
                best_id, best = replica_id, score
        return best_id

    def owns(self, name: str) -> bool:
        return self.owner(name) == self.replica_id

    def address_of(self, replica_id: str) -> str:
        return self.replicas.get(replica_id, "")

    def _set_replicas(self, replicas: dict[str, str]) -> None:
        if replicas == self.replicas:
            return
        _log.info(
            "live Resource replicas: %s", ", ".join(f"{r}@{a}" for r, a in sorted(replicas.items()))
        )
        self.replicas = replicas
        # Until this replica sees its own key it still owns what it would own with it.
        ids = sorted({*replicas, self.replica_id})
        self._hashers = [
            (replica_id, hashlib.blake2b(replica_id.encode() + b"\0", digest_size=8))
            for replica_id in ids
        ]
        for listener in self.listeners:
            listener()

    # -- lifecycle -------------------------------------------------------------------

    async def join(self) -> None:
        """Take a lease, advertise this replica under it, and read the live replicas."""
        await self._advertise()
        self._reread(await self._store.range(PREFIX))

    async def _advertise(self) -> None:
        lease = await self._store.lease_grant(self._ttl)
        self._lease = lease.id
        await self._store.put(PREFIX + self.replica_id, self.address.encode(), lease=lease.id)

    async def keep_alive(self) -> None:
        """Renew the lease every third of its TTL, forever. Renewals do not wait for each
        other: a store slow to answer one (busy applying writes) still gets the next on
        time, so a slow answer does not let the lease expire."""
        renewals = Tasks()
        try:
            while True:
                await asyncio.sleep(self._ttl / 3)
                renewals.spawn(self._renew(self._lease), name="resource.lease.renew")
        finally:
            await renewals.close()

    async def _renew(self, lease: int) -> None:
        try:
            await self._store.lease_keepalive(lease)
            if self.replica_id not in self.replicas and lease == self._lease:
                await self._store.put(PREFIX + self.replica_id, self.address.encode(), lease=lease)
        except LeaseNotFoundError:
            async with self._advertising:
                if lease != self._lease:
                    return  # another renewal advertised again already
                _log.warning(
                    "lease of Resource replica %s expired: advertising again", self.replica_id
                )
                while True:
                    try:
                        await self._advertise()
                        return
                    except UnavailableError:
                        await asyncio.sleep(0.2)
        except StoreError as exc:  # unreachable, or the call failed: the next renewal retries
            _log.warning("cannot renew the lease of Resource replica %s: %s", self.replica_id, exc)

    async def follow(self) -> None:
        """Track the live replicas forever."""
        await follow(
            self._store,
            PREFIX,
            revision=lambda: self._revision,
            apply=self._events,
            reload=self._reread,
        )

    def _events(self, events: list[Event]) -> None:
        replicas = dict(self.replicas)
        for event in events:
            replica_id = event.kv.key[len(PREFIX) :]
            if event.type is EventType.DELETE:
                replicas.pop(replica_id, None)
            else:
                replicas[replica_id] = event.kv.value.decode()
        self._revision = events[-1].kv.mod_revision
        self._set_replicas(replicas)

    def _reread(self, result: RangeResult) -> None:
        self._revision = result.revision
        self._set_replicas({kv.key[len(PREFIX) :]: kv.value.decode() for kv in result.kvs})

    async def leave(self) -> None:
        """Give the nodes up at once: revoke the lease (its key goes with it)."""
        if self._lease:
            try:
                await self._store.lease_revoke(self._lease)
            except UnavailableError as exc:
                _log.warning(
                    "could not revoke the lease of Resource replica %s: %s", self.replica_id, exc
                )
            self._lease = 0
