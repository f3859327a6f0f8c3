"""Placing replicas the way the schedulers do: replica records and the node's
allocation in one transaction that compares the allocation's ``mod_revision``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from astra import keys
from astra.records import AllocRecord, Quantity, ReplicaRecord, ReplicaRole
from astra.store import Compare, Delete, Put, Store


def new_replica(
    node_id: str, *, app_id: str | None = None, replica_id: str | None = None
) -> ReplicaRecord:
    """A replica record for ``node_id`` with one model, under a fresh app unless named."""
    return ReplicaRecord(
        app_id=app_id or f"app-{uuid.uuid4().hex[:8]}",
        replica_id=replica_id or uuid.uuid4().hex[:8],
        node_id=node_id,
        ray_cluster="c0",
        role=ReplicaRole.WORKER.value,
        resources=Quantity(500, 1 << 30, 0),
        models=[
            {
                "name": "resnet",
                "version": "1",
                "uri": "/models/resnet.onnx",
                "sha256": "ab" * 32,
                "format": "ONNX",
            }
        ],
        app_generation=1,
    )


async def place(
    store: Store,
    node_id: str,
    records: Iterable[ReplicaRecord] = (),
    *,
    remove: Iterable[ReplicaRecord] = (),
    keep_removed: bool = False,
) -> int:
    """Put ``records`` on ``node_id`` and take ``remove`` off it, deleting their records
    unless ``keep_removed``; returns the revision of the commit."""
    alloc_key = keys.alloc(node_id)
    current = await store.get(alloc_key)
    alloc = AllocRecord.from_bytes(current.value) if current else AllocRecord(node_id)
    ops: list[Put | Delete] = []
    for record in records:
        resources = record.resources
        alloc.replicas[record.name] = [resources.cpu_millis, resources.memory_bytes, resources.gpus]
        ops.append(Put(keys.replica(record.app_id, record.replica_id), record.to_bytes()))
    for record in remove:
        del alloc.replicas[record.name]
        if not keep_removed:
            ops.append(Delete(keys.replica(record.app_id, record.replica_id)))
    ops.append(Put(alloc_key, alloc.to_bytes()))
    result = await store.txn(
        [Compare.mod_revision(alloc_key) == (current.mod_revision if current else 0)], ops
    )
    assert result.succeeded, "the allocation changed under the test"
    return result.revision


async def update(store: Store, record: ReplicaRecord) -> int:
    """Rewrite ``record`` as it is now (a placement change, e.g. its head's address)."""
    return (
        await store.put(keys.replica(record.app_id, record.replica_id), record.to_bytes())
    ).revision


async def stored(store: Store, record: ReplicaRecord) -> ReplicaRecord:
    """``record`` as the store holds it now."""
    kv = await store.get(keys.replica(record.app_id, record.replica_id))
    assert kv is not None, f"{record.name} is not stored"
    return ReplicaRecord.from_bytes(kv.value)
