"""The picker benchmark runs end to end (tiny mode) and prints every row.

Only the table's shape and sanity are checked, never speed: timings depend on the machine.
"""

from __future__ import annotations

import math

from tests.bench.running import run_tiny


def test_tiny_benchmark_prints_every_size_for_both_implementations() -> None:
    lines = run_tiny("picker.py", timeout=100).splitlines()
    header = next(line for line in lines if line.startswith("endpoints"))
    assert header.split()[1:] == ["native", "native/call", "python", "python/native"]
    rows = {}
    for line in lines:
        cells = line.split()
        if cells and cells[0].replace(",", "").isdigit():
            rows[int(cells[0].replace(",", ""))] = [float(cell.rstrip("x")) for cell in cells[1:]]
    assert list(rows) == [10, 1_000, 10_000, 100_000]
    for size, (native, per_call, python, ratio) in rows.items():
        assert all(math.isfinite(value) and value > 0 for value in (native, per_call, python)), size
        assert math.isclose(ratio, python / native, rel_tol=0.05, abs_tol=0.1), size
    assert any(line.startswith("target: <= 100 ns per pick at 1,000 endpoints") for line in lines)
