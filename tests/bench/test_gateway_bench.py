"""The gateway benchmark runs end to end (tiny mode: real replicas, the gateway, Debian's
nginx, h2load, Ray Serve on a local Ray) and prints every row and ratio.

Only the tables' shape and sanity are checked, never speed: timings depend on the
machine. A missing nginx or h2load fails the benchmark, hence this test.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.bench.running import run_tiny

EVEN = ["direct", "gateway", "nginx", "ray-serve"]
SLOW = ["gateway", "nginx", "ray-serve"]


def _table(lines: list[str], header: str, labels: list[str]) -> dict[str, list[float]]:
    """The rows of the table under ``header``: label -> numbers."""
    start = lines.index(header) + 1
    assert lines[start].split() == ["target", "req/s", "p50", "ms", "p99", "ms"] + (
        ["req/s", "vs", "direct"] if labels == EVEN else []
    )
    rows = {}
    for line in lines[start + 1 : start + 1 + len(labels)]:
        label, *cells = line.split()
        rows[label] = [float(cell.rstrip("x").replace(",", "")) for cell in cells]
    assert list(rows) == labels
    for label, numbers in rows.items():
        assert all(math.isfinite(value) and value > 0 for value in numbers), label
    return rows


def _ratio(lines: list[str], prefix: str) -> float:
    (line,) = [line for line in lines if line.startswith(prefix)]
    match = re.match(rf"{re.escape(prefix)} ([\d.]+)x", line)
    assert match, line
    return float(match.group(1))


@pytest.mark.timeout(600)
def test_tiny_benchmark_prints_every_target_and_ratio() -> None:
    lines = run_tiny("gateway.py", timeout=580).splitlines()
    even = _table(lines, "every replica alike:", EVEN)
    slow = _table(lines, "one of four replicas 5x slower:", SLOW)
    direct = even["direct"][0]
    for label, (rps, p50, p99, ratio) in even.items():
        assert p50 <= p99, label
        assert math.isclose(ratio, rps / direct, rel_tol=0.02, abs_tol=0.01), label
    for label, (_, p50, p99) in slow.items():
        assert p50 <= p99, label
    for other in ("nginx", "ray-serve"):
        ratio = _ratio(lines, f"ratio gateway/{other} throughput:")
        expected = even["gateway"][0] / even[other][0]
        assert math.isclose(ratio, expected, rel_tol=0.02, abs_tol=0.01), other
        ratio = _ratio(lines, f"ratio gateway/{other} p99:")
        assert math.isclose(ratio, slow["gateway"][2] / slow[other][2], rel_tol=0.02, abs_tol=0.01)
    cpu = [line for line in lines if line.startswith("CPU per request, microseconds")]
    assert len(cpu) == 2
    for line, shown in zip(cpu, (EVEN[:3], SLOW[:2]), strict=True):
        parts = dict(part.split(": ", 1) for part in line.split(": ", 1)[1].split("; "))
        assert list(parts) == shown, line
        for name, groups in parts.items():
            used = dict(group.rsplit(" ", 1) for group in groups.split(", "))
            assert list(used) == (["replicas"] if name == "direct" else ["proxy", "replicas"])
            assert all(float(value.replace(",", "")) > 0 for value in used.values()), line
    assert "target >= 0.8x" in next(line for line in lines if "gateway/nginx throughput" in line)
    assert "target >= 5x" in next(line for line in lines if "gateway/ray-serve throughput" in line)
    assert "target <= 0.5x" in next(line for line in lines if "gateway/nginx p99" in line)
