"""Sharding work across the replicas of a service with etcd leases.

Each replica keeps ``/astra/v1/owners/{service}/{replica_id}`` alive under a lease and
follows that prefix, so every replica knows the live ones. A name (an app id, a model,
a node) belongs to the live replica with the highest hash of (replica, name):
rendezvous hashing, which every replica computes alone and which moves only the names
of a replica that joins or leaves. A replica that dies stops renewing its lease; once
the store expires it, the others see its key go and take its names over.

A replica owns nothing while its own key is not seen (before joining, or after its
lease was lost), so a replica cut off for longer than the TTL gives its names up.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from astra import keys
from astra.coordination._follow import Follower
from astra.store import KeyValue, LeaseNotFoundError, Store, UnavailableError

_log = logging.getLogger(__name__)


class Ownership:
    """This replica's lease, the live replicas, and the owner of any name.

    Args:
        store: where the leases live.
        service: the service's name in the key (``app``, ``scheduler``).
        replica_id: this replica's id, unique among the service's replicas.
        address: what this replica advertises (its ``host:port``), for the others.
        ttl: seconds the lease outlives this replica: how long a dead replica's names
            wait for a new owner.
    """

    def __init__(
        self, store: Store, *, service: str, replica_id: str, address: str = "", ttl: int = 3
    ) -> None:
        if not replica_id or "/" in replica_id:
            raise ValueError(f"replica_id must be a non-empty id without '/', not {replica_id!r}")
        self._store = store
        self._prefix = f"{keys.OWNERS}{service}/"
        self.replica_id = replica_id
        self._address = address
        self._ttl = ttl
        self._lease = 0
        self._follower = Follower(store, self._prefix, self._changed)
        self._seeds: list[tuple[str, hashlib.blake2b]] = []
        #: Called after the set of live replicas changed.
        self.listeners: list[Callable[[], None]] = []

    @property
    def replicas(self) -> list[str]:
        """The live replicas' ids, sorted."""
        return [replica_id for replica_id, _ in self._seeds]

    def owner(self, name: str) -> str | None:
        """The id of the live replica that owns ``name`` (``None``: none is live). O(replicas)."""
        best: tuple[bytes, str] | None = None
        data = name.encode()
        for replica_id, seed in self._seeds:
            hashed = seed.copy()
            hashed.update(data)
            score = hashed.digest()
            if best is None or score > best[0]:
                best = score, replica_id
        return None if best is None else best[1]

    def owns(self, name: str) -> bool:
        return self.owner(name) == self.replica_id

    async def join(self) -> None:
        """Take a lease, advertise this replica under it and learn the live replicas."""
        await self._advertise()
        await self._follower.load()

    async def run(self) -> None:
        """Follow the live replicas and renew the lease, forever."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follower.follow())
            group.create_task(self._keep_alive())

    async def leave(self) -> None:
        """Hand this replica's names to the others at once: revoke the lease. Idempotent."""
        lease, self._lease = self._lease, 0
        if lease:
            try:
                await self._store.lease_revoke(lease)
            except UnavailableError as exc:
                _log.warning("cannot revoke the lease of %s: %s", self._key, exc)

    @property
    def _key(self) -> str:
        return self._prefix + self.replica_id

    async def _advertise(self) -> None:
        lease = await self._store.lease_grant(self._ttl)
        self._lease = lease.id
        await self._store.put(self._key, self._address.encode(), lease=lease.id)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3 if self._lease else 0.1)
            try:
                if self._lease:
                    await self._store.lease_keepalive(self._lease)
                else:
                    await self._advertise()
            except LeaseNotFoundError:
                _log.warning("the lease of %s expired: advertising again", self._key)
                self._lease = 0
            except UnavailableError as exc:
                _log.warning("cannot renew the lease of %s: %s", self._key, exc)

    def _changed(self, key: str, kv: KeyValue | None) -> None:
        ids = sorted(key.removeprefix(self._prefix) for key in self._follower.entries)
        if ids == self.replicas:
            return
        _log.info("live replicas under %s: %s", self._prefix, ", ".join(ids) or "none")
        self._seeds = [
            (replica_id, hashlib.blake2b(replica_id.encode() + b"\0", digest_size=8))
            for replica_id in ids
        ]
        for listener in self.listeners:
            listener()
