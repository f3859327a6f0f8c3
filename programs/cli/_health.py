"""``astra health ADDRESS``: a container health check over the standard gRPC health
protocol, so that images need no other tool. Exits 0 when healthy, 1 with the reason
otherwise."""

from __future__ import annotations

import click

from astra._gen.astra.v1 import node_pb2
from programs.cli._client import Client
from programs.cli._connect import timeout_option
from programs.cli._describe import enum_name


@click.command()
@click.argument("address")
@click.option("--service", default="", help="the gRPC service to check (default: the server)")
@click.option(
    "--node",
    help="instead, check that this node is READY in the Resource service at ADDRESS "
    "(a node agent's health, as the control plane sees it)",
)
@timeout_option(5.0, "seconds the check may take")
def health(address: str, service: str, node: str | None, timeout: float) -> None:
    """Check that the gRPC server at ADDRESS is SERVING (or that a node is READY)."""
    with Client(address, timeout=timeout) as client:
        if node is None:
            status = client.health(service)
            healthy = status == "SERVING"
            subject = f"{address} {service}".rstrip()
        else:
            found = client.node(node)
            status = enum_name(node_pb2.NodePhase, found.phase)
            healthy = found.phase == node_pb2.NODE_PHASE_READY
            subject = found.name
    if not healthy:
        raise click.ClickException(f"{subject} is {status}")
    click.echo(f"{subject} is {status}")
