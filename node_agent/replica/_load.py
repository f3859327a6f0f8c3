"""A replica's load, for the gateways' weights, in the spirit of gRPC's ORCA reports.

Each ModelInfer answer carries it in trailing metadata, and ORCA's out-of-band stream
sends it periodically (:mod:`node_agent.replica._orca`). The text form, in the
``x-astra-load`` trailer::

    x-astra-load: rps=812.40,eps=0.00,util=0.734,inflight=3,latency_ms=1.92

- ``rps``, ``eps``: ModelInfer requests and errors (failures of the replica, not bad
  requests) per second over the last :data:`WINDOW` seconds;
- ``util``: the share of the inference workers' time spent running models, 0 to 1;
- ``inflight``: requests being served now;
- ``latency_ms``: an EWMA of ModelInfer's latency, in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: The trailing-metadata key of the text form.
LOAD_HEADER = "x-astra-load"
#: Seconds over which rates and utilisation are measured.
WINDOW = 5.0
_BUCKETS = 10
#: Weight of the newest latency in the EWMA.
_ALPHA = 0.2


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One reading of a replica's load."""

    rps: float
    eps: float
    utilization: float
    in_flight: int
    latency_ms: float

    def header(self) -> str:
        """The ``x-astra-load`` text form."""
        return (
            f"rps={self.rps:.2f},eps={self.eps:.2f},util={self.utilization:.3f},"
            f"inflight={self.in_flight},latency_ms={self.latency_ms:.2f}"
        )

    @classmethod
    def parse(cls, text: str) -> LoadReport:
        """Read the ``x-astra-load`` text form.

        Raises:
            ValueError: ``text`` is not that form.
        """
        fields = dict(item.partition("=")[::2] for item in text.split(","))
        try:
            return cls(
                rps=float(fields["rps"]),
                eps=float(fields["eps"]),
                utilization=float(fields["util"]),
                in_flight=int(fields["inflight"]),
                latency_ms=float(fields["latency_ms"]),
            )
        except KeyError as exc:
            raise ValueError(f"{LOAD_HEADER} {text!r} lacks {exc}") from exc


class LoadTracker:
    """Counts requests, errors and busy time in a ring of :data:`_BUCKETS` time buckets
    spanning :data:`WINDOW` seconds; O(1) per event, O(buckets) per report."""

    def __init__(self, *, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        """
        Args:
            workers: inference workers (threads running models): full utilisation is
                all of them busy all the time.
            clock: monotonic seconds.
        """
        self._workers = max(1, workers)
        self._clock = clock
        self._started = clock()
        self._width = WINDOW / _BUCKETS
        self._ids = [-1] * _BUCKETS
        self._requests = [0] * _BUCKETS
        self._errors = [0] * _BUCKETS
        self._busy = [0.0] * _BUCKETS
        self.in_flight = 0
        self.latency_ms = 0.0

    def _bucket(self, now: float) -> int:
        bucket_id = int(now / self._width)
        index = bucket_id % _BUCKETS
        if self._ids[index] != bucket_id:
            self._ids[index] = bucket_id
            self._requests[index] = self._errors[index] = 0
            self._busy[index] = 0.0
        return index

    def begin(self) -> float:
        """A request starts; returns its start time for :meth:`end`."""
        self.in_flight += 1
        return self._clock()

    def end(self, start: float, *, failed: bool) -> None:
        """The request that began at ``start`` ended; ``failed`` if by the replica's fault."""
        now = self._clock()
        self.in_flight -= 1
        index = self._bucket(now)
        self._requests[index] += 1
        self._errors[index] += failed
        latency = (now - start) * 1000
        self.latency_ms = (
            latency
            if self.latency_ms == 0
            else self.latency_ms + _ALPHA * (latency - self.latency_ms)
        )

    def busy(self, seconds: float) -> None:
        """A worker spent ``seconds`` running a model."""
        self._busy[self._bucket(self._clock())] += seconds

    def report(self) -> LoadReport:
        """The load now."""
        now = self._clock()
        current = int(now / self._width)
        live = [
            index for index, bucket_id in enumerate(self._ids) if current - bucket_id < _BUCKETS
        ]
        span = min(WINDOW, max(now - self._started, self._width))
        return LoadReport(
            rps=sum(self._requests[index] for index in live) / span,
            eps=sum(self._errors[index] for index in live) / span,
            utilization=min(1.0, sum(self._busy[index] for index in live) / (span * self._workers)),
            in_flight=self.in_flight,
            latency_ms=self.latency_ms,
        )
