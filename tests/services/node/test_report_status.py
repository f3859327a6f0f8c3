"""ReportReplicaStatus: validation, the optimistic write, and replicas to stop."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from astra import keys
from astra._gen.astra.v1 import node_service_pb2 as pb
from astra._gen.astra.v1 import node_service_pb2_grpc, replica_pb2
from astra.records import ReplicaRecord
from astra.store import Compare, Put, Store
from services.node import MAX_REPORTS
from tests.services.node.placement import new_replica, place, stored

Stub = node_service_pb2_grpc.NodeServiceStub
READY, DRAINING, DRAINED = (
    replica_pb2.REPLICA_PHASE_READY,
    replica_pb2.REPLICA_PHASE_DRAINING,
    replica_pb2.REPLICA_PHASE_DRAINED,
)


def request(node_id: str, *reports: pb.ReplicaStatusReport) -> pb.ReportReplicaStatusRequest:
    return pb.ReportReplicaStatusRequest(node=f"nodes/{node_id}", reports=reports)


async def rejected(stub: Stub, message: pb.ReportReplicaStatusRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ReportReplicaStatus(message)
    return raised.value


async def test_ready_writes_phase_endpoint_and_provider(
    stub: Stub, store: Store, node_id: str
) -> None:
    head, worker = new_replica(node_id), new_replica(node_id)
    await place(store, node_id, [head, worker])

    response = await stub.ReportReplicaStatus(
        request(
            node_id,
            pb.ReplicaStatusReport(
                replica=head.name,
                phase=READY,
                endpoint="127.0.0.1:9001",
                execution_provider="CPUExecutionProvider",
                ray_head_address="127.0.0.1:6379",
            ),
            pb.ReplicaStatusReport(replica=worker.name, phase=replica_pb2.REPLICA_PHASE_STARTING),
        )
    )

    assert not response.removed_replicas
    written = await stored(store, head)
    assert (written.phase, written.endpoint, written.execution_provider) == (
        "READY",
        "127.0.0.1:9001",
        "CPUExecutionProvider",
    )
    assert written.ray_head_address == "127.0.0.1:6379" and written.update_time > 0
    assert written.models == head.models  # the placement is untouched
    assert (await stored(store, worker)).phase == "STARTING"


async def test_failed_keeps_its_reason_and_the_head_address_survives(
    stub: Stub, store: Store, node_id: str
) -> None:
    replica = new_replica(node_id)
    replica.ray_head_address = "10.1.1.1:6379"  # set by the scheduler for a worker
    await place(store, node_id, [replica])
    await stub.ReportReplicaStatus(
        request(
            node_id,
            pb.ReplicaStatusReport(
                replica=replica.name,
                phase=replica_pb2.REPLICA_PHASE_FAILED,
                message="sha256 mismatch",
            ),
        )
    )
    written = await stored(store, replica)
    assert (written.phase, written.message, written.ray_head_address) == (
        "FAILED",
        "sha256 mismatch",
        "10.1.1.1:6379",
    )


async def test_an_unchanged_status_is_not_written_again(
    stub: Stub, store: Store, node_id: str
) -> None:
    replica = new_replica(node_id)
    await place(store, node_id, [replica])
    report = request(
        node_id,
        pb.ReplicaStatusReport(replica=replica.name, phase=READY, endpoint="127.0.0.1:9002"),
    )
    await stub.ReportReplicaStatus(report)
    key = keys.replica(replica.app_id, replica.replica_id)
    before = await store.get(key)
    await stub.ReportReplicaStatus(report)
    after = await store.get(key)
    assert before is not None and after is not None and after.mod_revision == before.mod_revision


async def test_unknown_replica_is_not_found_and_nothing_is_written(
    stub: Stub, store: Store, node_id: str
) -> None:
    known = new_replica(node_id)
    await place(store, node_id, [known])
    error = await rejected(
        stub,
        request(
            node_id,
            pb.ReplicaStatusReport(replica=known.name, phase=READY, endpoint="127.0.0.1:9003"),
            pb.ReplicaStatusReport(replica="apps/nope/replicas/r0", phase=DRAINED),
        ),
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND and "apps/nope/replicas/r0" in (
        error.details() or ""
    )
    assert (await stored(store, known)).phase == "PENDING"


async def test_a_replica_of_another_node_is_a_failed_precondition(
    stub: Stub, store: Store, node_id: str
) -> None:
    theirs = new_replica("other-" + node_id)
    await place(store, "other-" + node_id, [theirs])
    error = await rejected(
        stub, request(node_id, pb.ReplicaStatusReport(replica=theirs.name, phase=DRAINING))
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f"nodes/other-{node_id}" in (error.details() or "")
    assert (await stored(store, theirs)).phase == "PENDING"


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            pb.ReplicaStatusReport(
                replica="apps/a/replicas/r", phase=replica_pb2.REPLICA_PHASE_PENDING
            ),
            "reports[0].phase: must be STARTING",
        ),
        (
            pb.ReplicaStatusReport(replica="apps/a/replicas/r", phase=99),
            "reports[0].phase: must be STARTING",
        ),
        (
            pb.ReplicaStatusReport(replica="apps/a/replicas/r", phase=READY),
            "reports[0].endpoint: must be host:port",
        ),
        (
            pb.ReplicaStatusReport(replica="apps/a/replicas/r", phase=READY, endpoint="nohost"),
            "reports[0].endpoint",
        ),
        (
            pb.ReplicaStatusReport(
                replica="apps/a/replicas/r", phase=replica_pb2.REPLICA_PHASE_FAILED
            ),
            "reports[0].message: is required",
        ),
        (
            pb.ReplicaStatusReport(replica="apps/a/r", phase=DRAINED),
            "reports[0].replica: must be apps/{app_id}/replicas/{replica_id}",
        ),
    ],
)
async def test_bad_reports_are_invalid_arguments(
    stub: Stub, node_id: str, report: pb.ReplicaStatusReport, expected: str
) -> None:
    error = await rejected(stub, request(node_id, report))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in (error.details() or "")


async def test_request_level_limits(stub: Stub, node_id: str) -> None:
    empty = await rejected(stub, pb.ReportReplicaStatusRequest(node="n1"))
    assert "node: must be nodes/{node_id}" in (empty.details() or "")
    assert "reports: must hold at least one report" in (empty.details() or "")
    report = pb.ReplicaStatusReport(replica="apps/a/replicas/r", phase=DRAINED)
    twice = await rejected(stub, request(node_id, report, report))
    assert "reports[1].replica: is reported twice" in (twice.details() or "")
    many = [
        pb.ReplicaStatusReport(replica=f"apps/a/replicas/r{i}", phase=DRAINED)
        for i in range(MAX_REPORTS + 1)
    ]
    too_many = await rejected(stub, request(node_id, *many))
    assert f"at most {MAX_REPORTS} reports" in (too_many.details() or "")


async def test_replicas_taken_off_the_node_are_answered_as_removed(
    stub: Stub, store: Store, node_id: str
) -> None:
    leaving, staying = new_replica(node_id), new_replica(node_id)
    await place(store, node_id, [leaving, staying])
    # The scheduler takes it off the node but keeps the record until the agent stops it.
    await place(store, node_id, remove=[leaving], keep_removed=True)

    response = await stub.ReportReplicaStatus(
        request(
            node_id,
            pb.ReplicaStatusReport(replica=leaving.name, phase=DRAINED),
            pb.ReplicaStatusReport(replica=staying.name, phase=READY, endpoint="127.0.0.1:9004"),
        )
    )
    assert list(response.removed_replicas) == [leaving.name]
    assert (await stored(store, leaving)).phase == "DRAINED"


async def test_status_writes_never_lose_a_concurrent_placement_change(
    stub: Stub, store: Store, node_id: str
) -> None:
    """A scheduler bumps the replica's generation with compare-and-swap while the agent
    reports phases; every one of both writers' changes must survive."""
    replica = new_replica(node_id)
    await place(store, node_id, [replica])
    key = keys.replica(replica.app_id, replica.replica_id)
    rounds = 40

    async def scheduler() -> None:
        for _ in range(rounds):
            while True:
                kv = await store.get(key)
                assert kv is not None
                record = ReplicaRecord.from_bytes(kv.value)
                record.app_generation += 1
                result = await store.txn(
                    [Compare.mod_revision(key) == kv.mod_revision], [Put(key, record.to_bytes())]
                )
                if result.succeeded:
                    break

    async def agent() -> None:
        for index in range(rounds):
            phase, endpoint = (READY, f"127.0.0.1:{9100 + index}") if index % 2 else (DRAINING, "")
            await stub.ReportReplicaStatus(
                request(
                    node_id,
                    pb.ReplicaStatusReport(replica=replica.name, phase=phase, endpoint=endpoint),
                )
            )

    await asyncio.gather(scheduler(), agent())
    final = await stored(store, replica)
    assert final.app_generation == 1 + rounds
    assert (final.phase, final.endpoint) == ("READY", f"127.0.0.1:{9100 + rounds - 1}")
