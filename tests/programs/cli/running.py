"""The ``astra`` command run as a real process against the API of the test's control
plane, and agents' work done for it (replicas reported READY)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from astra._gen.astra.v1 import replica_pb2
from tests.services.app.plane import Plane

ROOT = Path(__file__).parents[3]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def child_env(**more: str) -> dict[str, str]:
    """The environment of a child ``astra``: none of the machine's ASTRA_*/OTEL_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRA_", "OTEL_"))}
    return {**clean, "PYTHONPATH": str(ROOT), **more}


async def astra(*args: str, api: str | None = None, timeout: float = 60.0) -> Result:
    """Run ``astra ARGS`` (against the API at ``api``, through ``ASTRA_API_ADDRESS``)."""
    env = child_env(**({"ASTRA_API_ADDRESS": api} if api else {}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "programs.cli", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"astra {' '.join(args)} did not exit within {timeout}s") from None
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def rows(table: str) -> list[list[str]]:
    """A printed table's rows below its header rule, split into cells."""
    lines = table.splitlines()
    rule = next(index for index, line in enumerate(lines) if line.startswith("─"))
    return [line.split() for line in lines[rule + 1 :] if line.strip()]


@contextlib.asynccontextmanager
async def agents(control: Plane, app_id: str) -> AsyncIterator[None]:
    """Report every PENDING replica of ``app_id`` READY as soon as it is placed, as the
    agents of its nodes would once their replicas serve (the app may not exist yet)."""

    async def serve() -> None:
        while True:
            try:
                replicas = await control.replicas(app_id)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                replicas = []
            pending = [r for r in replicas if r.phase == replica_pb2.REPLICA_PHASE_PENDING]
            await control.report(pending)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(serve())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
