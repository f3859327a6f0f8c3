"""Load reports: rates over a sliding window, utilisation, in-flight, latency EWMA, and
their text and ORCA forms."""

from __future__ import annotations

import pytest

from node_agent.replica import WINDOW, LoadReport, LoadTracker, OrcaLoadReport, to_orca


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rates_cover_the_window_and_forget_what_left_it() -> None:
    clock = Clock()
    tracker = LoadTracker(workers=2, clock=clock)
    for index in range(20):  # 20 requests over 2 s, 4 of them failed
        start = tracker.begin()
        clock.now += 0.05
        tracker.busy(0.05)
        tracker.end(start, failed=index % 5 == 0)
        clock.now += 0.05
    report = tracker.report()
    assert report.rps == pytest.approx(10.0)
    assert report.eps == pytest.approx(2.0)
    assert report.utilization == pytest.approx(1.0 / 2 / 2)  # 1 s busy of 2 s x 2 workers
    assert report.latency_ms == pytest.approx(50.0)
    assert report.in_flight == 0
    clock.now += WINDOW + 1
    quiet = tracker.report()
    assert (quiet.rps, quiet.eps, quiet.utilization) == (0, 0, 0)


def test_in_flight_and_latency_ewma() -> None:
    clock = Clock()
    tracker = LoadTracker(workers=1, clock=clock)
    first, second = tracker.begin(), tracker.begin()
    assert tracker.report().in_flight == 2
    clock.now += 0.010
    tracker.end(first, failed=False)
    assert tracker.report().latency_ms == pytest.approx(10.0)  # the first sample sets it
    clock.now += 0.100
    tracker.end(second, failed=False)
    assert tracker.report().latency_ms == pytest.approx(10.0 + 0.2 * (110.0 - 10.0))
    assert tracker.report().in_flight == 0


def test_text_and_orca_forms() -> None:
    report = LoadReport(rps=812.4, eps=0.5, utilization=0.734, in_flight=3, latency_ms=1.92)
    header = report.header()
    assert header == "rps=812.40,eps=0.50,util=0.734,inflight=3,latency_ms=1.92"
    assert LoadReport.parse(header) == report
    orca = OrcaLoadReport.FromString(to_orca(report).SerializeToString())
    assert (orca.rps_fractional, orca.eps, orca.application_utilization) == (812.4, 0.5, 0.734)
    assert dict(orca.named_metrics) == {"inflight": 3.0, "latency_ms": 1.92}
    with pytest.raises(ValueError, match="lacks 'eps'"):
        LoadReport.parse("rps=1")
