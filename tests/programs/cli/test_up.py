"""``astra up`` as people run it: a real process with a node agent, a local Ray, the demo
app and the gateway; every way of calling it that it prints is run, tritonclient is
checked against numpy, Ctrl-C stops it cleanly and a second run resumes its state."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from astra.config import Settings
from astra.models import write_demo_model
from astra.testing import free_port
from programs.cli._howto import DEMO_INPUT, HEADER, usage
from tests.programs.cli.running import ROOT, child_env

TRITON = ROOT / "tests" / "node_agent" / "triton_client.py"
#: Seconds ``astra up`` gets to print how to call it: Ray starts on 2 busy cores.
UP_TIMEOUT = 240.0
#: Seconds it gets to drain and stop on Ctrl-C.
STOP_TIMEOUT = 120.0


@dataclass
class Up:
    """A running ``astra up``; its stdout is read as it comes, its stderr goes to a file."""

    process: asyncio.subprocess.Process
    err_path: Path

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    async def how_to_call(self) -> str:
        """The block it prints once the demo serves through the gateway."""
        assert self.process.stdout is not None
        lines: list[str] = []

        async def read() -> None:
            while not lines or "/inference.GRPCInferenceService/ModelInfer" not in lines[-1]:
                line = await self.process.stdout.readline()
                assert line, f"astra up ended before printing how to call it:\n{self.err}"
                lines.append(line.decode())

        try:
            await asyncio.wait_for(read(), UP_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no how-to-call block in {UP_TIMEOUT}s:\n{self.err}") from None
        block = "".join(lines)
        assert HEADER in block, block
        return block

    async def interrupt(self) -> int:
        """Ctrl-C; its exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"astra up did not stop in {STOP_TIMEOUT}s:\n{self.err}") from None


@pytest.fixture
async def up(tmp_path: Path):
    """Start ``astra up`` with ``args`` (in a process group of its own, with its node
    agent); stopped at the end if still running."""
    started: list[Up] = []

    async def start(*args: str, name: str) -> Up:
        err_path = tmp_path / f"{name}.err"
        with err_path.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "programs.cli", "up", *args,
                env=child_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        started.append(Up(process, err_path))
        return started[-1]

    yield start
    for running in started:
        if running.process.returncode is None:  # the test failed: stop it, its agent too
            running.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(running.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                os.killpg(running.process.pid, signal.SIGKILL)
                await running.process.wait()


async def run(*command: str, stdin: str = "", shell: bool = False) -> str:
    """Run ``command`` (a shell script when ``shell``) with the test's Python first on
    ``PATH``; its stdout, once it exited 0."""
    env = child_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    argv = ("bash", "-c", command[0]) if shell else command
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode == 0, f"{command} exited {process.returncode}:\n{err.decode()}"
    return out.decode()


async def check_with_tritonclient(gateway: str, expected: np.ndarray) -> None:
    """tests/node_agent/triton_client.py against the gateway: health, metadata, inference."""
    out = await run(
        sys.executable,
        str(TRITON),
        "check",
        gateway,
        "demo",
        stdin=json.dumps({"input": DEMO_INPUT}),
    )
    checked = json.loads(out)
    assert checked["live"] and checked["ready"] and checked["model_ready"]
    assert checked["server"] == "astra-gateway"
    assert checked["inputs"] == [["input", "FP32"]]
    np.testing.assert_allclose(checked["output"], expected, rtol=1e-5, atol=1e-6)


def printed(block: str, part: str) -> str:
    """The one line of the block with ``part`` in it."""
    [line] = [line for line in block.splitlines() if part in line]
    return line


@pytest.fixture
def expected(tmp_path: Path) -> np.ndarray:
    """What the demo model answers for :data:`DEMO_INPUT`, by numpy."""
    demo = write_demo_model(tmp_path / "reference")
    return demo.reference(np.array(DEMO_INPUT, dtype=np.float32))


@pytest.mark.timeout(2 * (UP_TIMEOUT + STOP_TIMEOUT) + 60)
async def test_up_serves_the_demo_on_the_gateway_stops_on_ctrl_c_and_resumes(
    up, expected: np.ndarray, tmp_path: Path
) -> None:
    gateway, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    args = ("--state-dir", str(tmp_path / "state"), "--api-address", api)
    args += ("--gateway-address", gateway)

    first = await up(*args, name="first")
    block = await first.how_to_call()
    assert f"on the gateway {gateway}" in block and f"API is on {api}" in block
    await check_with_tritonclient(gateway, expected)
    # What it printed works as printed: astra infer, the tritonclient snippet, buf curl.
    infer = shlex.split(printed(block, " infer demo "))
    [output] = json.loads(await run(*infer, "-o", "json"))
    np.testing.assert_allclose(output["data"], expected, rtol=1e-5, atol=1e-6)
    start, end = block.index("python3 - <<'EOF'"), block.index("\nEOF\n") + len("\nEOF\n")
    snippet = await run(block[start:end], shell=True)
    np.testing.assert_allclose(json.loads(snippet), expected, rtol=1e-5, atol=1e-6)
    answer = json.loads(await run(printed(block, " buf curl --protocol "), shell=True))
    assert answer["outputs"][0]["shape"] == ["1", "3"]
    np.testing.assert_allclose(
        answer["outputs"][0]["contents"]["fp32Contents"], expected[0], rtol=1e-5, atol=1e-6
    )

    assert await first.interrupt() == 0, first.err
    err = first.err
    assert "demo app deployed" in err
    for said in ("shutting down", "draining the node agent", "node agent exited with 0", "stopped"):
        assert said in err, err
    assert err.index("gateway on") < err.index("AstraRay is up") < err.index("shutting down")
    assert "Traceback" not in err, err
    assert "deregistered" in (tmp_path / "state" / "agent.log").read_text()

    second = await up(*args, name="second")
    await second.how_to_call()
    assert "demo app found in the store (resumed)" in second.err
    await check_with_tritonclient(gateway, expected)
    assert await second.interrupt() == 0, second.err
    assert "Traceback" not in second.err and "stopped" in second.err


def test_the_printed_astra_infer_line_names_the_gateway_only_when_not_the_default() -> None:
    default = Settings.model_fields["gateway_address"].default
    assert "--gateway" not in printed(usage(gateway=default, api="h:1", model="demo"), " infer ")
    line = printed(usage(gateway="127.0.0.1:9", api="h:1", model="demo"), " infer ")
    wanted = ["infer", "demo", "--input", "input=[[1, 2, 3, 4]]", "--gateway", "127.0.0.1:9"]
    assert shlex.split(line)[1:] == wanted
