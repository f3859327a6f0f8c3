"""The reconcile stage: a diff that takes any set of replicas to the spec in one step."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from astra.records import Quantity, ReplicaPhase, ReplicaRecord, ReplicaRole
from scheduling import AppSpec, Diff, diff
from tests.scheduling.fleets import spec

LOST_NODES = frozenset({"dead"})
#: What the replicas of the specs below run (all of them: the count is not part of it).
TEMPLATE = spec("a", 1).template


def is_lost(node_id: str) -> bool:
    return node_id in LOST_NODES


def record(
    replica_id: str,
    cluster: str,
    role: ReplicaRole,
    node_id: str = "n1",
    *,
    phase: ReplicaPhase = ReplicaPhase.PENDING,
    template: str = TEMPLATE,
    retire_time: float = 0.0,
) -> ReplicaRecord:
    return ReplicaRecord(
        "a",
        replica_id,
        node_id,
        ray_cluster=cluster,
        role=role.value,
        resources=Quantity(1, 1, 0),
        phase=phase.value,
        template=template,
        retire_time=retire_time,
    )


def placed(changes: Diff) -> list[ReplicaRecord]:
    """The app's replicas once ``changes`` are done."""
    return changes.keep + [
        record(slot.replica_id, slot.ray_cluster, slot.role) for slot in changes.place
    ]


specs = st.builds(
    lambda replicas, clusters, workers: spec(
        "a", replicas, ray_clusters=clusters, workers_per_cluster=workers
    ),
    st.integers(0, 30),
    st.integers(1, 4),
    st.sampled_from((0, 0, 1, 4)),
)


@st.composite
def replica_sets(draw: st.DrawFn) -> list[ReplicaRecord]:
    """Whatever may be in the store: clusters with or without heads, on lost nodes or not."""
    records = []
    for cluster in draw(
        st.lists(st.sampled_from(["c0", "c1", "c2", "c5", "x"]), unique=True, max_size=4)
    ):
        for ordinal in draw(st.lists(st.integers(0, 12), unique=True, max_size=8)):
            role = ReplicaRole.HEAD if ordinal == 0 else ReplicaRole.WORKER
            records.append(
                record(
                    f"{cluster}-{ordinal}",
                    cluster,
                    role,
                    draw(st.sampled_from(["n1", "n2", "dead"])),
                )
            )
    return records


def check_shape(app: AppSpec, replicas: list[ReplicaRecord]) -> None:
    """Replicas form the spec's clusters: one head each, the sizes asked for, unique ids."""
    assert len({r.replica_id for r in replicas}) == len(replicas)
    clusters: dict[str, list[ReplicaRecord]] = {}
    for replica in replicas:
        clusters.setdefault(replica.ray_cluster, []).append(replica)
    assert sorted(map(len, clusters.values()), reverse=True) == app.cluster_sizes()
    for members in clusters.values():
        assert Counter(member.role for member in members)[ReplicaRole.HEAD] == 1


@given(specs, replica_sets())
def test_one_diff_converges_any_state_to_the_spec(
    app: AppSpec, actual: list[ReplicaRecord]
) -> None:
    changes = diff(app, actual, is_lost)
    ids = lambda records: sorted(r.replica_id for r in records)
    assert not changes.retire and not changes.old  # none serves, none is of another template
    assert ids(changes.keep + changes.remove) == ids(actual)  # a partition of what exists
    assert all(r.node_id == "dead" for r in changes.lost)
    assert {r.replica_id for r in changes.lost} <= {r.replica_id for r in changes.remove}
    assert not any(r.node_id == "dead" for r in changes.keep)
    roles = [slot.role for slot in changes.place]
    assert roles == sorted(roles, key=lambda role: role != ReplicaRole.HEAD)  # heads first
    assert not {slot.replica_id for slot in changes.place} & {
        r.replica_id for r in actual if r.ray_cluster
    }
    after = placed(changes)
    check_shape(app, after)
    again = diff(app, after, is_lost)
    assert not again.place and not again.remove


def test_scaling_down_removes_the_newest_workers_and_keeps_heads() -> None:
    actual = [
        record("c0-0", "c0", ReplicaRole.HEAD),
        *(record(f"c0-{i}", "c0", ReplicaRole.WORKER) for i in range(1, 5)),
    ]
    changes = diff(spec("a", 2), actual, is_lost)
    assert [r.replica_id for r in changes.keep] == ["c0-0", "c0-1"]
    assert sorted(r.replica_id for r in changes.remove) == ["c0-2", "c0-3", "c0-4"]


def test_a_lost_worker_is_replaced_in_its_cluster_under_a_new_id() -> None:
    actual = [
        record("c0-0", "c0", ReplicaRole.HEAD),
        record("c0-1", "c0", ReplicaRole.WORKER, "dead"),
    ]
    changes = diff(spec("a", 2), actual, is_lost)
    assert [r.replica_id for r in changes.lost] == ["c0-1"]
    assert [(s.replica_id, s.ray_cluster, s.role) for s in changes.place] == [
        ("c0-2", "c0", ReplicaRole.WORKER)
    ]


def test_a_lost_head_brings_up_a_replacement_cluster() -> None:
    actual = [
        record("c0-0", "c0", ReplicaRole.HEAD, "dead"),
        record("c0-1", "c0", ReplicaRole.WORKER),
    ]
    changes = diff(spec("a", 2), actual, is_lost)
    assert sorted(r.replica_id for r in changes.remove) == ["c0-0", "c0-1"]
    assert [(s.replica_id, s.ray_cluster, s.role) for s in changes.place] == [
        ("c1-0", "c1", ReplicaRole.HEAD),
        ("c1-1", "c1", ReplicaRole.WORKER),
    ]


def test_zero_replicas_removes_everything() -> None:
    actual = [
        record("c0-0", "c0", ReplicaRole.HEAD),
        record("c1-0", "c1", ReplicaRole.HEAD, "dead"),
    ]
    changes = diff(spec("a", 0), actual, is_lost)
    assert not changes.keep and not changes.place
    assert sorted(r.replica_id for r in changes.remove) == ["c0-0", "c1-0"]
