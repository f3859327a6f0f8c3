"""Scoring: sample a few feasible candidates, rank them, keep the best.

Choosing a node never looks at the whole fleet. For each replica the
:class:`Chooser` walks the app's *accelerator tiers* (its preference list; or CPU-only
nodes first and GPU nodes last for replicas that need no GPU, so that scarce GPUs stay
free for replicas that do), and, with ``spread_zones``, the zones from the one holding
fewest of the app's replicas. Each (tier, zone) is a *space*: the union of the view's
READY-node indexes for it, or the smallest label index of the node selector when that
is smaller (the rest is then filtered). In a space it

1. keeps filling the node it chose last while PACK (until full) or WATERMARK (up to
   the watermark) still wants it: next fit, O(1), no sampling;
2. otherwise draws nodes uniformly at random until ``candidates`` feasible ones are
   found or ``max_draws`` draws are spent, adds the node it chose last and, with
   affinity, up to ``candidates`` nodes of the affinity apps, ranks them with the
   :class:`Ranker` and returns the best (the power of k choices).

Only when no draw is feasible (fewer than about one node in ``max_draws / candidates``
fits: a scarce accelerator, a rare label, a nearly full fleet) does it scan the space
once, keep the feasible nodes for the rest of the pass and sample among those, so the
few feasible nodes are always found and "unplaceable" is never a sampling accident.

Schedulers race for nodes, and ranking by fullness would steer every one of them to the
nodes the others are filling right now: a node whose allocation changed in the last
``recent`` revisions, or that another app's plan holds part of, loses
:data:`RECENT_MALUS` unless the chooser filled it itself.

Complexity per replica: O(1) for next fit, else O(k) expected, k = ``candidates``,
while at least one node in ``max_draws / k`` of a space is feasible; otherwise one
O(|space|) scan per space and pass, amortised over the pass's replicas, then O(k) again.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scheduling._feasibility import Reason, Request
from scheduling._model import Bag, FleetView, NodeState
from scheduling._spec import AppSpec, Strategy

#: Score bonus of a node that runs one of the app's affinity apps (dominates the strategy).
AFFINITY_BONUS = 2.0
#: Score malus of a GPU node for a replica that needs no GPU (dominates everything else).
GPU_KEEPING_MALUS = 4.0
#: Score malus of a node another scheduler may be filling now (changed recently).
RECENT_MALUS = 0.75


@dataclass(frozen=True, slots=True)
class Sampling:
    """How many feasible candidates to rank per replica, how many random draws to spend
    finding them before scanning, and for how many revisions a changed node counts as
    being filled by another scheduler (see the module's documentation)."""

    candidates: int = 4
    max_draws: int = 256
    recent: int = 64

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.max_draws < self.candidates or self.recent < 0:
            raise ValueError("need candidates >= 1, max_draws >= candidates and recent >= 0")


@dataclass(frozen=True, slots=True)
class Unplaceable:
    """Why a replica cannot be placed now: a :class:`Reason` and a message for people."""

    reason: Reason
    message: str


class Ranker:
    """Scores a feasible node for one replica of an app; higher is better. O(1) per node.

    SPREAD prefers low utilisation after placement, PACK high, WATERMARK packs nodes
    up to the watermark (every node under it beats every node over it) and spreads
    above it. Affinity adds :data:`AFFINITY_BONUS`; a GPU node loses
    :data:`GPU_KEEPING_MALUS` for a replica that needs no GPU; a node another scheduler
    may be filling now loses :data:`RECENT_MALUS` unless it is ``own``.
    """

    __slots__ = (
        "_affinity",
        "_app_id",
        "_cpu",
        "_gpus",
        "_memory",
        "_recent",
        "_strategy",
        "_view",
        "_watermark",
    )

    def __init__(self, spec: AppSpec, view: FleetView, *, recent: int) -> None:
        self._app_id = spec.app_id
        self._strategy = spec.strategy
        self._watermark = spec.watermark
        self._affinity = tuple(spec.affinity)
        resources = spec.resources
        self._cpu, self._memory, self._gpus = (
            resources.cpu_millis,
            resources.memory_bytes,
            resources.gpus,
        )
        self._view = view
        self._recent = recent

    def score(self, node: NodeState, *, own: bool = False) -> float:
        share = node.utilization(self._cpu, self._memory, self._gpus)
        if self._strategy is Strategy.SPREAD:
            score = 1.0 - share
        elif self._strategy is Strategy.PACK:
            score = share
        else:
            score = 1.0 + share if share <= self._watermark else 1.0 - share
        if self._affinity and any(node.count(app_id) for app_id in self._affinity):
            score += AFFINITY_BONUS
        if node.gpus and not self._gpus:
            score -= GPU_KEEPING_MALUS
        if not own and self._busy(node):
            score -= RECENT_MALUS
        return score

    def _busy(self, node: NodeState) -> bool:
        """Whether another scheduler may be filling ``node`` now: its allocation changed
        in the last ``recent`` revisions, or a plan of another app holds part of it."""
        if node.alloc_revision and node.alloc_revision > self._view.revision - self._recent:
            return True
        held = node.held_apps
        if not held:
            return False
        return len(held) > 1 or self._app_id not in held

    def keeps(self, node: NodeState) -> bool:
        """Whether next fit keeps filling ``node``, a feasible node chosen last: PACK
        while it fits, WATERMARK while under the watermark, never with affinity."""
        if self._affinity or self._strategy is Strategy.SPREAD:
            return False
        return self._strategy is Strategy.PACK or (
            node.utilization(self._cpu, self._memory, self._gpus) <= self._watermark
        )


def accelerator_tiers(spec: AppSpec, view: FleetView) -> list[tuple[str, ...]]:
    """The accelerator types to try, one tier after the other (``""``: CPU-only)."""
    if spec.accelerators:
        return [(accelerator,) for accelerator in spec.accelerators]
    gpu_types = tuple(view.gpu_accelerators())
    if spec.resources.gpus:
        return [gpu_types] if gpu_types else []
    return [("",), gpu_types] if gpu_types else [("",)]


class _Space:
    """The candidates of one (tier, zone): bags to draw from, a filter for the rest."""

    __slots__ = ("accept", "bags", "feasible", "size")

    def __init__(
        self, bags: list[Bag[NodeState]], accept: Callable[[NodeState], bool] | None
    ) -> None:
        self.bags = bags
        self.accept = accept
        self.size = sum(len(bag) for bag in bags)
        self.feasible: list[NodeState] | None = None  # set by a scan

    def draw(self, rng: random.Random) -> NodeState | None:
        """A uniformly random member; ``None`` when nodes left and none remain."""
        bags = self.bags
        if len(bags) == 1:
            return bags[0].pick(rng) if bags[0] else None
        index = int(rng.random() * sum(map(len, bags)))
        for bag in bags:
            if index < len(bag):
                return bag.items[index]
            index -= len(bag)
        return None

    def contains(self, node: NodeState) -> bool:
        bags = self.bags
        # One bag is the common case (asked once per replica): no generator for it.
        found = node in bags[0] if len(bags) == 1 else any(node in bag for bag in bags)
        return found and (self.accept is None or self.accept(node))


class Chooser:
    """Chooses nodes for the replicas of one app during one pass (see the module's
    documentation for the sampling and its complexity)."""

    def __init__(
        self, view: FleetView, spec: AppSpec, *, sampling: Sampling, rng: random.Random
    ) -> None:
        self._view = view
        self._spec = spec
        self._request = Request.of(spec)
        self._ranker = Ranker(spec, view, recent=sampling.recent)
        self._sampling = sampling
        self._rng = rng
        self._tiers = accelerator_tiers(spec, view)
        self._affinity = [bag for bag in map(view.by_app, sorted(spec.affinity)) if bag is not None]
        self._spaces: dict[tuple[int, str], _Space | None] = {}
        self._reasons: Counter[Reason] = Counter()
        self._scanned = 0
        self._last: dict[str, NodeState] = {}  # by zone ("" without spread_zones)
        self._tier_zones: dict[tuple[str, ...], list[str]] = {}

    def invalidate(self) -> None:
        """Forget what scans found: holds were released and capacity may be back."""
        self._spaces.clear()
        self._tier_zones.clear()
        self._reasons.clear()
        self._scanned = 0
        self._last.clear()

    def choose(self, zone_counts: Mapping[str, int] | None = None) -> NodeState | Unplaceable:
        """The best node found for the next replica, or why there is none.

        Args:
            zone_counts: the app's replicas per zone, when it spreads across zones.
        """
        for tier_index, tier in enumerate(self._tiers):
            for zone in self._zones(tier, zone_counts):
                space = self._space(tier_index, tier, zone)
                if space is None:
                    continue
                node = self._choose_in(space, self._last.get(zone))
                if node is not None:
                    self._last[zone] = node
                    return node
                self._spaces[(tier_index, zone)] = None  # nothing fits there this pass
        return self._unplaceable()

    def _zones(self, tier: tuple[str, ...], zone_counts: Mapping[str, int] | None) -> list[str]:
        if zone_counts is None:
            return [""]
        zones = self._tier_zones.get(tier)
        if zones is None:
            view = self._view
            zones = self._tier_zones[tier] = sorted({z for name in tier for z in view.zones(name)})
        rng = self._rng
        return sorted(zones, key=lambda zone: (zone_counts.get(zone, 0), rng.random()))

    def _space(self, tier_index: int, tier: tuple[str, ...], zone: str) -> _Space | None:
        key = (tier_index, zone)
        if key in self._spaces:
            return self._spaces[key]
        view = self._view
        lookup = (lambda name: view.by_zone(name, zone)) if zone else view.by_accelerator
        bags = [bag for bag in map(lookup, tier) if bag]
        labels = [view.by_label(key, value) for key, value in self._request.node_selector]
        space: _Space | None = None
        if all(labels):
            present = [bag for bag in labels if bag is not None]  # all of them: all() held
            smallest = min(present, key=len, default=None)
            if smallest is not None and len(smallest) < sum(map(len, bags)):
                accelerators = frozenset(tier)
                space = _Space(
                    [smallest],
                    lambda node: (
                        node.accelerator in accelerators and (not zone or node.zone == zone)
                    ),
                )
            elif bags:
                space = _Space(bags, None)
        self._spaces[key] = space
        return space

    def _choose_in(self, space: _Space, last: NodeState | None) -> NodeState | None:
        candidates: list[NodeState] = []
        if last is not None and space.contains(last) and self._request.check(last) is None:
            if self._ranker.keeps(last):
                return last
            candidates.append(last)
        if self._affinity:
            self._draw_affine(space, candidates)
        if space.feasible is None:
            self._draw(space, candidates)
            if not candidates:
                self._scan(space)
        if space.feasible is not None:
            self._draw_feasible(space.feasible, candidates)
        if not candidates:
            return None
        score, rng = self._ranker.score, self._rng
        return max(candidates, key=lambda node: score(node, own=node is last) + rng.random() * 1e-9)

    def _draw(self, space: _Space, candidates: list[NodeState]) -> None:
        """Up to ``candidates`` feasible nodes in at most ``max_draws`` random draws."""
        want, draws = self._sampling.candidates, self._sampling.max_draws
        check, accept, rng = self._request.check, space.accept, self._rng
        if space.size <= want:
            draws = 0  # as cheap to scan, and exact
        while draws and len(candidates) < want:
            draws -= 1
            node = space.draw(rng)
            if node is None:
                return
            if (accept is None or accept(node)) and check(node) is None:
                candidates.append(node)

    def _draw_affine(self, space: _Space, candidates: list[NodeState]) -> None:
        """Up to ``candidates`` random feasible nodes of ``space`` that run one of the
        app's affinity apps, so that affinity does not depend on sampling luck."""
        check, rng = self._request.check, self._rng
        for _ in range(self._sampling.candidates):
            bag = self._affinity[int(rng.random() * len(self._affinity))]
            if bag:
                node = bag.pick(rng)
                if space.contains(node) and check(node) is None:
                    candidates.append(node)

    def _scan(self, space: _Space) -> None:
        """Keep every feasible node of ``space``, counting why the others are not. O(|space|)."""
        check, accept = self._request.check, space.accept
        feasible = []
        for bag in space.bags:
            for node in bag:
                if accept is not None and not accept(node):
                    continue
                self._scanned += 1
                reason = check(node)
                if reason is None:
                    feasible.append(node)
                else:
                    self._reasons[reason] += 1
        space.feasible = feasible

    def _draw_feasible(self, feasible: list[NodeState], candidates: list[NodeState]) -> None:
        """Up to ``candidates`` nodes still feasible among those a scan kept (all of them
        when that few are left); those no longer feasible are dropped, their reasons counted."""
        want, draws, rng = self._sampling.candidates, self._sampling.max_draws, self._rng
        if len(feasible) <= want:
            for node in list(feasible):
                if self._still_feasible(node):
                    candidates.append(node)
                else:
                    feasible.remove(node)
            return
        while feasible and draws and len(candidates) < want:
            draws -= 1
            index = int(rng.random() * len(feasible))
            node = feasible[index]
            if self._still_feasible(node):
                candidates.append(node)
            else:
                feasible[index] = feasible[-1]
                feasible.pop()

    def _still_feasible(self, node: NodeState) -> bool:
        """Whether a node a scan kept still takes the replica; counts why not."""
        if not node.ready:  # it left the indexes since the scan
            return False
        reason = self._request.check(node)
        if reason is not None:
            self._reasons[reason] += 1
        return reason is None

    def _unplaceable(self) -> Unplaceable:
        spec = self._spec
        if not self._scanned:
            if self._request.node_selector and self._tiers:
                selector = ",".join(f"{key}={value}" for key, value in self._request.node_selector)
                return Unplaceable(
                    Reason.NODE_SELECTOR_MISMATCH,
                    f"no READY node matches {selector} and an acceptable accelerator",
                )
            wanted = ", ".join(spec.accelerators) or ("any GPU" if spec.resources.gpus else "any")
            return Unplaceable(
                Reason.ACCELERATOR_UNAVAILABLE, f"no READY node with accelerator {wanted}"
            )
        reason, _ = self._reasons.most_common(1)[0]
        counts = ", ".join(f"{count} {name}" for name, count in self._reasons.most_common())
        return Unplaceable(reason, f"no feasible node among {self._scanned} candidates: {counts}")


__all__ = [
    "AFFINITY_BONUS",
    "GPU_KEEPING_MALUS",
    "RECENT_MALUS",
    "Chooser",
    "Ranker",
    "Sampling",
    "Unplaceable",
    "accelerator_tiers",
]
