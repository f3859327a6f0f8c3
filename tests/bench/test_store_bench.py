"""The store benchmark runs end to end (tiny mode) and prints every row.

Only the table's shape and sanity are checked, never speed: timings depend on the machine.
"""

from __future__ import annotations

import math

from tests.bench.running import run_tiny

ROWS = [
    "put/s (16 clients)",
    "CAS batch 1: txn/s",
    "CAS batch 1: key updates/s",
    "CAS batch 16: txn/s",
    "CAS batch 16: key updates/s",
    "CAS batch 64: txn/s",
    "CAS batch 64: key updates/s",
]


def _numbers(line: str, label: str) -> list[float]:
    return [float(cell.rstrip("x").replace(",", "")) for cell in line.removeprefix(label).split()]


def test_tiny_benchmark_prints_every_row_for_both_backends() -> None:
    lines = run_tiny("store.py", timeout=100).splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split()[1:] == ["embedded", "etcd", "embedded/etcd"]
    rows = {
        label: _numbers(line, label) for line in lines for label in ROWS if line.startswith(label)
    }
    assert list(rows) == ROWS
    for label, (embedded, etcd, ratio) in rows.items():
        assert all(math.isfinite(value) and value > 0 for value in (embedded, etcd, ratio)), label
        assert math.isclose(ratio, embedded / etcd, rel_tol=0.05, abs_tol=0.01), label
    for batch in (1, 16, 64):
        txns, keys = rows[f"CAS batch {batch}: txn/s"], rows[f"CAS batch {batch}: key updates/s"]
        for txn_rate, key_rate in zip(txns[:2], keys[:2], strict=True):
            assert math.isclose(key_rate, txn_rate * batch, rel_tol=0.01, abs_tol=batch), batch
