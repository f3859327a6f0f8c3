"""A real agent process (``python -m node_agent``) with the test runtime."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.node_agent.control_plane import HEARTBEAT_INTERVAL, ControlPlane

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "tests.node_agent.runtimes:TcpRuntime"


class AgentProcess:
    """``python -m node_agent`` for one node, its output kept in a log file."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(
        cls,
        plane: ControlPlane,
        node_id: str,
        log_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> AgentProcess:
        log = log_dir / f"agent-{node_id}.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                *command(plane, node_id), "--runtime", RUNTIME, "--zone", "z1",
                "--label", "pool=test", *args,
                cwd=ROOT, env=environment(env), stdout=output, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        return cls(process, log)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def exit_code(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; kill it if it does not in time."""
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"the agent did not exit in {timeout}s:\n{self.output()}"
            ) from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def command(plane: ControlPlane, node_id: str) -> list[str]:
    """``python -m node_agent`` with the node and the control plane's address."""
    return [
        sys.executable, "-m", "node_agent", "--api-address", plane.address, "--node-id", node_id,
        "--heartbeat-interval", str(HEARTBEAT_INTERVAL), "--log-level", "INFO",
    ]  # fmt: skip


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ASTRA_* settings, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ASTRA_")}
    env["PYTHONPATH"] = str(ROOT)
    return env | (extra or {})
