"""``astra nodes``, ``apps``, ``replicas``, ``routes``, ``drain`` and ``health`` as real
processes against the real services and a simulated fleet."""

from __future__ import annotations

import asyncio
import json

from astra._gen.astra.v1 import node_pb2, resource_service_pb2, scheduler_service_pb2
from astra.testing import free_port
from tests.node_agent.waiting import eventually
from tests.programs.cli.conftest import FLEET
from tests.programs.cli.running import agents, astra, rows
from tests.services.app.plane import Plane, spec


async def test_nodes_are_listed_as_a_table_and_as_json(control: Plane) -> None:
    table, as_json, dead = await asyncio.gather(
        astra("nodes", api=control.address),
        astra("nodes", "-o", "json", api=control.address),
        astra("nodes", "--phase", "dead", "--output", "json", api=control.address),
    )
    assert table.code == 0, table.err
    assert table.out.split()[:4] == ["NAME", "PHASE", "REASON", "ZONE"]
    listed = {row[0]: row for row in rows(table.out)}
    assert set(FLEET) <= listed.keys()
    assert listed["cli-0"][1] == "READY" and "0/8" in listed["cli-0"]
    nodes = {node["name"]: node for node in json.loads(as_json.out)}
    assert {f"nodes/{node}" for node in FLEET} <= nodes.keys()
    assert nodes["nodes/cli-1"]["phase"] == "NODE_PHASE_READY"
    assert nodes["nodes/cli-1"]["capacity"]["cpuMillis"] == "8000"
    assert json.loads(dead.out) == []


async def test_apps_replicas_and_routes_show_a_served_app(control: Plane) -> None:
    await control.create("ranker", spec(replicas=2))
    async with agents(control, "ranker"):
        await eventually(lambda: _served(control), timeout=20, what="ranker ready and routed")
    apps, replicas, routes, routes_json = await asyncio.gather(
        astra("apps", api=control.address),
        astra("replicas", "ranker", api=control.address),
        astra("routes", api=control.address),
        astra("routes", "resnet", "-o", "json", api=control.address),
    )
    assert rows(apps.out) == [["ranker", "2/2", "2/2", "1/1", "resnet:1", "Ready"]], apps.err
    phases = [(row[0], row[4], row[5]) for row in rows(replicas.out)]
    assert sorted(phases) == [("ranker", "HEAD", "READY"), ("ranker", "WORKER", "READY")]
    routed = rows(routes.out)
    assert [row[:2] for row in routed] == [["resnet", "1"], ["resnet", "1"]], routes.err
    [route] = json.loads(routes_json.out)
    assert route["model"] == "resnet"
    assert sorted(row[2] for row in routed) == sorted(e["address"] for e in route["endpoints"])


async def _served(control: Plane) -> bool:
    app = await control.app("ranker")
    request = scheduler_service_pb2.GetRoutesRequest(models=["resnet"])
    routes = (await control.scheduler.GetRoutes(request)).routes
    return app.replica_counts.ready == 2 and len(routes) == 1 and len(routes[0].endpoints) == 2


async def test_drain_makes_a_node_leave_and_health_says_so(control: Plane) -> None:
    async with control.fleet(1, prefix="spare-", drain_seconds=60):
        before = await astra("health", control.address, "--node", "spare-0")
        assert (before.code, before.out) == (0, "nodes/spare-0 is READY\n"), before.err
        drained = await astra("drain", "spare-0", "--reason", "Maintenance", api=control.address)
        assert drained.code == 0, drained.err
        assert drained.out == "nodes/spare-0 is DRAINING (Maintenance)\n"
        request = resource_service_pb2.GetNodeRequest(name="nodes/spare-0")
        node = (await control.resources.GetNode(request)).node
        assert node.phase == node_pb2.NODE_PHASE_DRAINING
        after = await astra("health", control.address, "--node", "spare-0")
        assert after.code == 1 and "Error: nodes/spare-0 is DRAINING" in after.err


async def test_health_checks_a_server_by_the_grpc_health_protocol(control: Plane) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    serving, unknown, down = await asyncio.gather(
        astra("health", control.address),
        astra("health", control.address, "--service", "no.such.Service"),
        astra("health", nowhere, "--timeout", "2"),
    )
    assert (serving.code, serving.out) == (0, f"{control.address} is SERVING\n"), serving.err
    assert unknown.code == 1 and "NOT_FOUND" in unknown.err
    assert down.code == 1 and f"UNAVAILABLE: cannot reach {nowhere}" in down.err


async def test_errors_print_the_servers_message_and_no_traceback(control: Plane) -> None:
    results = await asyncio.gather(
        astra("drain", "nodes/nope", api=control.address),
        astra("replicas", "no-such-app", api=control.address),
        astra("nodes", api=f"127.0.0.1:{free_port()}"),
    )
    messages = [
        ("Error: NOT_FOUND: ", "nodes/nope"),
        ("Error: NOT_FOUND: ", "apps/no-such-app"),
        ("Error: UNAVAILABLE: cannot reach 127.0.0.1:", "Connection refused"),
    ]
    for result, (start, names) in zip(results, messages, strict=True):
        assert result.code == 1 and result.err.startswith(start) and names in result.err
        assert result.err.count("\n") == 1 and result.out == "", "one line, no traceback"
