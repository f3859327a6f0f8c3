"""Helpers for the tests that run real Ray: replica statuses, tritonclient in a
subprocess, and the processes of a replica's Ray node."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from astra._gen.astra.v1 import app_pb2, node_service_pb2, replica_pb2
from astra.models import DemoModel
from tests.node_agent.waiting import eventually

TRITON_CLIENT = Path(__file__).with_name("triton_client.py")
ROOT = Path(__file__).resolve().parents[2]
Phase = replica_pb2.ReplicaPhase.ValueType
READY = replica_pb2.REPLICA_PHASE_READY


def short_dir() -> Path:
    """A fresh temp dir with a short path (Ray's Unix sockets live under it)."""
    return Path(tempfile.mkdtemp(prefix="astra-t", dir="/tmp" if os.path.isdir("/tmp") else None))


class Reports:
    """Every status a runtime reported, by replica (the runtime's ``report`` callback)."""

    def __init__(self) -> None:
        self.by_replica: dict[str, list[node_service_pb2.ReplicaStatusReport]] = defaultdict(list)

    def __call__(self, report: node_service_pb2.ReplicaStatusReport) -> None:
        self.by_replica[report.replica].append(report)

    def phases(self, name: str) -> list[str]:
        return [
            replica_pb2.ReplicaPhase.Name(report.phase).removeprefix("REPLICA_PHASE_")
            for report in self.by_replica[name]
        ]

    def last(self, name: str) -> node_service_pb2.ReplicaStatusReport:
        return self.by_replica[name][-1]

    async def until(
        self, name: str, phase: Phase, *, timeout: float, after: int = 0
    ) -> node_service_pb2.ReplicaStatusReport:
        """The first report of ``phase`` for ``name`` among those from index ``after`` on."""

        def found() -> bool:
            return any(report.phase == phase for report in self.by_replica[name][after:])

        what = f"{name} {replica_pb2.ReplicaPhase.Name(phase)} (so far: {self.phases(name)})"
        await eventually(found, timeout=timeout, what=what)
        return next(report for report in self.by_replica[name][after:] if report.phase == phase)


def replica(
    name: str,
    model: DemoModel,
    *,
    role: int = replica_pb2.REPLICA_ROLE_HEAD,
    head: str = "",
    sha256: str = "",
) -> replica_pb2.Replica:
    return replica_pb2.Replica(
        name=name,
        ray_cluster="c0",
        role=role,  # type: ignore[arg-type]
        ray_head_address=head,
        resources=app_pb2.ReplicaResources(cpu_millis=1000),
        models=[app_pb2.Model(name="demo", uri=str(model.path), sha256=sha256 or model.sha256)],
    )


def demo_batch(rows: int = 4) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)


async def triton_check(endpoint: str, batch: np.ndarray) -> dict[str, Any]:
    """tritonclient's view of the replica at ``endpoint``: probes, metadata, one inference."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(TRITON_CLIENT), "check", endpoint, "demo",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(
        process.communicate(json.dumps({"input": batch.tolist()}).encode()), 60
    )
    assert process.returncode == 0, err.decode()
    return json.loads(out)  # type: ignore[no-any-return]


class TritonLoad:
    """tritonclient calling ModelInfer from several threads until :meth:`stop`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(
        cls,
        endpoint: str,
        batch: np.ndarray,
        expected: np.ndarray,
        *,
        threads: int = 4,
        pause: float = 0.0,
    ) -> TritonLoad:
        """Start calling; returns once answers flow. ``pause``: seconds each thread
        waits between calls."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(TRITON_CLIENT), "load", endpoint, "demo", str(threads), str(pause),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(
            json.dumps({"input": batch.tolist(), "expected": expected.tolist()}).encode() + b"\n"
        )
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line == b"flowing\n", line
        return cls(process)

    async def stop(self) -> dict[str, int]:
        """Stop the calls; the count of each outcome."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        out = await asyncio.wait_for(self._process.stdout.read(), 60)
        await self._process.wait()
        return json.loads(out)  # type: ignore[no-any-return]

    async def kill(self) -> None:
        """End the client at once (a test that failed midway)."""
        if self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


def ray_process(node_pid: int, name: str) -> psutil.Process:
    """The Ray process called ``name`` (``raylet``, ``gcs_server``) of the Ray node whose
    ``ray start`` runs as ``node_pid``."""
    found = [
        child for child in psutil.Process(node_pid).children(recursive=True) if child.name() == name
    ]
    assert len(found) == 1, f"{len(found)} {name} processes under {node_pid}"
    return found[0]
