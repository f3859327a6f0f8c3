"""EtcdStore: the store interface on a real etcd v3 cluster."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

import grpc
from aetcd import rpc
from google.protobuf.message import Message

from astra.store._base import Store
from astra.store._errors import (
    CompactedError,
    LeaseNotFoundError,
    StoreError,
    UnavailableError,
)
from astra.store._etcd import _codec
from astra.store._etcd._endpoints import Endpoints
from astra.store._etcd._status import UNAVAILABLE_CODES, is_compacted, is_no_leader, store_error
from astra.store._types import Compare, Event, Lease, Op, RangeResult, TxnResult

#: Lets etcd cancel a watch whose member lost its leader, so that it moves elsewhere.
_REQUIRE_LEADER = (("hasleader", "true"),)
#: A key no one writes, for reading the store's revision in one cheap request.
_NO_KEY = b"\0"


class EtcdStore(Store):
    """The store on etcd: every call is one gRPC round trip to one member.

    Open it with :meth:`connect`. Writes always ask etcd for previous values, so
    :class:`PutResult` and :class:`DeleteResult` carry ``prev``.

    An :class:`UnavailableError` from a write whose request reached etcd leaves its
    outcome unknown (etcd may have applied it before the connection broke): retry
    writes under compares, as optimistic commits do anyway.
    """

    def __init__(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints

    @classmethod
    async def connect(
        cls, endpoints: list[str], *, timeout: float = 10.0, connect_timeout: float = 10.0
    ) -> EtcdStore:
        """Connect to the etcd cluster at ``endpoints`` (``host:port``).

        Args:
            endpoints: the members, tried in order and in turn after failures.
            timeout: deadline of each call, in seconds.
            connect_timeout: how long to wait for a member to answer at first (a
                freshly started etcd accepts connections before it serves).

        Raises:
            UnavailableError: no member answered within ``connect_timeout``.
        """
        store = cls(Endpoints(endpoints, timeout=timeout))
        try:
            await store._wait_until_ready(connect_timeout)
        except BaseException:
            await store.close()
            raise
        return store

    async def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            try:
                await self.current_revision()
                return
            except UnavailableError:
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- calls -----------------------------------------------------------------------

    async def _call(self, name: str, request: Message, *, idempotent: bool) -> object:
        try:
            return await self._endpoints.unary(name, request, idempotent=idempotent)
        except grpc.aio.AioRpcError as exc:
            if is_compacted(exc):
                revision = request.revision  # type: ignore[attr-defined]  # a range or a compact
                point = await self._compact_revision(
                    revision, compacting=isinstance(request, rpc.CompactionRequest)
                )
                raise CompactedError(revision, point) from exc
            raise store_error(exc, request) from exc

    async def _compact_revision(self, requested: int, *, compacting: bool) -> int:
        """etcd's compaction point, which its errors do not tell.

        A watch from a revision before the point is refused with the point. A compact
        call is refused at the point itself too, where a watch would not be: a read
        at ``requested`` tells that case apart.
        """
        if compacting and not await self._is_compacted(requested):
            return requested
        try:
            watch = self._watch(_NO_KEY.decode(), requested)
            async with asyncio.timeout(self._endpoints.timeout), contextlib.aclosing(watch):
                await anext(watch)
        except CompactedError as exc:
            return exc.compact_revision
        except TimeoutError:
            pass
        raise UnavailableError("etcd did not report its compact revision")

    async def _is_compacted(self, revision: int) -> bool:
        request = rpc.RangeRequest(key=_NO_KEY, revision=revision, count_only=True)
        try:
            await self._endpoints.unary("Range", request, idempotent=True)
        except grpc.aio.AioRpcError as exc:
            if is_compacted(exc):
                return True
            raise store_error(exc, request) from exc
        return False

    async def _range(self, key: str, *, prefix: bool, limit: int, revision: int) -> RangeResult:
        request = _codec.range_request(key, prefix=prefix, limit=limit, revision=revision)
        response = await self._call("Range", request, idempotent=True)
        assert isinstance(response, rpc.RangeResponse)
        # etcd's header tells the latest revision; the result names the one read at.
        return _codec.range_result(response, revision or response.header.revision)

    async def _txn(
        self, compares: list[Compare], success: list[Op], failure: list[Op]
    ) -> TxnResult:
        request = _codec.txn_request(compares, success, failure)
        response = await self._call("Txn", request, idempotent=False)
        assert isinstance(response, rpc.TxnResponse)
        return _codec.txn_result(response)

    async def current_revision(self) -> int:
        request = rpc.RangeRequest(key=_NO_KEY, count_only=True)
        response = await self._call("Range", request, idempotent=True)
        assert isinstance(response, rpc.RangeResponse)
        return int(response.header.revision)

    async def compact(self, revision: int) -> None:
        """Compact etcd's history before ``revision`` (etcd: CompactedError when it
        already is compacted up to or past ``revision``)."""
        await self._call("Compact", rpc.CompactionRequest(revision=revision), idempotent=True)

    # -- leases ----------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> Lease:
        """A new lease. etcd may raise a short ``ttl`` to its minimum (about 2 s)."""
        response = await self._call("LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl), idempotent=False)
        assert isinstance(response, rpc.LeaseGrantResponse)
        if response.error:
            raise StoreError(f"etcd: {response.error}")
        return Lease(response.ID, response.TTL)

    async def lease_keepalive(self, lease_id: int) -> int:
        request = rpc.LeaseKeepAliveRequest(ID=lease_id)
        response = await self._call("LeaseKeepAlive", request, idempotent=True)
        assert isinstance(response, rpc.LeaseKeepAliveResponse)
        if response.TTL <= 0:
            raise LeaseNotFoundError(lease_id)
        return int(response.TTL)

    async def lease_revoke(self, lease_id: int) -> None:
        with contextlib.suppress(LeaseNotFoundError):
            await self._call("LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease_id), idempotent=True)

    # -- watch -----------------------------------------------------------------------

    async def _watch(self, prefix: str, start_revision: int) -> AsyncGenerator[list[Event], None]:
        """One watch stream on the current member, with previous values.

        Raises:
            CompactedError: ``start_revision`` is compacted (at once, or later if the
                watch falls that far behind).
            UnavailableError: the stream broke; the member is marked failed.
        """
        create = rpc.WatchCreateRequest(
            key=_codec.encode_key(prefix),
            range_end=_codec.range_end(prefix),
            start_revision=start_revision,
            prev_kv=True,
        )
        endpoint = self._endpoints.current()
        call = endpoint.watch(metadata=_REQUIRE_LEADER)
        try:
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise UnavailableError(f"etcd at {endpoint.address} ended the watch stream")
                if response.compact_revision:
                    raise CompactedError(start_revision, response.compact_revision)
                if response.canceled:
                    reason = f"etcd at {endpoint.address} canceled the watch: "
                    reason += response.cancel_reason
                    if not is_no_leader(response.cancel_reason):
                        raise StoreError(reason)
                    self._endpoints.failed(endpoint)
                    raise UnavailableError(reason)
                for events in _codec.events_by_revision(response.events):
                    yield events
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNAVAILABLE_CODES:
                self._endpoints.failed(endpoint)
            raise store_error(exc, create) from exc
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._endpoints.close()


__all__ = ["EtcdStore"]
