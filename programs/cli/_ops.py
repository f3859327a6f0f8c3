"""The operator's listings and actions: ``astra nodes``, ``apps``, ``replicas``,
``routes`` and ``drain``."""

from __future__ import annotations

import time

import click
from google.protobuf import timestamp_pb2

from astra._gen.astra.v1 import node_pb2, replica_pb2, route_pb2
from programs.cli._client import Client
from programs.cli._connect import api_client
from programs.cli._describe import app_state, enum_name
from programs.cli._output import Column, emit, output_option

_GIB = float(1 << 30)


def _id(name: str) -> str:
    return name.rpartition("/")[2]


def _ago(stamp: timestamp_pb2.Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return f"{max(0.0, time.time() - stamp.ToNanoseconds() / 1e9):.1f}s ago"


def _share(used: float, total: float, unit: str = "") -> str:
    return f"{used:g}/{total:g}{unit}"


def _gib(size: int) -> float:
    return round(size / _GIB, 1)


NODE_COLUMNS = (
    Column("NAME", lambda node: _id(node.name)),
    Column("PHASE", lambda node: enum_name(node_pb2.NodePhase, node.phase)),
    Column("REASON", lambda node: node.phase_reason),
    Column("ZONE", lambda node: node.zone),
    Column("ACCELERATOR", lambda node: node.accelerator),
    Column(
        "CPU",
        lambda node: _share(node.allocated.cpu_millis / 1000, node.capacity.cpu_millis / 1000),
    ),
    Column(
        "MEMORY",
        lambda node: _share(
            _gib(node.allocated.memory_bytes), _gib(node.capacity.memory_bytes), " GiB"
        ),
    ),
    Column("GPUS", lambda node: _share(node.allocated.gpus, node.capacity.gpus)),
    Column("ADDRESS", lambda node: node.address),
    Column("HEARTBEAT", lambda node: _ago(node.heartbeat_time)),
)

APP_COLUMNS = (
    Column("NAME", lambda app: _id(app.name)),
    Column("READY", lambda app: f"{app.replica_counts.ready}/{app.replica_counts.desired}"),
    Column("PLACED", lambda app: f"{app.replica_counts.placed}/{app.replica_counts.desired}"),
    Column("GENERATION", lambda app: f"{app.observed_generation}/{app.generation}"),
    Column("MODELS", lambda app: ", ".join(f"{m.name}:{m.version or '1'}" for m in app.models)),
    Column("STATE", app_state),
)

REPLICA_COLUMNS = (
    Column("APP", lambda replica: replica.name.split("/")[1]),
    Column("REPLICA", lambda replica: _id(replica.name)),
    Column("NODE", lambda replica: _id(replica.node)),
    Column("CLUSTER", lambda replica: replica.ray_cluster),
    Column("ROLE", lambda replica: enum_name(replica_pb2.ReplicaRole, replica.role)),
    Column("PHASE", lambda replica: enum_name(replica_pb2.ReplicaPhase, replica.phase)),
    Column("ENDPOINT", lambda replica: replica.endpoint),
    Column("PROVIDER", lambda replica: replica.execution_provider),
    Column("MESSAGE", lambda replica: replica.message),
)

_NO_ENDPOINT = route_pb2.RouteEndpoint()

#: Route rows are (route, endpoint) pairs: one per endpoint, one for a route with none.
ROUTE_COLUMNS = (
    Column("MODEL", lambda row: row[0].model),
    Column("VERSION", lambda row: row[0].version),
    Column("ENDPOINT", lambda row: row[1].address),
    Column("WEIGHT", lambda row: f"{row[1].base_weight:g}" if row[1].address else ""),
    Column("NODE", lambda row: _id(row[1].node)),
    Column("REPLICA", lambda row: row[1].replica.removeprefix("apps/")),
    Column("ACCELERATOR", lambda row: row[1].accelerator),
    Column("ZONE", lambda row: row[1].zone),
)


def _route_rows(
    route: route_pb2.Route,
) -> list[tuple[route_pb2.Route, route_pb2.RouteEndpoint]]:
    return [(route, endpoint) for endpoint in route.endpoints] or [(route, _NO_ENDPOINT)]


def _phase(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    return (
        node_pb2.NODE_PHASE_UNSPECIFIED
        if value is None
        else node_pb2.NodePhase.Value(f"NODE_PHASE_{value.upper()}")
    )


@click.command()
@click.option(
    "--phase",
    type=click.Choice(["ready", "draining", "dead"], case_sensitive=False),
    callback=_phase,
    help="only nodes in this phase",
)
@output_option
@api_client
def nodes(client: Client, phase: int, output: str) -> None:
    """List the fleet's nodes: phase, capacity and what is allocated, last heartbeat."""
    emit(client.nodes(phase=phase), output, NODE_COLUMNS)


@click.command()
@output_option
@api_client
def apps(client: Client, output: str) -> None:
    """List the apps: replicas ready and placed, generations, and their state."""
    emit(client.apps(), output, APP_COLUMNS)


@click.command()
@click.argument("app_names", metavar="[APP]...", nargs=-1)
@output_option
@api_client
def replicas(client: Client, app_names: tuple[str, ...], output: str) -> None:
    """List the replicas of the APPs (of every app when none is named)."""
    names = app_names or [app.name for app in client.apps()]
    emit([replica for name in names for replica in client.replicas(name)], output, REPLICA_COLUMNS)


@click.command()
@click.argument("models", metavar="[MODEL]...", nargs=-1)
@output_option
@api_client
def routes(client: Client, models: tuple[str, ...], output: str) -> None:
    """List where the MODELs (every model when none is named) are served, with each
    endpoint's base weight."""
    emit(client.routes(models), output, ROUTE_COLUMNS, _route_rows)


@click.command()
@click.argument("node")
@click.option(
    "--reason", default="Manual", show_default=True, help="recorded as the node's phase reason"
)
@api_client
def drain(client: Client, node: str, reason: str) -> None:
    """Drain NODE: it leaves every route at once, takes no new replica, and its replicas
    are placed elsewhere."""
    drained = client.drain(node, reason=reason)
    phase = enum_name(node_pb2.NodePhase, drained.phase)
    click.echo(f"{drained.name} is {phase} ({drained.phase_reason})")


COMMANDS = (nodes, apps, replicas, routes, drain)
