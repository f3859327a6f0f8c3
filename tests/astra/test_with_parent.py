"""A command wrapped by ``with_parent`` gets SIGTERM when its parent is SIGKILLed, and is
not run at all when its parent is already gone (real processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from astra._with_parent import EXIT_ORPHANED, with_parent
from tests.programs.cli.running import ROOT, child_env

#: Seconds a process gets to start, or to exit once signalled.
DEADLINE = 30.0

#: The child: says when it is ready, and notes SIGTERM before exiting.
CHILD = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def terminated(signum, frame):
    out.write_text("terminated")
    sys.exit(0)
signal.signal(signal.SIGTERM, terminated)
out.write_text("ready")
while True:
    time.sleep(1)
"""

#: The parent: starts the wrapped child, prints its pid, waits to be killed.
PARENT = """
import subprocess, sys, time
from astra import with_parent
child = subprocess.Popen(with_parent([sys.executable, "-c", sys.argv[1], sys.argv[2]]))
print(child.pid, flush=True)
while True:
    time.sleep(1)
"""


async def until(condition, what: str) -> None:
    """Wait for ``condition()``, :data:`DEADLINE` seconds at most."""
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.05)
    assert condition(), what


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_the_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "child"
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT, CHILD, str(out),
        env=child_env(), cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    pid = 0
    try:
        assert parent.stdout is not None
        pid = int(await asyncio.wait_for(parent.stdout.readline(), DEADLINE))
        await until(lambda: out.exists() and out.read_text() == "ready", "the child started")
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1] == b"-c"  # exec'd
        parent.kill()
        await parent.wait()
        await until(lambda: gone(pid), "the child exited")
        assert out.read_text() == "terminated"
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if pid and not gone(pid):  # the test failed: no orphan left behind
            os.kill(pid, signal.SIGKILL)


def test_the_command_is_not_run_when_the_parent_is_already_gone(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(out)!r}, 'w').close()"]
    wrapped = with_parent(command)
    assert wrapped[-len(command) :] == command and wrapped[3] == str(os.getpid())
    wrapped[3] = str(os.getppid())  # not the wrapper's parent: this process is
    done = subprocess.run(wrapped, env=child_env(), cwd=ROOT, timeout=DEADLINE, check=False)
    assert done.returncode == EXIT_ORPHANED
    assert not out.exists()
    check = subprocess.run(
        with_parent(command), env=child_env(), cwd=ROOT, timeout=DEADLINE, check=True
    )
    assert check.returncode == 0 and out.exists()
