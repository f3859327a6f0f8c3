"""The pull side of the broker: one replica's consumer in the groups of the queues it
serves.

A replica asks for at most ``room`` entries at a time (its spare capacity), so it never
holds more than it can run: ``XREADGROUP ... COUNT`` counts per stream, so with ``n``
queues and ``room >= n`` each of them is asked for ``room // n``, and with ``room < n``
a rotating ``room`` of them for one each (blocking at most :data:`SUBSET_BLOCK`, so the
others are not left waiting).

An entry stays pending (the replica's) until acknowledged, which happens only once its
result is written: delivery is at least once. While the replica runs an entry it
renews the entry's idle time (:meth:`Consumer.refresh`, an atomic "still mine? then
``XCLAIM ... JUSTID``"), so only the entries of a replica that stopped renewing them (it
died, or hung) reach ``claim_idle`` and are taken over by another one with
``XAUTOCLAIM``. Acknowledged entries are deleted, so a queue's length is its backlog.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from astra.broker import _keys, _replies
from astra.broker._broker import Broker

_log = logging.getLogger(__name__)
#: Seconds a read of only some of the queues blocks.
SUBSET_BLOCK = 0.5

# KEYS: queue. ARGV: group, consumer, entry ids. Renews the idle time of the entries
# still pending for the consumer; returns those.
_REFRESH = """
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], '0'}
local mine = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    table.insert(mine, ARGV[i])
    table.insert(args, ARGV[i])
  end
end
if #mine > 0 then
  table.insert(args, 'JUSTID')
  redis.call(unpack(args))
end
return mine
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queued inference handed to this consumer.

    Attributes:
        queue: the queue's key.
        model: the queue's model.
        version: the queue's model version.
        entry: the entry's id in the queue.
        inference_id: the inference's id.
        request: the serialized ``inference.ModelInferRequest``.
        submitted_ms: when it was accepted (Unix milliseconds).
        result_ttl: seconds its result is to be kept.
        pending_ttl: seconds its record is kept while it runs.
        traceparent: the W3C trace context of the submission ("" for none).
        attempts: how many times it was handed out, this one included.
    """

    queue: str
    model: str
    version: str
    entry: bytes
    inference_id: str
    request: bytes
    submitted_ms: int
    result_ttl: float
    pending_ttl: float
    traceparent: str
    attempts: int


def _delivery(
    queue: str, model: tuple[str, str], entry: bytes, fields: dict[bytes, bytes], attempts: int
) -> Delivery:
    return Delivery(
        queue=queue,
        model=model[0],
        version=model[1],
        entry=entry,
        inference_id=fields[b"id"].decode(),
        request=fields[b"request"],
        submitted_ms=int(fields[b"submitted"]),
        result_ttl=int(fields[b"ttl"]) / 1000,
        pending_ttl=int(fields[b"pending"]) / 1000,
        traceparent=fields.get(b"traceparent", b"").decode(),
        attempts=attempts,
    )


class Consumer:
    """A replica's consumer ``name`` in the group of each queue of ``models`` ((name,
    version) pairs).

    Args:
        broker: the broker's Redis.
        models: the model versions the replica serves.
        name: the consumer's name, unique per replica process.
        claim_idle: seconds an entry stays pending without renewal before another
            consumer may take it over.
        forget_after: seconds after which a consumer with nothing pending and no
            activity is removed from its groups.
    """

    def __init__(
        self,
        broker: Broker,
        models: Sequence[tuple[str, str]],
        *,
        name: str,
        claim_idle: float = 5.0,
        forget_after: float = 300.0,
    ) -> None:
        if not models:
            raise ValueError("a consumer needs at least one model")
        self.broker = broker
        self.name = name
        self.claim_idle = claim_idle
        self.forget_after = forget_after
        self._models = {_keys.queue(model, version): (model, version) for model, version in models}
        self.queues = list(self._models)
        self._redis = broker.redis
        self._refresh = self._redis.register_script(_REFRESH)
        self._next = 0

    async def join(self) -> None:
        """Create each queue's group where missing, reading from the queue's start (so
        what was submitted before any replica came is delivered too)."""
        for queue in self.queues:
            try:
                await self._redis.xgroup_create(queue, _keys.GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, room: int, *, block: float) -> list[Delivery]:
        """At most ``room`` new entries, waiting up to ``block`` seconds for some."""
        if room <= 0:
            return []
        queues, count = self._plan(room)
        if len(queues) < len(self.queues):
            block = min(block, SUBSET_BLOCK)
        try:
            answer = await self._redis.xreadgroup(
                _keys.GROUP,
                self.name,
                dict.fromkeys(queues, ">"),
                count=count,
                block=max(1, int(block * 1000)),
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            _log.warning("a queue's group is gone (Redis restarted?): joining again")
            await self.join()
            return []
        return [
            _delivery(queue.decode(), self._models[queue.decode()], entry, fields, attempts=1)
            for queue, entries in _replies.read_group(answer)
            for entry, fields in entries
            if fields
        ]

    def _plan(self, room: int) -> tuple[list[str], int]:
        """Which queues to read and how many of each, ``room`` at most in all."""
        n = len(self.queues)
        start, take = self._next, min(room, n)
        self._next = (start + take) % n
        return [self.queues[(start + i) % n] for i in range(take)], max(1, room // n)

    async def claim(self, room: int) -> list[Delivery]:
        """Take over at most ``room`` entries that other consumers (or this one, before
        a restart) left pending for ``claim_idle`` seconds."""
        claimed: list[Delivery] = []
        idle_ms = int(self.claim_idle * 1000)
        for queue in self.queues:
            if len(claimed) >= room:
                break
            answer = await self._redis.xautoclaim(
                queue, _keys.GROUP, self.name, idle_ms, count=room - len(claimed)
            )
            entries = [(entry, fields) for entry, fields in answer[1] if fields]
            gone = [entry for entry, fields in answer[1] if not fields]
            if len(answer) > 2:
                gone.extend(answer[2])
            if gone:  # deleted while pending: nothing to run
                await self._redis.xack(queue, _keys.GROUP, *gone)
            for entry, fields in entries:
                attempts = await self._attempts(queue, entry)
                claimed.append(_delivery(queue, self._models[queue], entry, fields, attempts))
        return claimed

    async def _attempts(self, queue: str, entry: bytes) -> int:
        pending = await self._redis.xpending_range(queue, _keys.GROUP, entry, entry, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def refresh(self, held: Iterable[Delivery]) -> set[bytes]:
        """Renew the idle time of the ``held`` entries; returns the entries among them
        that are no longer this consumer's (another one took them over)."""
        by_queue: dict[str, list[bytes]] = {}
        for delivery in held:
            by_queue.setdefault(delivery.queue, []).append(delivery.entry)
        lost: set[bytes] = set()
        for queue, entries in by_queue.items():
            mine = await self._refresh(keys=[queue], args=[_keys.GROUP, self.name, *entries])
            lost.update(set(entries) - set(mine))
        return lost

    async def ack(self, delivery: Delivery) -> None:
        """Done with ``delivery``: acknowledge and delete its entry."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(delivery.queue, _keys.GROUP, delivery.entry)
            pipe.xdel(delivery.queue, delivery.entry)
            await pipe.execute()

    async def pending(self) -> dict[str, int]:
        """How many entries each consumer of the groups holds, by consumer name."""
        held: dict[str, int] = {}
        for queue in self.queues:
            for consumer in await self._consumers(queue):
                name = consumer["name"].decode()
                held[name] = held.get(name, 0) + int(consumer["pending"])
        return held

    async def forget_dead(self) -> list[str]:
        """Remove consumers that hold nothing and were idle ``forget_after`` seconds
        (replicas gone for good); returns their names."""
        forgotten = []
        for queue in self.queues:
            for consumer in await self._consumers(queue):
                name = consumer["name"].decode()
                idle = int(consumer["idle"]) / 1000
                if name != self.name and not consumer["pending"] and idle > self.forget_after:
                    await self._redis.xgroup_delconsumer(queue, _keys.GROUP, name)
                    forgotten.append(name)
        return forgotten

    async def _consumers(self, queue: str) -> list[dict[str, Any]]:
        try:
            return list(await self._redis.xinfo_consumers(queue, _keys.GROUP))
        except ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc):
                return []
            raise
