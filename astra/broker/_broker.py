"""The broker's inference records, and submission: what the gateway and the replicas
share in Redis.

An inference's record is a short stream (:func:`astra.broker._keys.record`) whose
entries are its states, newest last, each a whole ``astra.v1.Inference``. Readers take
the newest entry; waiters block on the stream with ``XREAD BLOCK`` from the entry they
have, so a Get with ``wait`` or a Watch is woken by the write itself, with no polling
(the block is renewed every :data:`BLOCK` seconds to notice a record that expired).

Writes go through Lua scripts, so each is atomic:

- **submit** refuses a queue already holding ``max_backlog`` entries (queued or
  running), returns the existing record for an id submitted before, else appends the
  request to the model version's queue and the QUEUED state to a new record (pending
  TTL);
- **put** appends a state unless the record already ended in SUCCEEDED (nothing
  replaces a result), and RUNNING only while the record has not finished: delivery is
  at least once, so a state may be written twice, and a duplicate never turns a result
  into an error. A finished record gets the result TTL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Self

import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from astra._gen.astra.v1 import async_inference_service_pb2 as apb
from astra._gen.inference import grpc_predict_v2_pb2 as pb
from astra.broker import _keys, _replies
from astra.errors import NotFoundError, ResourceExhaustedError

State = apb.InferenceState
QUEUED = apb.INFERENCE_STATE_QUEUED
RUNNING = apb.INFERENCE_STATE_RUNNING
SUCCEEDED = apb.INFERENCE_STATE_SUCCEEDED
FAILED = apb.INFERENCE_STATE_FAILED
FINISHED = frozenset({SUCCEEDED, FAILED})
#: Seconds a blocked read lasts before it is renewed (and the record's existence checked).
BLOCK = 10.0
#: States a record keeps (older ones are trimmed).
_HISTORY = 8

# KEYS: queue, record. ARGV: max backlog, request, id, record (QUEUED), pending TTL ms,
# submitted ms, result TTL ms, traceparent. Returns {1} accepted, {0, fields} known id,
# {-1, length} backlog full.
_SUBMIT = f"""
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then return {{0, last[1][2]}} end
local length = redis.call('XLEN', KEYS[1])
if length >= tonumber(ARGV[1]) then return {{-1, length}} end
redis.call('XADD', KEYS[1], '*', 'id', ARGV[3], 'request', ARGV[2], 'submitted', ARGV[6],
  'ttl', ARGV[7], 'pending', ARGV[5], 'traceparent', ARGV[8])
redis.call('XADD', KEYS[2], 'MAXLEN', '{_HISTORY}', '*', 'state', '{QUEUED}', 'record', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {{1}}
"""

# KEYS: record. ARGV: state, record, TTL ms. Returns 1 written, 0 refused. Every entry's
# first field is its state.
_PUT = f"""
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local state = last[1][2][2]
  if state == '{SUCCEEDED}' then return 0 end
  if state == '{FAILED}' and ARGV[1] ~= '{SUCCEEDED}' then return 0 end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '{_HISTORY}', '*', 'state', ARGV[1], 'record', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def now_ms() -> int:
    """The wall-clock time in milliseconds (what records and queues carry)."""
    return time.time_ns() // 1_000_000


def timestamp(ms: int) -> Timestamp:
    """``ms`` (Unix milliseconds) as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def _record(fields: Mapping[bytes, bytes] | Sequence[bytes]) -> apb.Inference:
    """The Inference of a record entry's fields (a mapping as stream reads return them,
    a flat list as scripts do)."""
    if not isinstance(fields, Mapping):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return apb.Inference.FromString(fields[b"record"])


class Broker:
    """The async broker in one Redis: submissions and inference records.

    Args:
        client: a ``redis.asyncio`` client made with ``decode_responses=False``.
        max_backlog: entries (queued or running) a model version's queue may hold; a
            submission beyond that is refused.
        result_ttl: seconds a finished inference's record is kept.
        pending_ttl: seconds an accepted inference's record is kept while it waits or
            runs (renewed when a replica starts it).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        max_backlog: int = 10_000,
        result_ttl: float = 600.0,
        pending_ttl: float = 3600.0,
    ) -> None:
        if max_backlog < 1 or result_ttl <= 0 or pending_ttl <= 0:
            raise ValueError("max_backlog, result_ttl and pending_ttl must be positive")
        self.redis = client
        self.max_backlog = max_backlog
        self.result_ttl = result_ttl
        self.pending_ttl = pending_ttl
        self._submit = client.register_script(_SUBMIT)
        self._put = client.register_script(_PUT)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A broker on the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``);
        ``options`` as for the constructor."""
        return cls(aioredis.Redis.from_url(url, decode_responses=False), **options)

    async def close(self) -> None:
        """Close the Redis connections. Idempotent."""
        await self.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- submission ------------------------------------------------------------------

    async def submit(
        self, request: pb.ModelInferRequest, *, inference_id: str = "", traceparent: str = ""
    ) -> apb.Inference:
        """Queue ``request`` for its model version's replicas (``model_version`` must be
        the resolved version, not empty); returns the QUEUED inference, or the one
        already accepted under ``inference_id``.

        Raises:
            ResourceExhaustedError: the queue holds ``max_backlog`` entries already.
        """
        if not request.model_name or not request.model_version:
            raise ValueError("submit needs the model name and its resolved version")
        inference_id = inference_id or uuid.uuid4().hex
        submitted = now_ms()
        pending_ms = int(self.pending_ttl * 1000)
        queued = apb.Inference(
            inference_id=inference_id,
            model=request.model_name,
            version=request.model_version,
            state=QUEUED,
            submit_time=timestamp(submitted),
            expire_time=timestamp(submitted + pending_ms),
        )
        queue = _keys.queue(request.model_name, request.model_version)
        answer = await self._submit(
            keys=[queue, _keys.record(inference_id)],
            args=[
                self.max_backlog,
                request.SerializeToString(),
                inference_id,
                queued.SerializeToString(),
                pending_ms,
                submitted,
                int(self.result_ttl * 1000),
                traceparent,
            ],
        )
        if answer[0] == 0:
            return _record(answer[1])
        if answer[0] == -1:
            raise ResourceExhaustedError(
                f"model {request.model_name} version {request.model_version} has "
                f"{answer[1]} inferences queued or running (the limit is {self.max_backlog}): "
                "retry later, with backoff"
            )
        return queued

    async def backlog(self, model: str, version: str) -> int:
        """Entries in the queue of ``model`` at ``version`` (queued or running)."""
        return int(await self.redis.xlen(_keys.queue(model, version)))

    # -- records ---------------------------------------------------------------------

    async def put(self, inference: apb.Inference, *, ttl: float) -> bool:
        """Append ``inference``'s state to its record, kept ``ttl`` seconds from now;
        ``False`` when refused (it had succeeded, or finished and this is no result)."""
        written = await self._put(
            keys=[_keys.record(inference.inference_id)],
            args=[int(inference.state), inference.SerializeToString(), int(ttl * 1000)],
        )
        return bool(written)

    async def get(self, inference_id: str) -> apb.Inference:
        """The inference as it is now.

        Raises:
            NotFoundError: no such inference, or its record has expired.
        """
        return (await self._latest(inference_id))[1]

    async def wait(self, inference_id: str, timeout: float) -> apb.Inference:
        """The inference once it has finished, or as it is after ``timeout`` seconds.

        Raises:
            NotFoundError: no such inference, or its record expired meanwhile.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async for inference in self.watch(inference_id, timeout=timeout):
            if inference.state in FINISHED or loop.time() >= deadline:
                return inference
        raise AssertionError("watch ended before its timeout")  # pragma: no cover

    async def watch(
        self, inference_id: str, *, timeout: float | None = None
    ) -> AsyncIterator[apb.Inference]:
        """The inference now, then each new state, ending after a finished one (or,
        with ``timeout``, once that many seconds have passed: the last state again).

        Raises:
            NotFoundError: no such inference, or its record expired meanwhile.
        """
        key = _keys.record(inference_id)
        entry, inference = await self._latest(inference_id)
        yield inference
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while inference.state not in FINISHED:
            block = BLOCK if deadline is None else min(BLOCK, deadline - loop.time())
            if block <= 0:
                yield inference
                return
            read = await self.redis.xread({key: entry}, block=max(1, int(block * 1000)))
            if not read:
                if not await self.redis.exists(key):
                    raise NotFoundError(f"inference {inference_id!r} expired meanwhile")
                continue
            for _entry, fields in _replies.read(read)[0][1]:
                inference = _record(fields)
                yield inference
                if inference.state in FINISHED:
                    return

    async def _latest(self, inference_id: str) -> tuple[bytes, apb.Inference]:
        last = _replies.entries(await self.redis.xrevrange(_keys.record(inference_id), count=1))
        if not last:
            raise NotFoundError(
                f"no inference {inference_id!r}: it was never submitted, or its record "
                f"expired (results are kept {self.result_ttl:g}s)"
            )
        entry, fields = last[0]
        return entry, _record(fields)
