"""How ``astra up`` ends, as a real process: on a signal it does not wait the shutdown
grace for its own services' watch streams, and when it is killed outright its node
agent gets SIGTERM and leaves instead of running on as an orphan."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from astra.testing import free_port
from tests.programs.cli.running import ROOT, child_env

#: Seconds to start, to say something, or to stop: far below :data:`GRACE`.
DEADLINE = 60.0
#: The shutdown grace: a shutdown that waited for it would miss :data:`DEADLINE`.
GRACE = "600"
#: The agent's replica runtime: TCP servers, no Ray.
RUNTIME = "tests.node_agent.runtimes:TcpRuntime"


async def eventually(condition: Callable[[], bool], what: str, log: Callable[[], str]) -> None:
    """Wait for ``condition()``, :data:`DEADLINE` seconds at most (``log`` tells why not)."""
    try:
        async with asyncio.timeout(DEADLINE):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {DEADLINE}s:\n{log()}") from None


class Up:
    """A running ``astra up`` whose log (stderr) is read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace"))

    @property
    def err(self) -> str:
        return "".join(self.lines)

    async def said(self, text: str, times: int = 1) -> str:
        """The first log line with ``text``, once ``times`` lines have it."""

        def seen() -> bool:
            assert self.process.returncode is None, f"astra up exited:\n{self.err}"
            return self.err.count(text) >= times

        await eventually(seen, f"astra up saying {text!r}", lambda: self.err)
        return next(line for line in self.lines if text in line)

    async def exit_code(self) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), DEADLINE)
        except TimeoutError:
            raise AssertionError(f"astra up did not stop in {DEADLINE}s:\n{self.err}") from None
        await self._reader
        return code


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Callable[..., asyncio.Future[Up]]]:
    """``await up(*args, **env)``: ``astra up ARGS`` on a free port with its state in
    tmp; killed at the end if still running."""
    started: list[Up] = []

    async def start(*args: str, **env: str) -> Up:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "programs.cli", "up", "--api-address", f"127.0.0.1:{free_port()}",
            "--state-dir", str(tmp_path / "state"), "--shutdown-grace", GRACE, *args,
            env=child_env(**env), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        started.append(Up(process))
        return started[-1]

    yield start  # type: ignore[misc]
    for running in started:
        if running.process.returncode is None:
            running.process.kill()
            await running.process.wait()
        await running._reader


async def test_a_signal_stops_it_without_waiting_the_grace_for_its_own_streams(up) -> None:
    running = await up("--no-agent", "--no-demo", "--no-gateway", "--log-level", "DEBUG")
    await running.said("AstraRay is up")
    # The App and Scheduler services follow the Resource service's WatchCluster on the
    # API of this same process: both feeds are connected.
    await running.said("following WatchCluster", times=2)
    running.process.send_signal(signal.SIGINT)
    assert await running.exit_code() == 0, running.err
    err = running.err
    assert "stopped" in err and "Traceback" not in err
    assert "Cancelling all calls" not in err
    assert not [line for line in running.lines if re.search(r" (WARNING|ERROR) ", line)], err


async def test_its_agent_gets_sigterm_and_leaves_when_it_is_killed(up, tmp_path: Path) -> None:
    running = await up("--no-demo", "--no-gateway", ASTRA_AGENT_RUNTIME=RUNTIME)
    started = await running.said("node agent started (pid ")
    match = re.search(r"\(pid (\d+), log (.+)\)", started)
    assert match, started
    agent, log = int(match[1]), Path(match[2])
    assert log == tmp_path / "state" / "agent.log"
    try:
        await eventually(
            lambda: "registered nodes/" in log.read_text(), "registered", log.read_text
        )
        assert f"--runtime {RUNTIME}" in Path(f"/proc/{agent}/cmdline").read_text().replace(
            "\0", " "
        )
        running.process.kill()  # no chance to stop its agent
        await running.process.wait()
        # It drains: with the control plane gone with its parent, it then retries its
        # goodbyes for a while (tests/astra/test_with_parent.py waits for such an exit).
        await eventually(lambda: "leaves: SIGTERM" in log.read_text(), "SIGTERM", log.read_text)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(agent, signal.SIGKILL)
