"""Sharding work across the replicas of a service with store leases.

Each replica keeps ``/astra/v1/owners/{service}/{replica_id}`` (its advertised
address) alive under a lease and follows that prefix, so every replica knows the live
ones and where they are. A name (an app id, a model, a node) belongs to the live
replica with the highest hash of (replica, name): rendezvous hashing, which every
replica computes alone (the Resource service does, to redirect an agent to the
owner's address) and which moves only the names of a replica that joins or leaves. A
replica that dies stops renewing its lease; once the store expires it, the others see
its key go and take its names over.

What a replica owns while its own key is not seen (before joining, or after its lease
was lost) is the one choice the services make differently, with ``presume_self``:

- off (the App and Scheduler services): it owns nothing, so a replica cut off for
  longer than the TTL gives its apps up and no two schedulers run one app;
- on (the Resource service): it counts itself live, so every node always has an
  owner and an agent is never left without a replica to heartbeat.

The lease is renewed every third of its TTL; renewals do not wait for each other, so a
store slow to answer one still gets the next on time. A lease found expired is taken
anew and the key advertised again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from astra import keys
from astra.coordination._follow import Follower
from astra.server import Tasks
from astra.store import KeyValue, LeaseNotFoundError, Store, StoreError, UnavailableError

_log = logging.getLogger(__name__)


class Ownership:
    """This replica's lease, the live replicas, and the owner of any name.

    Args:
        store: where the leases live.
        service: the service's name in the key (``app``, ``scheduler``, ``resource``).
        replica_id: this replica's id, unique among the service's replicas.
        address: what this replica advertises (its ``host:port``), for the others.
        ttl: seconds the lease outlives this replica: how long a dead replica's names
            wait for a new owner (etcd may round a short TTL up to its minimum).
        presume_self: count this replica live while its own key is not seen.
    """

    def __init__(
        self,
        store: Store,
        *,
        service: str,
        replica_id: str,
        address: str = "",
        ttl: int = 3,
        presume_self: bool = False,
    ) -> None:
        if not replica_id or "/" in replica_id:
            raise ValueError(f"replica_id must be a non-empty id without '/', not {replica_id!r}")
        self._store = store
        self._prefix = f"{keys.OWNERS}{service}/"
        self.replica_id = replica_id
        self._address = address
        self._ttl = ttl
        self._presume_self = presume_self
        self._lease = 0
        self._advertising = asyncio.Lock()
        self._follower = Follower(store, self._prefix, self._changed)
        #: Live replicas seen in the store: id -> advertised address.
        self._addresses: dict[str, str] = {}
        self._seeds = self._seeds_of({})
        #: Called after the set of live replicas changed.
        self.listeners: list[Callable[[], None]] = []

    @property
    def replicas(self) -> list[str]:
        """The ids of the live replicas seen in the store, sorted."""
        return sorted(self._addresses)

    def address_of(self, replica_id: str) -> str:
        """What a live replica advertises (``""``: not seen)."""
        return self._addresses.get(replica_id, "")

    def owner(self, name: str) -> str | None:
        """The id of the live replica that owns ``name`` (``None``: none is live). O(replicas)."""
        if len(self._seeds) == 1:
            return self._seeds[0][0]
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
        renewals = Tasks()
        try:
            while True:
                await asyncio.sleep(self._ttl / 3 if self._lease else 0.1)
                renewals.spawn(self._renew(self._lease), name=f"renew {self._key}")
        finally:
            await renewals.close()

    async def _renew(self, lease: int) -> None:
        try:
            if not lease:
                raise LeaseNotFoundError(lease)  # none taken, or given up: advertise anew
            await self._store.lease_keepalive(lease)
            if self.replica_id not in self._addresses and lease == self._lease:
                await self._store.put(self._key, self._address.encode(), lease=lease)
        except LeaseNotFoundError:
            async with self._advertising:
                if lease != self._lease:
                    return  # another renewal advertised again already
                _log.warning("the lease of %s expired: advertising again", self._key)
                self._lease = 0
                try:
                    await self._advertise()
                except StoreError as exc:  # the next renewal, a tenth of a second on, retries
                    _log.warning("cannot advertise %s: %s", self._key, exc)
        except StoreError as exc:  # unreachable, or the call failed: the next renewal retries
            _log.warning("cannot renew the lease of %s: %s", self._key, exc)

    def _changed(self, key: str, kv: KeyValue | None) -> None:
        live = {
            key.removeprefix(self._prefix): kv.value.decode()
            for key, kv in self._follower.entries.items()
        }
        if live == self._addresses:
            return
        _log.info(
            "live replicas under %s: %s",
            self._prefix,
            ", ".join(f"{r}@{a}" if a else r for r, a in sorted(live.items())) or "none",
        )
        self._addresses = live
        self._seeds = self._seeds_of(live)
        for listener in self.listeners:
            listener()

    def _seeds_of(self, live: dict[str, str]) -> list[tuple[str, hashlib.blake2b]]:
        ids = sorted({*live, self.replica_id} if self._presume_self else live)
        return [
            (replica_id, hashlib.blake2b(replica_id.encode() + b"\0", digest_size=8))
            for replica_id in ids
        ]
