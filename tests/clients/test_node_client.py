"""The control-plane API driven from Node.js (@grpc/grpc-js and @grpc/proto-loader with
proto/ loaded at run time): clients/node/quickstart.mjs lists the nodes, creates an app
and watches it become ready, against the real services and a simulated fleet.

No replica runs here: the test reports each placed replica READY through the Node
service, as the node agents do once their replicas serve, so "ready" is the App
status's own: the "Ready" condition TRUE for the current generation."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import pytest

from astra.store import open_store
from tests.programs.cli.running import ROOT, Result, agents
from tests.services.app.plane import Plane, plane, spec

QUICKSTART = ROOT / "clients" / "node" / "quickstart.mjs"
#: Nodes of the simulated fleet.
NODES = 2


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("Node.js is not installed: `apt-get install nodejs npm`", pytrace=False)
    if not (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("@grpc/grpc-js is missing: run `npm install` (make test does)", pytrace=False)
    return found


async def quickstart(address: str, app_id: str) -> Result:
    process = await asyncio.create_subprocess_exec(
        node_binary(), str(QUICKSTART), address, app_id,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


@pytest.fixture
async def control() -> AsyncIterator[Plane]:
    async with (
        await open_store("memory://") as store,
        plane(store) as started,
        started.fleet(NODES, prefix="js-"),
    ):
        yield started


async def test_a_node_client_lists_nodes_creates_an_app_and_sees_it_ready(
    control: Plane,
) -> None:
    async with agents(control, "from-node"):
        result = await quickstart(control.address, "from-node")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[: NODES + 2] == [
        f"{NODES} nodes",
        "node nodes/js-0 READY 8 cores",
        "node nodes/js-1 READY 8 cores",
        "created apps/from-node (generation 1)",
    ]
    assert "apps/from-node: 2/2 placed, 2/2 ready" in lines
    ready = lines.index("apps/from-node is ready")
    replicas = lines[ready + 1 :]
    assert len(replicas) == 2 and all(" READY at 127.0.0.1:" in line for line in replicas)
    app = await control.app("from-node")
    assert (app.replicas, app.replica_counts.ready) == (2, 2)


async def test_a_node_client_gets_the_servers_message(control: Plane) -> None:
    await control.create("taken", spec(replicas=1))
    result = await quickstart(control.address, "taken")
    assert result.code == 1 and "created" not in result.out
    assert result.err.startswith("error: ALREADY_EXISTS: ") and "apps/taken" in result.err
