"""Shared-state scheduling, Omega-style: many schedulers, one optimistic store.

Every app has its own :class:`AppScheduler`. Schedulers of a process share a
:class:`FleetView` of the fleet, fed by watches (:class:`StoreFeed`, or the Resource
service's ``WatchCluster`` through :class:`ClusterFeed` and :meth:`FleetView.apply_nodes`),
and commit through a
:class:`Planner` with optimistic concurrency: no global lock, no single scheduler on
the hot path. The App service runs the schedulers; the Scheduler service re-places the
replicas of lost nodes with the same view and planner. The pipeline, one small stage
per module:

1. reconcile (``_reconcile``): the spec against the app's replica records -> a :class:`Diff`;
2. feasibility (``_feasibility``): resources, labels, anti-affinity, replicas per node;
3. scoring (``_scoring``): sampled candidates ranked by SPREAD, PACK or WATERMARK, GPU
   nodes kept for replicas that need GPUs; O(k) per replica for k candidates;
4. a :class:`Plan` of placements and removals (``_plan``);
5. the :class:`Planner` (``_planner``) commits plans in etcd transactions that compare
   each touched allocation's ``mod_revision``, and on a lost race re-checks only the
   placements on nodes that changed.

Decisions never write to the store; only the planner does, so the whole pipeline runs
as well on the in-memory store, which is what tests and simulations use.

Example::

    view = FleetView()
    async with StoreFeed(store, view):
        planner = Planner(store, view)
        result = await AppScheduler(spec, view, planner).reconcile()
"""

from scheduling._cluster import ClusterFeed, ResourceTarget, node_record
from scheduling._feasibility import Reason, Request
from scheduling._feed import StoreFeed
from scheduling._model import Bag, FleetView, NodeState
from scheduling._plan import Placement, Plan, Removal, replica_name
from scheduling._planner import (
    SEQUENCE_KEY,
    CommitOutcome,
    CommitStats,
    ConflictMode,
    Planner,
    Rejection,
)
from scheduling._queue import WorkQueue
from scheduling._reconcile import RETIRE_TIMEOUT, Diff, Slot, diff, is_current, is_ready
from scheduling._scheduler import MAX_ATTEMPTS, AppScheduler, ReconcileResult
from scheduling._scoring import (
    Chooser,
    Ranker,
    Sampling,
    Unplaceable,
    accelerator_tiers,
)
from scheduling._spec import DEFAULT_WATERMARK, AppSpec, Strategy

__all__ = [
    "DEFAULT_WATERMARK",
    "MAX_ATTEMPTS",
    "RETIRE_TIMEOUT",
    "SEQUENCE_KEY",
    "AppScheduler",
    "AppSpec",
    "Bag",
    "Chooser",
    "ClusterFeed",
    "CommitOutcome",
    "CommitStats",
    "ConflictMode",
    "Diff",
    "FleetView",
    "NodeState",
    "Placement",
    "Plan",
    "Planner",
    "Ranker",
    "Reason",
    "ReconcileResult",
    "Rejection",
    "Removal",
    "Request",
    "ResourceTarget",
    "Sampling",
    "Slot",
    "StoreFeed",
    "Strategy",
    "Unplaceable",
    "WorkQueue",
    "accelerator_tiers",
    "diff",
    "is_current",
    "is_ready",
    "node_record",
    "replica_name",
]
