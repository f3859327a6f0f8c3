"""Picker benchmark: the cost of one pick at 10, 1k, 10k and 100k endpoints.

    python bench/picker.py [--tiny]

For each size, one picker of each implementation gets random weights, warms up, then
picks; the table shows nanoseconds per pick, best of five rounds of CPU time (so other
work on the machine inflates it less than wall time would):

- native: picks made in a C++ loop (``Picker.skip``): the cost of the algorithm;
- native, per call: ``Picker.pick()`` called from Python, binding overhead included;
- python: the pure-Python twin.

The target is at most 100 ns per pick at 1,000 endpoints, native. The cost grows as
O(log n); at 100k endpoints the heaps leave the CPU caches, which costs more than the
extra levels. ``--tiny`` makes a few hundred picks per cell (for tests: the numbers
are then only a smoke signal).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import native_core, python_core

SIZES = (10, 1_000, 10_000, 100_000)
ROUNDS = 5
TARGET_NS = 100.0
TARGET_SIZE = 1_000


@dataclass(frozen=True)
class Timing:
    native_picks: int
    call_picks: int
    python_picks: int


FULL = Timing(native_picks=2_000_000, call_picks=200_000, python_picks=20_000)
TINY = Timing(native_picks=500, call_picks=200, python_picks=200)


def _picker_of(implementation: Any, size: int, seed: int) -> Any:
    rng = random.Random(seed)
    picker = implementation.Picker()
    picker.update([(slot, rng.randint(1, implementation.MAX_WEIGHT)) for slot in range(size)])
    return picker


def _best_ns(run: Callable[[int], object], picks: int) -> float:
    """Nanoseconds per pick: the best of :data:`ROUNDS` rounds of ``picks`` picks, after
    a warm-up round."""
    run(picks)
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time_ns()
        run(picks)
        best = min(best, (time.process_time_ns() - start) / picks)
    return best


def _calls(picker: Any) -> Callable[[int], object]:
    pick = picker.pick

    def run(picks: int) -> None:
        for _ in range(picks):
            pick()

    return run


def measure(size: int, timing: Timing) -> tuple[float, float, float]:
    """(native, native per call, python) nanoseconds per pick at ``size`` endpoints."""
    native = _picker_of(native_core(), size, seed=size)
    python = _picker_of(python_core(), size, seed=size)
    return (
        _best_ns(native.skip, timing.native_picks),
        _best_ns(_calls(native), timing.call_picks),
        _best_ns(_calls(python), timing.python_picks),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke run for tests")
    args = parser.parse_args()
    timing = TINY if args.tiny else FULL
    print("ns per pick, best of 5 rounds of CPU time; random weights")
    print(f"{'endpoints':<12}{'native':>12}{'native/call':>14}{'python':>12}{'python/native':>16}")
    results = {}
    for size in SIZES:
        native, per_call, python = results[size] = measure(size, timing)
        print(
            f"{size:<12,}{native:>12.1f}{per_call:>14.1f}{python:>12.1f}{python / native:>15.1f}x"
        )
    verdict = "met" if results[TARGET_SIZE][0] <= TARGET_NS else "MISSED"
    print(f"target: <= {TARGET_NS:.0f} ns per pick at {TARGET_SIZE:,} endpoints, native: {verdict}")


if __name__ == "__main__":
    main()
