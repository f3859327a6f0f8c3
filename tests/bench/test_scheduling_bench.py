"""The scheduling benchmark runs end to end (tiny mode) and prints every row.

Speed is never checked (timings depend on the machine); what must hold on any machine
is: every replica placed, nothing over-committed or inconsistent, sane numbers.
"""

from __future__ import annotations

import math

from tests.bench.running import run_tiny

NUMERIC_ROWS = (
    "placements/s",
    "conflicts per committed txn",
    "placements per committed txn",
    "nodes per committed txn",
    "app fully placed p50 (s)",
    "app fully placed p99 (s)",
    "peak RSS of the process (MiB)",
    "ceiling: batched CAS placements/s",
    "our rate / ceiling",
    "over-committed nodes (verified)",
    "replicas inconsistent (verified)",
    "wall time of the run (s)",
)
MODES = ("fine", "all-or-nothing", "coarse")


def _cells(line: str, label: str) -> list[str]:
    return line.removeprefix(label).split()


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_tiny_benchmark_places_everything_on_both_backends() -> None:
    lines = run_tiny("scheduling.py", timeout=110).splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split()[1:] == ["embedded", "etcd"]
    rows = {
        label: _cells(line, label)
        for line in lines
        for label in NUMERIC_ROWS
        if line.startswith(label)
    }
    assert list(rows) == list(NUMERIC_ROWS)
    values = {label: [_number(cell) for cell in cells] for label, cells in rows.items()}
    for label, numbers in values.items():
        assert len(numbers) == 2 and all(
            math.isfinite(number) and number >= 0 for number in numbers
        ), label
    for label in (
        "placements/s",
        "placements per committed txn",
        "ceiling: batched CAS placements/s",
    ):
        assert all(number > 0 for number in values[label]), label
    assert values["over-committed nodes (verified)"] == [0, 0]
    assert values["replicas inconsistent (verified)"] == [0, 0]
    left = next(line for line in lines if line.startswith("replicas unplaceable / pending"))
    assert _cells(left, "replicas unplaceable / pending") == ["0", "/", "0", "0", "/", "0"]
    for embedded_or_etcd in (0, 1):
        rate = values["placements/s"][embedded_or_etcd]
        ratio = values["our rate / ceiling"][embedded_or_etcd]
        ceiling = values["ceiling: batched CAS placements/s"][embedded_or_etcd]
        assert math.isclose(ratio, rate / ceiling, rel_tol=0.05, abs_tol=0.01)

    modes = [line.split() for line in lines if line.split()[:1] and line.split()[0] in MODES]
    assert [(row[0], row[1]) for row in modes] == [
        (mode, backend) for backend in ("embedded", "etcd") for mode in MODES
    ]
    for row in modes:
        assert _number(row[2]) > 0 and _number(row[-1]) == 0, row  # placed, never over-committed
