"""Translation between the store's values and etcd's protobuf messages.

Keys travel as UTF-8; ``surrogateescape`` keeps keys that are not valid UTF-8 (such
as the ends of prefix ranges) round-tripping byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

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


def _fill_range(
    request: rpc.RangeRequest, key: str, *, prefix: bool, limit: int, revision: int
) -> None:
    request.key = encode_key(key)
    if prefix:
        request.range_end = range_end(key)
        request.limit = limit
    request.revision = revision


def range_request(key: str, *, prefix: bool, limit: int = 0, revision: int = 0) -> rpc.RangeRequest:
    request = rpc.RangeRequest()
    _fill_range(request, key, prefix=prefix, limit=limit, revision=revision)
    return request


def range_result(response: rpc.RangeResponse, revision: int) -> RangeResult:
    return RangeResult([key_value(kv) for kv in response.kvs], revision, response.more)


def _add_ops(requests: Any, ops: Iterable[Op]) -> None:
    """Append ``ops`` to a repeated RequestOp field, filling messages in place."""
    for op in ops:
        request = requests.add()
        if isinstance(op, Put):
            put = request.request_put
            put.key, put.value, put.lease = encode_key(op.key), op.value, op.lease
            put.prev_kv = True
        elif isinstance(op, Delete):
            delete = request.request_delete_range
            delete.key, delete.prev_kv = encode_key(op.key), True
            if op.prefix:
                delete.range_end = range_end(op.key)
        else:
            _fill_range(request.request_range, op.key, prefix=op.prefix, limit=op.limit, revision=0)


def txn_request(
    compares: Iterable[Compare], success: Iterable[Op], failure: Iterable[Op]
) -> rpc.TxnRequest:
    """A transaction whose writes all ask for the previous values.

    Messages are filled in place: building nested messages and copying them in is
    several times slower, which shows on transactions of many operations.
    """
    request = rpc.TxnRequest()
    add_compare = request.compare.add
    for compare in compares:
        target, field = _TARGETS[compare.target]
        message = add_compare(
            key=encode_key(compare.key), target=target, result=_RESULTS[compare.op]
        )
        setattr(message, field, compare.operand)
    _add_ops(request.success, success)
    _add_ops(request.failure, failure)
    return request


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
    results = [_op_result(op, revision) for op in response.responses]
    return TxnResult(response.succeeded, revision, results)


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
