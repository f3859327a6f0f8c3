"""One app's scheduler: the pipeline's stages composed.

1. reconcile: re-read the app's replicas, diff them against the spec (``_reconcile``);
2. remove what must go (one plan, committed first so its capacity is free);
3. for each replica to place, feasibility and scoring choose a node (``_scoring``),
   whose capacity the plan *holds* in the view; a plan is only started on a view that
   is not far behind the store (:meth:`FleetView.catch_up`);
4. plans of about one transaction each are committed by the planner (``_planner``);
   placements it hands back are chosen again, a few times at most.

Level-triggered: :meth:`AppScheduler.reconcile` acts on the current state only, so an
event (the spec changed, a node died, a race was lost) only has to name the app.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from astra.records import ReplicaRecord, ReplicaRole
from scheduling._feasibility import Reason
from scheduling._model import FleetView, NodeState
from scheduling._plan import Placement, Plan, Removal
from scheduling._planner import Planner, Rejection
from scheduling._reconcile import Slot, diff
from scheduling._scoring import Chooser, Sampling, Unplaceable
from scheduling._spec import AppSpec

#: How often one replica may be chosen again after its placement was handed back.
MAX_ATTEMPTS = 8
#: How many revisions written by others the view may be missing before a plan waits
#: for its feed (at most ``LAG_TIMEOUT`` seconds): see :meth:`FleetView.catch_up`.
MAX_LAG = 8
LAG_TIMEOUT = 0.5


@dataclass(slots=True)
class ReconcileResult:
    """What one :meth:`AppScheduler.reconcile` did, and what is left."""

    app_id: str
    desired: int
    """Replicas the spec asks for."""
    running: int = 0
    """Replicas in the store when the reconcile ended (kept plus placed)."""
    placed: list[Placement] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    unplaceable: dict[str, Unplaceable] = field(default_factory=dict)
    """Replica id -> why no node can take it now."""
    pending: int = 0
    """Changes neither done nor impossible (lost races, a stale read): reconcile again."""
    lost: int = 0
    """Replicas found on lost nodes (removed, and replaced when possible)."""
    retired: list[ReplicaRecord] = field(default_factory=list)
    """Serving replicas taken out of their routes to drain, by this reconcile."""
    old: int = 0
    """Replicas of another template left to replace (a rollout in progress)."""
    retiring: int = 0
    """Retired replicas still draining."""
    recheck: float | None = None
    """Seconds after which to reconcile again with no event (a drain's timeout)."""
    txns: int = 0
    conflicts: int = 0

    @property
    def converged(self) -> bool:
        """Whether the app has exactly what its spec asks for."""
        return (
            self.running == self.desired
            and not self.pending
            and not self.unplaceable
            and not self.old
            and not self.retiring
        )


class AppScheduler:
    """Places and removes one app's replicas; see the module's documentation.

    Args:
        spec: what the app wants; replace it with :meth:`update`.
        view: the fleet, shared with the other schedulers of the process.
        planner: commits plans (shares ``view``).
        sampling: how candidates are sampled.
        rng: randomness of the sampling (seed it for reproducible runs).
    """

    def __init__(
        self,
        spec: AppSpec,
        view: FleetView,
        planner: Planner,
        *,
        sampling: Sampling | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if planner.view is not view:
            raise ValueError("the planner must update the scheduler's view")
        self._spec = spec
        self._view = view
        self._planner = planner
        self._sampling = sampling or Sampling()
        self._rng = rng or random.Random()

    @property
    def spec(self) -> AppSpec:
        return self._spec

    def update(self, spec: AppSpec) -> None:
        """Aim for ``spec`` from the next :meth:`reconcile` on."""
        if spec.app_id != self._spec.app_id:
            raise ValueError(f"spec is for app {spec.app_id!r}, not {self._spec.app_id!r}")
        self._spec = spec

    async def reconcile(self) -> ReconcileResult:
        """Converge the app's replicas to its spec, as far as the fleet allows now.

        Raises:
            UnavailableError: the store could not be reached: reconcile again later.
        """
        return await self._reconcile(self._spec)

    async def delete(self) -> ReconcileResult:
        """Remove every replica of the app at once, freeing all it holds (a deleted app
        stops serving: its replicas are not drained first)."""
        return await self._reconcile(dataclasses.replace(self._spec, replicas=0), drain=False)

    async def _reconcile(self, spec: AppSpec, *, drain: bool = True) -> ReconcileResult:
        actual = await self._planner.read_replicas(spec.app_id)
        now = time.time()
        changes = diff(spec, actual, self._view.is_lost, now)
        if not drain:
            changes.remove.extend(changes.retire)
            changes.retire.clear()
        result = ReconcileResult(
            spec.app_id,
            spec.replicas,
            running=len(changes.keep),
            lost=len(changes.lost),
            old=changes.old,
            retiring=changes.retiring,
            recheck=changes.recheck,
        )
        if changes.retire:
            marked = await self._planner.retire(changes.retire, now)
            result.retired.extend(changes.retire)
            if marked < len(changes.retire):
                result.pending += len(changes.retire) - marked
        if changes.remove:
            await self._remove(changes.remove, result)
        if changes.place:
            await self._place(spec, changes.place, changes.keep, result)
        return result

    async def _remove(self, records: list[ReplicaRecord], result: ReconcileResult) -> None:
        plan = Plan()
        for record in records:
            plan.remove(Removal(record.app_id, record.replica_id, record.node_id))
        outcome = await self._planner.commit(plan)
        result.removed.extend(outcome.removed)
        result.pending += len(outcome.unremoved)
        result.txns += outcome.txns
        result.conflicts += outcome.conflicts

    async def _place(
        self, spec: AppSpec, slots: list[Slot], kept: list[ReplicaRecord], result: ReconcileResult
    ) -> None:
        view = self._view
        chooser = Chooser(view, spec, sampling=self._sampling, rng=self._rng)
        zones: Counter[str] | None = None
        if spec.spread_zones:
            zones = Counter(
                node.zone
                for node in map(view.node, (record.node_id for record in kept))
                if node is not None
            )
        pending = deque(slots)
        attempts: Counter[str] = Counter()
        headless: set[str] = set()
        while pending:
            await view.catch_up(MAX_LAG, timeout=LAG_TIMEOUT)
            plan, judged = Plan(), []
            while pending and plan.has_room():
                slot = pending.popleft()
                choice = self._choose(slot, chooser, zones, headless)
                if isinstance(choice, Unplaceable):
                    result.unplaceable[slot.replica_id] = choice
                    judged.append(slot)
                    continue
                view.hold(choice, spec.app_id, spec.resources)
                if zones is not None:
                    zones[choice.zone] += 1
                plan.place(self._placement(spec, slot, choice.node_id))
            if not plan:
                return
            try:
                outcome = await self._planner.commit(plan)
            finally:
                # Every placement of the plan holds spec.resources for the app: one
                # release per node.
                held = Counter(placement.node_id for placement in plan.placements)
                for node_id, count in held.items():
                    view.release(node_id, spec.app_id, spec.resources, count)
            result.placed.extend(outcome.placed)
            result.running += len(outcome.placed)
            result.txns += outcome.txns
            result.conflicts += outcome.conflicts
            if outcome.rejected:
                # Holds were released: what this batch judged unplaceable is judged again.
                chooser.invalidate()
                for slot in judged:
                    del result.unplaceable[slot.replica_id]
                    if slot.role == ReplicaRole.HEAD:
                        headless.discard(slot.ray_cluster)
                retry = self._retry(outcome.rejected, attempts, zones, result) + judged
                retry.sort(key=lambda slot: slot.role != ReplicaRole.HEAD)
                pending.extendleft(reversed(retry))

    @staticmethod
    def _choose(
        slot: Slot, chooser: Chooser, zones: Counter[str] | None, headless: set[str]
    ) -> NodeState | Unplaceable:
        """A node for ``slot``, or why there is none; a head without one leaves its
        cluster ``headless``, whose workers are then unplaceable too."""
        if slot.ray_cluster in headless:
            return Unplaceable(
                Reason.RAY_HEAD_UNPLACEABLE,
                f"the head of Ray cluster {slot.ray_cluster} cannot be placed",
            )
        choice = chooser.choose(zones)
        if isinstance(choice, Unplaceable) and slot.role == ReplicaRole.HEAD:
            headless.add(slot.ray_cluster)
        return choice

    def _retry(
        self,
        rejected: list[tuple[Placement, Rejection]],
        attempts: Counter[str],
        zones: Counter[str] | None,
        result: ReconcileResult,
    ) -> list[Slot]:
        """The handed-back placements to choose again."""
        retry = []
        for placement, rejection in rejected:
            if zones is not None:
                node = self._view.node(placement.node_id)
                zones[node.zone if node is not None else ""] -= 1
            attempts[placement.replica_id] += 1
            if (
                rejection is Rejection.ALREADY_PLACED
                or attempts[placement.replica_id] > MAX_ATTEMPTS
            ):
                result.pending += 1
            else:
                retry.append(Slot(placement.replica_id, placement.ray_cluster, placement.role))
        return retry

    @staticmethod
    def _placement(spec: AppSpec, slot: Slot, node_id: str) -> Placement:
        return Placement(
            app_id=spec.app_id,
            replica_id=slot.replica_id,
            node_id=node_id,
            ray_cluster=slot.ray_cluster,
            role=slot.role,
            resources=spec.resources,
            app_generation=spec.generation,
            models=spec.models,
            template=spec.template,
        )


__all__ = ["LAG_TIMEOUT", "MAX_ATTEMPTS", "MAX_LAG", "AppScheduler", "ReconcileResult"]
