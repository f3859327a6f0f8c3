"""The membership benchmark runs end to end (tiny mode) and prints a sane table.

Timings depend on the machine: only the table's shape and bounds that any working
service meets are checked (every drained and silenced node is seen, in time).
"""

from __future__ import annotations

from tests.bench.running import run_tiny


def test_tiny_membership_benchmark_prints_the_table() -> None:
    out = run_tiny("membership.py", timeout=110)
    lines = out.splitlines()
    header = next(index for index, line in enumerate(lines) if line.split()[:1] == ["nodes"])
    assert "heartbeats/s" in lines[header] and "memory/node" in lines[header]
    row = lines[header + 1].replace(",", "").split()
    nodes, ingest, cpu, memory, _, drain, dead, dead_after, false_dead = row
    assert int(nodes) == 200
    assert float(ingest) > 0 and float(cpu) >= 0 and memory.lstrip("-").isdigit()
    drain_p50, drain_p99 = (float(value) for value in drain.split("/"))
    assert 0 < drain_p50 <= drain_p99 < 5000  # milliseconds
    dead_p50, dead_p99 = (float(value) for value in dead.split("/"))
    assert dead_after == "(1)"
    assert 1.0 <= dead_p50 <= dead_p99 < 5.0  # never before dead_after
    assert "not seen" not in out
    assert false_dead == "0"
