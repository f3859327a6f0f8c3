"""An App-service replica in a process of its own (``astra serve app``), to kill."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from astra.testing import free_port
from tests.node_agent.agent_process import ROOT, environment


class AppProcess:
    """One replica at :attr:`address`, its output kept in a log file."""

    def __init__(self, store_url: str, resource: str, replica_id: str, log_dir: Path) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.replica_id = replica_id
        self._command = [
            sys.executable, "-m", "programs.cli", "serve", "app", "--store-url", store_url,
            "--api-address", self.address, "--resource-address", resource,
            "--replica-id", replica_id, "--log-level", "INFO",
        ]  # fmt: skip
        self.log = log_dir / f"{replica_id}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                *self._command, cwd=ROOT, env=environment(),
                stdout=output, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def kill(self) -> None:
        """SIGKILL: no lease revoked, nothing flushed."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")
