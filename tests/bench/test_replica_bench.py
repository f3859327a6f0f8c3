"""The replica benchmark runs end to end (tiny mode, a real Ray replica) and prints every
row and the overhead ratio.

Only the table's shape and sanity are checked, never speed: timings depend on the machine.
"""

from __future__ import annotations

import math

import pytest

from tests.bench.running import run_tiny

ROWS = ["latency p50 (ms)", "latency p99 (ms)", "throughput (2 clients, inf/s)"]


@pytest.mark.timeout(400)
def test_tiny_benchmark_prints_every_row_and_the_overhead_ratio() -> None:
    lines = run_tiny("replica.py", "--clients", "2", timeout=380).splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split()[1:] == ["in-process", "replica", "replica/in-process"]
    rows = {}
    for line in lines:
        for label in ROWS:
            if line.startswith(label):
                rows[label] = [
                    float(cell.rstrip("x").replace(",", ""))
                    for cell in line.removeprefix(label).split()
                ]
    assert list(rows) == ROWS
    for label, (local, remote, ratio) in rows.items():
        assert all(math.isfinite(value) and value > 0 for value in (local, remote, ratio)), label
        assert math.isclose(ratio, remote / local, rel_tol=0.02, abs_tol=0.01), label
    (overhead,) = [line for line in lines if line.startswith("overhead ratio")]
    assert math.isclose(
        float(overhead.rsplit(" ", 1)[1].rstrip("x")), rows["latency p50 (ms)"][2], rel_tol=0.02
    )
