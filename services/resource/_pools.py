"""Per-pool totals, kept up to date incrementally as nodes change.

A pool is the nodes of one accelerator type in one zone. Each node contributes to its
pool's count for its phase and, while READY, its capacity and what is free on it
(capacity minus allocated, never below zero). A change of a node subtracts its old
contribution and adds its new one: O(1) per change, never a scan of the fleet.
"""

from __future__ import annotations

from opentelemetry.metrics import Observation

from astra._gen.astra.v1 import node_pb2
from astra.records import NodePhase, Quantity

PoolKey = tuple[str, str]  # (accelerator, zone)


class _Totals:
    __slots__ = ("capacity", "counts", "free")

    def __init__(self) -> None:
        self.counts = {phase.value: 0 for phase in NodePhase}
        self.capacity = [0, 0, 0]
        self.free = [0, 0, 0]


class Pools:
    """Totals of every pool, and which pools changed since :meth:`take_dirty`."""

    def __init__(self) -> None:
        self._totals: dict[PoolKey, _Totals] = {}
        self._dirty: set[PoolKey] = set()

    def account(
        self, pool: PoolKey, phase: str, capacity: Quantity, allocated: Quantity | None, sign: int
    ) -> None:
        """Add (``sign`` 1) or remove (-1) one node's contribution to ``pool``."""
        totals = self._totals.get(pool)
        if totals is None:
            totals = self._totals[pool] = _Totals()
        totals.counts[phase] = totals.counts.get(phase, 0) + sign
        if phase == NodePhase.READY.value:
            used = allocated or Quantity()
            for index, (cap, alloc) in enumerate(
                (
                    (capacity.cpu_millis, used.cpu_millis),
                    (capacity.memory_bytes, used.memory_bytes),
                    (capacity.gpus, used.gpus),
                )
            ):
                totals.capacity[index] += sign * cap
                totals.free[index] += sign * max(cap - alloc, 0)
        self._dirty.add(pool)

    def take_dirty(self) -> set[PoolKey]:
        """The pools changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def observations(self) -> list[Observation]:
        """Nodes per phase across pools, for a gauge."""
        return [
            Observation(
                sum(totals.counts[phase.value] for totals in self._totals.values()),
                {"phase": phase.value},
            )
            for phase in NodePhase
        ]

    def all(self) -> list[PoolKey]:
        """Every pool, in order."""
        return sorted(self._totals)

    def summary(self, pool: PoolKey) -> node_pb2.PoolSummary:
        totals = self._totals.get(pool) or _Totals()
        summary = node_pb2.PoolSummary(
            accelerator=pool[0],
            zone=pool[1],
            ready_nodes=totals.counts[NodePhase.READY.value],
            draining_nodes=totals.counts[NodePhase.DRAINING.value],
            dead_nodes=totals.counts[NodePhase.DEAD.value],
        )
        for target, values in ((summary.capacity, totals.capacity), (summary.free, totals.free)):
            target.cpu_millis, target.memory_bytes, target.gpus = values
        return summary
