"""What etcd's gRPC status codes and messages mean for the store's errors.

etcd reports its errors as a gRPC status with a fixed message (``etcdserver: ...``,
see etcd's ``api/v3rpc/rpctypes``); the message is the only way to tell, for
example, a compacted revision from a future one (both are OUT_OF_RANGE).
"""

from __future__ import annotations

import grpc
from aetcd import rpc
from google.protobuf.message import Message

from astra.store._errors import (
    LeaseNotFoundError,
    LimitError,
    StoreError,
    TooManyOpsError,
    UnavailableError,
    ValueTooLargeError,
)
from astra.store._types import MAX_REQUEST_BYTES, MAX_TXN_OPS

#: Codes after which another endpoint, or the same one later, may succeed.
UNAVAILABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def never_sent(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the call failed before reaching etcd, so even a write may be retried."""
    details = exc.details() or ""
    return exc.code() is grpc.StatusCode.UNAVAILABLE and "failed to connect" in details


def is_compacted(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() is grpc.StatusCode.OUT_OF_RANGE and "compacted" in (exc.details() or "")


def is_no_leader(reason: str) -> bool:
    """Whether etcd gave up on a request because its member has no leader (transient)."""
    return "no leader" in reason


def store_error(exc: grpc.aio.AioRpcError, request: Message) -> StoreError:
    """The store error for a failed call; ``request`` gives what the message leaves out.

    Compacted revisions are not handled here: their error needs a further call.
    """
    code, details = exc.code(), exc.details() or ""
    if code in UNAVAILABLE_CODES or is_no_leader(details):
        return UnavailableError(f"etcd: {details}")
    if "too many operations" in details:
        assert isinstance(request, rpc.TxnRequest)
        ops = max(len(request.compare), len(request.success), len(request.failure))
        return TooManyOpsError(ops, MAX_TXN_OPS)
    if "request is too large" in details or "larger than max" in details:
        return ValueTooLargeError(request.ByteSize(), MAX_REQUEST_BYTES)
    if "duplicate key" in details:
        return LimitError(f"etcd refuses a transaction branch that writes a key twice ({details})")
    if code is grpc.StatusCode.NOT_FOUND and "lease not found" in details:
        return LeaseNotFoundError(_lease_of(request))
    return StoreError(f"etcd: {code.name}: {details}")


def _lease_of(request: Message) -> int:
    if isinstance(request, rpc.TxnRequest):
        leases = (op.request_put.lease for op in (*request.success, *request.failure))
        return next((lease for lease in leases if lease), 0)
    return int(getattr(request, "ID", 0))
