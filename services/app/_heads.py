"""Workers learn where their Ray head is.

A worker's record is placed before its cluster's head runs, so it has no
``ray_head_address``; the head's agent reports that address for the head's record
only (through the Node service). The app's owner links them, level-triggered: on each
reconcile it copies every head's address into the records of its cluster's workers
that do not hold it yet, compared on their ``mod_revision`` so that a status written
meanwhile is never lost. The workers' agents get the changed records on their
assignment streams and join the head. A worker placed later in the same cluster (after
a lost worker) is linked the same way; a replacement cluster has a new id and its own
head.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from astra.records import ReplicaRecord, ReplicaRole
from astra.store import MAX_TXN_OPS, Compare, KeyValue, Put, Store

#: A replica record as read from the store: its key-value (for the compare) and record.
Stored = tuple[KeyValue, ReplicaRecord]


def unlinked(replicas: Sequence[Stored]) -> list[tuple[Stored, str]]:
    """The workers whose ``ray_head_address`` differs from their head's, with the
    head's address; clusters whose head has not reported one are left alone. O(n)."""
    heads = {
        record.ray_cluster: record.ray_head_address
        for _, record in replicas
        if record.role == ReplicaRole.HEAD.value and record.ray_head_address
    }
    return [
        ((kv, record), heads[record.ray_cluster])
        for kv, record in replicas
        if record.role == ReplicaRole.WORKER.value
        and record.ray_cluster in heads
        and record.ray_head_address != heads[record.ray_cluster]
    ]


async def link_workers(store: Store, replicas: Sequence[Stored]) -> bool:
    """Write their head's address into the workers of ``replicas`` that lack it.

    Returns:
        Whether every such worker was written; ``False`` when a record changed since it
        was read (its change names the app again, and the next reconcile links it).

    Raises:
        UnavailableError: the store could not be reached.
    """
    todo = unlinked(replicas)
    done = True
    for start in range(0, len(todo), MAX_TXN_OPS):
        compares, puts = [], []
        for (kv, record), address in todo[start : start + MAX_TXN_OPS]:
            linked = dataclasses.replace(record, ray_head_address=address, update_time=time.time())
            compares.append(Compare.mod_revision(kv.key) == kv.mod_revision)
            puts.append(Put(kv.key, linked.to_bytes()))
        result = await store.txn(compares, puts, [])
        done = done and result.succeeded
    return done


__all__ = ["Stored", "link_workers", "unlinked"]
