"""Rollouts through the reconcile stage: a step-by-step model of the agents (a placed
replica is READY one step later, a retired one DRAINED) driven by :func:`diff`, with
the budgets checked at every step."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from astra.records import Quantity, ReplicaPhase, ReplicaRecord, ReplicaRole
from scheduling import AppSpec, diff
from scheduling._reconcile import RETIRE_TIMEOUT, is_ready
from tests.scheduling.fleets import spec

#: Steps a rollout may take: every step makes progress, so far fewer are needed.
MAX_STEPS = 400


def never_lost(node_id: str) -> bool:
    return False


def running(app: AppSpec, ready: bool = True) -> list[ReplicaRecord]:
    """The replicas of ``app`` once converged (READY unless ``ready`` is false)."""
    records: list[ReplicaRecord] = []
    phase = ReplicaPhase.READY if ready else ReplicaPhase.PENDING
    for index, size in enumerate(app.cluster_sizes()):
        for ordinal in range(size):
            role = ReplicaRole.HEAD if ordinal == 0 else ReplicaRole.WORKER
            records.append(
                ReplicaRecord(
                    app.app_id,
                    f"c{index}-{ordinal}",
                    "n1",
                    ray_cluster=f"c{index}",
                    role=role.value,
                    resources=app.resources,
                    models=[dict(model) for model in app.models],
                    phase=phase.value,
                    template=app.template,
                )
            )
    return records


class Fleet:
    """The app's replica records, moved on by agents that take one step to start or drain."""

    def __init__(self, records: list[ReplicaRecord]) -> None:
        self.records = {record.replica_id: record for record in records}
        self.peak = len(records)
        self.min_ready = sum(map(is_ready, records))
        self.now = 1000.0

    def step(self, app: AppSpec, *, fail: bool = False) -> bool:
        """One reconcile of ``app`` and one step of the agents; whether anything changed.
        With ``fail``, replicas of ``app``'s template fail instead of getting ready."""
        for record in self.records.values():  # the agents act on what they were told
            if record.retire_time and record.phase == ReplicaPhase.READY:
                record.phase = ReplicaPhase.DRAINED.value
            elif record.phase == ReplicaPhase.PENDING:
                failing = fail and record.template == app.template
                record.phase = (ReplicaPhase.FAILED if failing else ReplicaPhase.READY).value
        changes = diff(app, list(self.records.values()), never_lost, self.now)
        for record in changes.remove:
            del self.records[record.replica_id]
        for record in changes.retire:
            record.retire_time = self.now
        for slot in changes.place:
            self.records[slot.replica_id] = ReplicaRecord(
                app.app_id,
                slot.replica_id,
                "n1",
                ray_cluster=slot.ray_cluster,
                role=slot.role.value,
                resources=app.resources,
                template=app.template,
            )
        self.now += 1
        self.peak = max(self.peak, len(self.records))
        self.min_ready = min(self.min_ready, sum(map(is_ready, self.records.values())))
        return bool(changes.remove or changes.retire or changes.place)

    def run(self, app: AppSpec, *, fail: bool = False) -> int:
        """Steps until nothing changes (at most ``MAX_STEPS``)."""
        for steps in range(1, MAX_STEPS):
            if not self.step(app, fail=fail):
                return steps
        raise AssertionError(f"no fixed point after {MAX_STEPS} steps")

    def templates(self) -> set[str]:
        return {record.template for record in self.records.values()}


def version(app: AppSpec, number: int) -> AppSpec:
    model = {"name": "m", "version": str(number), "uri": f"/m{number}.onnx", "sha256": "0" * 64}
    return dataclasses.replace(app, models=(model,))


budgets = st.sampled_from([(1, 0), (2, 0), (0, 1), (1, 1), (3, 2)])
shapes = st.tuples(st.integers(1, 9), st.integers(1, 3), st.sampled_from((0, 0, 1, 3)))


@given(shapes, budgets)
def test_a_rollout_stays_within_its_budgets_and_converges(
    shape: tuple[int, int, int], budget: tuple[int, int]
) -> None:
    replicas, clusters, workers = shape
    surge, unavailable = budget
    before = version(
        spec(
            "a",
            replicas,
            ray_clusters=clusters,
            workers_per_cluster=workers,
            max_surge=surge,
            max_unavailable=unavailable,
        ),
        1,
    )
    after = version(before, 2)
    fleet = Fleet(running(before))
    fleet.run(after)
    assert fleet.templates() == {after.template}
    assert all(is_ready(record) for record in fleet.records.values())
    assert len(fleet.records) == replicas
    assert fleet.peak <= replicas + surge
    assert fleet.min_ready >= replicas - unavailable
    again = diff(after, list(fleet.records.values()), never_lost, fleet.now)
    assert not (again.place or again.remove or again.retire or again.old or again.retiring)


def test_a_full_fleet_rolls_with_no_surge_and_one_unavailable() -> None:
    before = version(spec("a", 4, max_surge=0, max_unavailable=1), 1)
    after = version(before, 2)
    fleet = Fleet(running(before))
    fleet.run(after)
    assert fleet.peak == 4 and fleet.min_ready == 3
    assert fleet.templates() == {after.template}


def test_a_change_that_replicas_do_not_run_replaces_nothing() -> None:
    before = version(spec("a", 3), 1)
    relabelled = dataclasses.replace(before, priority=7, generation=2)
    assert relabelled.template == before.template
    changes = diff(relabelled, running(before), never_lost)
    assert not (changes.place or changes.remove or changes.retire or changes.old)


def test_a_change_mid_rollout_goes_straight_to_the_newest_spec() -> None:
    v1 = version(spec("a", 4, max_surge=1), 1)
    v2, v3 = version(v1, 2), version(v1, 3)
    fleet = Fleet(running(v1))
    fleet.step(v2)
    fleet.step(v2)
    assert fleet.templates() == {v1.template, v2.template}
    fleet.run(v3)
    assert fleet.templates() == {v3.template}
    assert fleet.peak <= 5 and fleet.min_ready >= 4


def test_a_rollout_whose_replicas_fail_stalls_with_the_old_ones_serving() -> None:
    v1 = version(spec("a", 4, max_surge=1), 1)
    v2 = version(v1, 2)
    fleet = Fleet(running(v1))
    fleet.run(v2, fail=True)
    serving = [record for record in fleet.records.values() if is_ready(record)]
    assert len(serving) == 4 and {record.template for record in serving} == {v1.template}
    failed = [r for r in fleet.records.values() if r.phase == ReplicaPhase.FAILED]
    assert len(failed) == 1  # the surge budget holds the failures to one replica
    back = Fleet(list(fleet.records.values()))
    back.run(v1)  # a rollback is a rollout to the old spec
    assert back.templates() == {v1.template} and len(back.records) == 4


def test_a_serving_replica_leaves_by_retiring_and_goes_once_drained() -> None:
    app = spec("a", 1)
    two = running(dataclasses.replace(app, replicas=2))
    changes = diff(app, two, never_lost, now=50.0)
    assert [r.replica_id for r in changes.retire] == ["c0-1"] and not changes.remove
    assert changes.retiring == 1 and changes.recheck == RETIRE_TIMEOUT
    retired = dataclasses.replace(two[1], retire_time=50.0)
    still = diff(app, [two[0], retired], never_lost, now=51.0)
    assert not still.remove and still.retiring == 1
    assert still.recheck == RETIRE_TIMEOUT - 1
    drained = dataclasses.replace(retired, phase=ReplicaPhase.DRAINED.value)
    assert [r.replica_id for r in diff(app, [two[0], drained], never_lost, 52.0).remove] == ["c0-1"]
    late = diff(app, [two[0], retired], never_lost, now=50.0 + RETIRE_TIMEOUT)
    assert [r.replica_id for r in late.remove] == ["c0-1"]


def test_budgets_are_validated() -> None:
    for surge, unavailable in ((0, 0), (-1, 1), (1, -1)):
        try:
            spec("a", 1, max_surge=surge, max_unavailable=unavailable)
        except ValueError as exc:
            assert "max_surge" in str(exc)
        else:
            raise AssertionError(f"accepted max_surge={surge}, max_unavailable={unavailable}")


def test_the_template_covers_models_resources_and_hard_constraints() -> None:
    app = spec("a", 1)
    changed = [
        version(app, 2),
        dataclasses.replace(app, resources=Quantity(1000, 1 << 30, 0)),
        dataclasses.replace(app, accelerators=("h100",)),
        dataclasses.replace(app, node_selector={"pool": "x"}),
        dataclasses.replace(app, anti_affinity=frozenset({"b"})),
    ]
    assert len({app.template, *(other.template for other in changed)}) == len(changed) + 1
    same = [
        dataclasses.replace(app, replicas=5),
        dataclasses.replace(app, priority=3),
        dataclasses.replace(app, ray_clusters=2),
        dataclasses.replace(app, max_surge=2),
    ]
    assert {other.template for other in same} == {app.template}


def test_old_replicas_that_do_not_serve_leave_at_once() -> None:
    v1 = version(spec("a", 2), 1)
    v2 = version(v1, 2)
    changes = diff(v2, running(v1, ready=False), never_lost)
    assert sorted(r.replica_id for r in changes.remove) == ["c0-0", "c0-1"]
    assert [slot.replica_id for slot in changes.place] == ["c1-0", "c1-1"]
