"""Replica status reports: their validation, and the optimistic write of each replica's status."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from astra import keys
from astra._gen.astra.v1 import node_service_pb2
from astra.errors import ConflictError, FailedPreconditionError, NotFoundError
from astra.messages import replica_phase_from_proto
from astra.records import AllocRecord, ReplicaPhase, ReplicaRecord
from astra.server import Violations
from astra.store import MAX_TXN_OPS, Compare, Get, KeyValue, Put, RangeResult, Store
from services.node._names import node_id, replica_key

#: The phases an agent reports; PENDING is the schedulers' to set.
REPORTABLE_PHASES = (
    ReplicaPhase.STARTING,
    ReplicaPhase.READY,
    ReplicaPhase.DRAINING,
    ReplicaPhase.DRAINED,
    ReplicaPhase.FAILED,
)
#: Reports per request: one transaction reads the node's allocation and every replica.
MAX_REPORTS = MAX_TXN_OPS - 1
#: Lost races before a report gives up with ABORTED.
_ATTEMPTS = 16


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One validated report: what to write into the replica stored at ``key``."""

    name: str
    key: str
    phase: ReplicaPhase
    endpoint: str
    message: str
    execution_provider: str
    ray_head_address: str

    def apply(self, record: ReplicaRecord, now: float) -> bool:
        """Write this status into ``record``; returns whether anything changed.

        The report is the replica's whole status, except that an empty
        ``ray_head_address`` keeps the stored one (a worker's comes from its head).
        """
        status = (self.phase.value, self.endpoint, self.message, self.execution_provider)
        head = self.ray_head_address or record.ray_head_address
        if status == (
            record.phase,
            record.endpoint,
            record.message,
            record.execution_provider,
        ) and (head == record.ray_head_address):
            return False
        record.phase, record.endpoint, record.message, record.execution_provider = status
        record.ray_head_address = head
        record.update_time = now
        return True


def parse_reports(
    request: node_service_pb2.ReportReplicaStatusRequest,
) -> tuple[str, list[StatusUpdate]]:
    """The reporting node's id and its validated reports.

    Raises:
        InvalidArgumentError: naming every bad field.
    """
    violations = Violations()
    node = node_id(request.node)
    violations.check(node is not None, "node", "must be nodes/{node_id}")
    violations.check(bool(request.reports), "reports", "must hold at least one report")
    violations.check(
        len(request.reports) <= MAX_REPORTS, "reports", f"must hold at most {MAX_REPORTS} reports"
    )
    updates: list[StatusUpdate] = []
    seen: set[str] = set()
    for index, report in enumerate(request.reports):
        at = violations.at("reports").at(index)
        key = replica_key(report.replica)
        at.check(key is not None, "replica", "must be apps/{app_id}/replicas/{replica_id}")
        at.check(report.replica not in seen, "replica", "is reported twice")
        seen.add(report.replica)
        phase = replica_phase_from_proto(report.phase)
        if not at.check(
            phase in REPORTABLE_PHASES,
            "phase",
            "must be STARTING, READY, DRAINING, DRAINED or FAILED",
        ):
            continue
        if phase is ReplicaPhase.READY:
            at.check(
                _is_address(report.endpoint), "endpoint", "must be host:port for a READY replica"
            )
        if phase is ReplicaPhase.FAILED:
            at.require(report.message, "message")
        if report.ray_head_address:
            at.check(_is_address(report.ray_head_address), "ray_head_address", "must be host:port")
        if key is not None and phase is not None:
            updates.append(
                StatusUpdate(
                    name=report.replica,
                    key=key,
                    phase=phase,
                    endpoint=report.endpoint,
                    message=report.message,
                    execution_provider=report.execution_provider,
                    ray_head_address=report.ray_head_address,
                )
            )
    violations.raise_if_any()
    assert node is not None
    return node, updates


async def write_statuses(store: Store, node: str, updates: Sequence[StatusUpdate]) -> list[str]:
    """Write the reported statuses of replicas of ``node`` in one transaction that
    compares each replica's ``mod_revision``; a lost race re-reads only the replicas
    (in the same round trip) and tries again. Unchanged statuses are not written.

    Returns:
        The reported replicas that ``node``'s allocation no longer names: stop them.

    Raises:
        NotFoundError: a replica does not exist.
        FailedPreconditionError: a replica is placed on another node.
        ConflictError: the writes lost too many races in a row.
    """
    read = await store.txn((), [Get(keys.alloc(node)), *(Get(update.key) for update in updates)])
    alloc, *current = (_only(result) for result in read.results)
    assigned = AllocRecord.from_bytes(alloc.value).replicas if alloc is not None else {}
    for _ in range(_ATTEMPTS):
        now = time.time()
        writes: list[tuple[KeyValue, ReplicaRecord]] = []
        for update, kv in zip(updates, current, strict=True):
            record = _placed_record(update.name, kv, node)
            if update.apply(record, now):
                assert kv is not None
                writes.append((kv, record))
        if not writes:
            break
        result = await store.txn(
            [Compare.mod_revision(kv.key) == kv.mod_revision for kv, _ in writes],
            [Put(kv.key, record.to_bytes()) for kv, record in writes],
            [Get(kv.key) for kv, _ in writes],
        )
        if result.succeeded:
            break
        fresh = {
            kv.key: _only(found) for (kv, _), found in zip(writes, result.results, strict=True)
        }
        current = [fresh.get(update.key, kv) for update, kv in zip(updates, current, strict=True)]
    else:
        raise ConflictError(
            f"replica status of nodes/{node} lost {_ATTEMPTS} write races in a row; retry"
        )
    return [update.name for update in updates if update.name not in assigned]


def _placed_record(name: str, kv: KeyValue | None, node: str) -> ReplicaRecord:
    if kv is None:
        raise NotFoundError(f"replica {name} not found")
    record = ReplicaRecord.from_bytes(kv.value)
    if record.node_id != node:
        raise FailedPreconditionError(
            f"replica {name} is placed on nodes/{record.node_id}, not nodes/{node}"
        )
    return record


def _only(result: object) -> KeyValue | None:
    assert isinstance(result, RangeResult)
    return result.kvs[0] if result.kvs else None


def _is_address(value: str) -> bool:
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) <= 65535
