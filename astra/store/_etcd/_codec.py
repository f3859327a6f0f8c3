"""Translation between the store's values and etcd's protobuf messages.

Keys travel as UTF-8; ``surrogateescape`` keeps keys that are not valid UTF-8 (such
as the ends of prefix ranges) round-tripping byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from aetcd import rpc
from aetcd.rpc import kv_pb2

from astra.store._base import prefix_end
from astra.store._types import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
)

_RESULTS = {
    CompareOp.EQUAL: rpc.Compare.EQUAL,
    CompareOp.NOT_EQUAL: rpc.Compare.NOT_EQUAL,
    CompareOp.LESS: rpc.Compare.LESS,
    CompareOp.GREATER: rpc.Compare.GREATER,
}
#: The protobuf target and the name of the field that holds the operand.
_TARGETS = {
    CompareTarget.MOD: (rpc.Compare.MOD, "mod_revision"),
    CompareTarget.CREATE: (rpc.Compare.CREATE, "create_revision"),
    CompareTarget.VERSION: (rpc.Compare.VERSION, "version"),
    CompareTarget.VALUE: (rpc.Compare.VALUE, "value"),
}


def encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def range_end(prefix: str) -> bytes:
    """etcd's ``range_end`` for every key starting with ``prefix``."""
    return encode_key(prefix_end(prefix))


def key_value(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(
        kv.key.decode("utf-8", "surrogateescape"),
        kv.value,
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease,
    )


def range_request(key: str, *, prefix: bool, limit: int = 0, revision: int = 0) -> rpc.RangeRequest:
    if prefix:
        return rpc.RangeRequest(key=encode_key(key), range_end=range_end(key), limit=limit, revision=revision)
    return rpc.RangeRequest(key=encode_key(key), revision=revision)


def range_result(response: rpc.RangeResponse, revision: int) -> RangeResult:
    return RangeResult([key_value(kv) for kv in response.kvs], revision, response.more)


def _compare(compare: Compare) -> rpc.Compare:
    target, field = _TARGETS[compare.target]
    message = rpc.Compare(key=encode_key(compare.key), target=target, result=_RESULTS[compare.op])
    setattr(message, field, compare.operand)
    return message


def _request_op(op: Op) -> rpc.RequestOp:
    if isinstance(op, Put):
        return rpc.RequestOp(
            request_put=rpc.PutRequest(key=encode_key(op.key), value=op.value, lease=op.lease, prev_kv=True)
        )
    if isinstance(op, Delete):
        request = rpc.DeleteRangeRequest(key=encode_key(op.key), prev_kv=True)
        if op.prefix:
            request.range_end = range_end(op.key)
        return rpc.RequestOp(request_delete_range=request)
    return rpc.RequestOp(request_range=range_request(op.key, prefix=op.prefix, limit=op.limit))


def txn_request(compares: Iterable[Compare], success: Iterable[Op], failure: Iterable[Op]) -> rpc.TxnRequest:
    """A transaction whose writes all ask for the previous values."""
    return rpc.TxnRequest(
        compare=[_compare(compare) for compare in compares],
        success=[_request_op(op) for op in success],
        failure=[_request_op(op) for op in failure],
    )


def _op_result(response: rpc.ResponseOp, revision: int) -> OpResult:
    kind = response.WhichOneof("response")
    if kind == "response_put":
        put = response.response_put
        return PutResult(revision, key_value(put.prev_kv) if put.HasField("prev_kv") else None)
    if kind == "response_delete_range":
        deleted = response.response_delete_range
        return DeleteResult(revision, deleted.deleted, [key_value(kv) for kv in deleted.prev_kvs])
    return range_result(response.response_range, revision)


def txn_result(response: rpc.TxnResponse) -> TxnResult:
    """The result; every op reports the transaction's revision (all apply at it)."""
    revision = response.header.revision
    return TxnResult(response.succeeded, revision, [_op_result(op, revision) for op in response.responses])


def _event(event: kv_pb2.Event) -> Event:
    return Event(
        EventType.DELETE if event.type == kv_pb2.Event.DELETE else EventType.PUT,
        key_value(event.kv),
        key_value(event.prev_kv) if event.HasField("prev_kv") else None,
    )


def events_by_revision(events: Iterable[kv_pb2.Event]) -> Iterator[list[Event]]:
    """Group a watch response's events, in order, into one list per revision."""
    group: list[Event] = []
    for pb_event in events:
        event = _event(pb_event)
        if group and group[-1].kv.mod_revision != event.kv.mod_revision:
            yield group
            group = []
        group.append(event)
    if group:
        yield group


__all__ = [
    "encode_key",
    "events_by_revision",
    "key_value",
    "range_end",
    "range_request",
    "range_result",
    "txn_request",
    "txn_result",
]
