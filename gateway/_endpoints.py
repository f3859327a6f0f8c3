"""The replicas the gateway sends to (:class:`Endpoint`, one per address) and their
places in routes (:class:`Member`, one per route and endpoint)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import grpc

from gateway._weights import Signals, WeightPolicy

if TYPE_CHECKING:
    from gateway._table import Route

#: The methods of the Open Inference Protocol the gateway calls on replicas.
SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"

#: Channel arguments towards replicas: no size limit on tensors, and reconnects on a
#: short backoff (gRPC's own grows to 120 s), so a replica that restarts at the same
#: address is back within seconds.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class State(enum.Enum):
    """Whether an endpoint takes new requests."""

    READY = "ready"
    #: It refused a request because it is draining; probed until it is ready again.
    DRAINING = "draining"
    #: It kept failing; probed back after its ejection time.
    EJECTED = "ejected"


class Endpoint:
    """One replica address: its channel, its state and what it reported.

    Requests in flight keep using it after it leaves every route; its channel closes
    when the last one ends (:attr:`retired`).
    """

    __slots__ = (
        "address",
        "channel",
        "ejections",
        "failures_in_row",
        "in_flight",
        "infer",
        "lane_in_flight",
        "load",
        "members",
        "ready_since",
        "report",
        "report_time",
        "retired",
        "slow_start",
        "state",
    )

    def __init__(self, address: str, *, now: float, slow_start: bool) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        #: ModelInfer on raw bytes: nothing is decoded or encoded again.
        self.infer: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            MODEL_INFER
        )
        self.state = State.READY
        self.in_flight = 0
        #: Its requests in flight through the fast lane, as of the last collection.
        self.lane_in_flight = 0
        #: Its mean number of requests in flight over the last weight interval.
        self.load = 0.0
        self.failures_in_row = 0
        self.ejections = 0
        #: When it (last) became ready, and whether its weight ramps up from then.
        self.ready_since = now
        self.slow_start = slow_start
        #: The replica's last load report: (rps, utilization, eps), and when it came.
        self.report: tuple[float, float, float] | None = None
        self.report_time = 0.0
        self.members: set[Member] = set()
        self.retired = False

    @property
    def routable(self) -> bool:
        return self.state is State.READY

    def warmup(self, policy: WeightPolicy, now: float) -> float:
        """Its slow-start factor now."""
        return policy.warmup(now - self.ready_since) if self.slow_start else 1.0

    def fresh_report(self, policy: WeightPolicy, now: float) -> tuple[float, float, float] | None:
        if self.report is None or now - self.report_time > policy.report_expiry:
            return None
        return self.report

    def __repr__(self) -> str:
        return f"Endpoint({self.address!r}, {self.state.value}, in_flight={self.in_flight})"


class Member:
    """An endpoint in one route: its slot in the route's picker, its base weight, and
    what the gateway saw of its requests for that route.

    The hot path only adds to this interval's counters; :meth:`roll` folds them into
    the EWMAs once per weight interval.
    """

    __slots__ = (
        "base",
        "endpoint",
        "errors",
        "failed",
        "failed_seconds",
        "latency",
        "route",
        "sample_seconds",
        "samples",
        "slot",
        "weight",
    )

    def __init__(self, slot: int, endpoint: Endpoint, route: Route, base: float) -> None:
        self.slot = slot
        self.endpoint = endpoint
        self.route = route
        self.base = base
        # This interval: requests that measured the replica's latency (answered, or
        # out of time), and requests the replica failed.
        self.samples = 0
        self.sample_seconds = 0.0
        self.failed = 0
        self.failed_seconds = 0.0
        self.latency: float | None = None
        self.errors = 0.0
        #: Its effective weight since the route's weights were last computed.
        self.weight = 0.0

    def roll(self, policy: WeightPolicy, elapsed: float) -> None:
        """Fold the requests of the interval that ends (``elapsed`` seconds long) into
        the EWMAs and start the next."""
        total = self.samples + self.failed
        if total:
            alpha = policy.decay(elapsed)
            if self.samples:
                mean = self.sample_seconds / self.samples
                self.latency = (
                    mean if self.latency is None else self.latency + alpha * (mean - self.latency)
                )
            self.errors += alpha * (self.failed / total - self.errors)
        self.samples, self.sample_seconds, self.failed, self.failed_seconds = 0, 0.0, 0, 0.0

    @property
    def busy(self) -> float:
        """Seconds its requests of this interval took."""
        return self.sample_seconds + self.failed_seconds

    def signals(self, policy: WeightPolicy, now: float) -> Signals:
        """What its weight is computed from, now."""
        endpoint = self.endpoint
        return Signals(
            base=self.base,
            latency=self.latency,
            in_flight=max(endpoint.load, float(endpoint.in_flight + endpoint.lane_in_flight)),
            errors=self.errors,
            report=endpoint.fresh_report(policy, now),
            warmup=endpoint.warmup(policy, now),
            routable=endpoint.routable,
        )

    def __repr__(self) -> str:
        return f"Member({self.slot}, {self.endpoint.address!r}, base={self.base:g})"
