"""Adaptive weights: what each endpoint of a route gets, recomputed every interval.

The effective weight of endpoint *i* of a route is::

    w_i = base_i * observed_i * reported_i * warmup_i        (0 while draining or ejected)

- ``base_i``: the Scheduler's weight (capacity and hardware); a missing one (<= 0) is 1.
- ``observed_i``, what the gateway sees: Finagle's peak-EWMA cost made relative,
  ``clamp(sqrt(mean_cost / cost_i), 1/max_factor, max_factor)`` with
  ``cost_i = latency_i * (1 + inflight_i / b_i) * (1 + error_penalty * errors_i)``, where
  ``latency_i`` is an EWMA (time constant ``latency_decay``) of the mean latency of
  each interval's requests, ``inflight_i`` the endpoint's requests in flight (the mean
  over the interval, by Little's law, or the count now if larger: a stalled replica
  shows there before any latency does), ``b_i`` its base weight over the route's mean
  base weight (a bigger replica is expected to hold more), ``errors_i`` an EWMA of its
  failure ratio. ``mean_cost`` is the geometric mean over the endpoints with samples;
  one without is 1. The square root: once requests queue at the replicas, latency
  grows with the requests in flight too (Little's law), so the cost grows as their
  square; a factor of the cost itself moved each interval's weights twice as far as
  the imbalance it answered, and identical replicas took turns at being swamped and
  idle (the throughput that cost is in docs/gateway.md). Its square root answers in
  proportion.
- ``reported_i``, what the replica reports, as gRPC's weighted_round_robin reads ORCA
  reports: ``capacity_i = rps / (utilization + eps / rps * error_penalty)`` per unit of
  base weight, relative to their geometric mean: ``clamp(capacity_i / mean_capacity,
  1/max_factor, max_factor)``. A replica with no fresh report (older than ``report_expiry``, or no
  requests or utilisation in it) is 1.
- ``warmup_i``: slow start. An endpoint that joins a route after the gateway's first
  snapshot, or comes back from ejection, ramps linearly from ``slow_start_floor`` to 1
  over ``slow_start`` seconds.

Dividing by the base weight in both factors keeps them about how an endpoint does
*against what its base weight promised*, so hardware is not counted twice. The
weights of a route are then scaled so that the largest is the picker's MAX_WEIGHT
(2^16) and rounded, each at least 1.

Ejection: ``eject_after`` consecutive failures of a replica's making (UNAVAILABLE that
is not a drain refusal, INTERNAL, UNKNOWN, DATA_LOSS) eject an endpoint for
``ejection_base * 2^(k-1)`` seconds at its k-th ejection, at most ``ejection_max``;
then a ``ServerReady`` probe brings it back (with slow start) or ejects it again. After
``ejection_max`` seconds in service its count starts over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WeightPolicy:
    """The knobs of the weights, ejection and probing, with their defaults."""

    #: Seconds between recomputations of every route's weights.
    interval: float = 0.5
    #: Time constant (seconds) of the latency and error EWMAs.
    latency_decay: float = 2.0
    #: gRPC's error_utilization_penalty: how much an error counts against a replica.
    error_penalty: float = 1.0
    #: Each adaptive factor stays within [1 / max_factor, max_factor].
    max_factor: float = 10.0
    #: Seconds of slow start, and the share of its weight a new endpoint starts at.
    slow_start: float = 10.0
    slow_start_floor: float = 0.1
    #: Replica load reports older than this (seconds) are not used.
    report_expiry: float = 10.0
    #: Consecutive replica failures that eject an endpoint.
    eject_after: int = 5
    #: Seconds of the first ejection, doubled at each next one, capped.
    ejection_base: float = 2.0
    ejection_max: float = 60.0
    #: Seconds a probe (ServerReady) may take, and between probes of a draining endpoint.
    probe_timeout: float = 1.0
    drain_probe: float = 1.0

    def __post_init__(self) -> None:
        positive = (
            "interval",
            "latency_decay",
            "max_factor",
            "slow_start",
            "ejection_base",
            "probe_timeout",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 0 < self.slow_start_floor <= 1:
            raise ValueError("slow_start_floor must be in (0, 1]")
        if self.eject_after < 1 or self.ejection_max < self.ejection_base or self.error_penalty < 0:
            raise ValueError("eject_after >= 1, ejection_max >= ejection_base, error_penalty >= 0")

    def decay(self, seconds: float) -> float:
        """The EWMA weight of a new interval of ``seconds``."""
        return 1.0 - math.exp(-seconds / self.latency_decay)

    def ejection(self, count: int) -> float:
        """Seconds of the ``count``-th ejection in a row."""
        return min(self.ejection_max, self.ejection_base * 2.0 ** (count - 1))

    def warmup(self, age: float) -> float:
        """The slow-start factor of an endpoint in service for ``age`` seconds."""
        if age >= self.slow_start:
            return 1.0
        floor = self.slow_start_floor
        return floor + (1.0 - floor) * max(age, 0.0) / self.slow_start

    def clamp(self, factor: float) -> float:
        return min(self.max_factor, max(1.0 / self.max_factor, factor))


@dataclass(frozen=True, slots=True)
class Signals:
    """What is known of one endpoint of a route when its weight is computed."""

    base: float
    #: Latency EWMA in seconds, or None before any sample.
    latency: float | None = None
    in_flight: float = 0.0
    errors: float = 0.0
    #: The replica's last fresh report as (rps, utilization, eps), or None.
    report: tuple[float, float, float] | None = None
    warmup: float = 1.0
    routable: bool = True


def effective_weights(policy: WeightPolicy, route: Sequence[Signals]) -> list[float]:
    """The effective weight of each endpoint of a route (module docs); 0 when not
    routable."""
    bases = [signals.base if signals.base > 0 else 1.0 for signals in route]
    mean_base = sum(bases) / len(bases) if bases else 1.0
    relative = [base / mean_base for base in bases]
    costs = [  # square roots of the costs: see the module's documentation
        None
        if signals.latency is None
        else math.sqrt(
            signals.latency
            * (1.0 + signals.in_flight / share)
            * (1.0 + policy.error_penalty * signals.errors)
        )
        for signals, share in zip(route, relative, strict=True)
    ]
    capacities = [
        _capacity(policy, signals.report, share)
        for signals, share in zip(route, relative, strict=True)
    ]
    observed = _relative(policy, costs, inverse=True)
    reported = _relative(policy, capacities, inverse=False)
    return [
        base * seen * told * signals.warmup if signals.routable else 0.0
        for base, seen, told, signals in zip(bases, observed, reported, route, strict=True)
    ]


def _capacity(
    policy: WeightPolicy, report: tuple[float, float, float] | None, share: float
) -> float | None:
    """gRPC weighted_round_robin's weight from a report, per unit of base weight."""
    if report is None:
        return None
    rps, utilization, eps = report
    if rps <= 0 or utilization <= 0:
        return None
    return rps / (utilization + eps / rps * policy.error_penalty) / share


def _relative(
    policy: WeightPolicy, values: Sequence[float | None], *, inverse: bool
) -> list[float]:
    """Each value against the geometric mean of the known ones (``mean / value`` when
    ``inverse``: a cost), clamped; 1 for an unknown one. The geometric mean keeps one
    endpoint far off from moving the others' factors much."""
    known = [value for value in values if value is not None and value > 0]
    if not known:
        return [1.0] * len(values)
    mean = math.exp(sum(map(math.log, known)) / len(known))
    return [
        1.0
        if value is None or value <= 0
        else policy.clamp(mean / value if inverse else value / mean)
        for value in values
    ]


def quantize(weights: Sequence[float], maximum: int) -> list[int]:
    """Integer weights for the picker: the largest becomes ``maximum``, the others in
    proportion, rounded, each at least 1; a weight of 0 stays 0."""
    top = max(weights, default=0.0)
    if top <= 0:
        return [0] * len(weights)
    return [max(1, round(weight / top * maximum)) if weight > 0 else 0 for weight in weights]
