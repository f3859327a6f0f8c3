"""``astra agent`` (run the node agent) and ``astra agent prestop`` (make it leave).

The ``astra`` group registers :data:`agent` as ``astra agent``; ``python -m node_agent``
runs it alone.
"""

from __future__ import annotations

import asyncio
import signal
import socket

import click
import grpc

from astra import configure_logging, server, telemetry
from astra.config import OtelSettings, Settings, settings_options
from node_agent._agent import LEAVE_TIMEOUT, NodeAgent
from node_agent._config import AgentConfig
from node_agent._membership import RegistrationError
from node_agent._prestop import prestop as leave_fleet
from node_agent._probe import address_towards
from node_agent._runtime import RuntimeFactory, load_runtime_factory


def _parse_labels(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx=ctx, param=param)
        labels[key] = label
    return labels


@click.group(name="agent", invoke_without_command=True)
@settings_options
@click.option(
    "--node-id",
    envvar="ASTRA_NODE_ID",
    default=socket.gethostname,
    show_default="the host name",
    help="this node's id [env: ASTRA_NODE_ID]",
)
@click.option(
    "--node-address",
    envvar="ASTRA_NODE_ADDRESS",
    help="where replicas on this machine are reached (default: this host's address towards "
    "the API) [env: ASTRA_NODE_ADDRESS]",
)
@click.option(
    "--zone", envvar="ASTRA_NODE_ZONE", default="", help="failure domain [env: ASTRA_NODE_ZONE]"
)
@click.option(
    "--accelerator",
    envvar="ASTRA_NODE_ACCELERATOR",
    default="",
    help="accelerator type (default: from the GPUs found) [env: ASTRA_NODE_ACCELERATOR]",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    envvar="ASTRA_NODE_LABELS",
    callback=_parse_labels,
    help="KEY=VALUE placement label, repeatable [env: ASTRA_NODE_LABELS, space separated]",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    envvar="ASTRA_DRAIN_TIMEOUT",
    show_default=True,
    help="seconds a graceful exit waits for replicas to drain [env: ASTRA_DRAIN_TIMEOUT]",
)
@click.option(
    "--runtime", "runtime_spec", envvar="ASTRA_AGENT_RUNTIME",
    help="module:factory of the replica runtime; without one, assignments are only "
    "acknowledged [env: ASTRA_AGENT_RUNTIME]",
)  # fmt: skip
def agent(
    settings: Settings,
    node_id: str,
    node_address: str | None,
    zone: str,
    accelerator: str,
    labels: dict[str, str],
    drain_timeout: float,
    runtime_spec: str | None,
) -> None:
    """Run this machine's node agent until SIGTERM (or SIGINT), then leave gracefully:
    drain, wait for the replicas, deregister, exit 0."""
    ctx = click.get_current_context()
    config = AgentConfig(
        node_id=node_id,
        server=settings.api_address,
        address=node_address or address_towards(settings.api_address),
        zone=zone,
        accelerator=accelerator,
        labels=labels,
        heartbeat_interval=settings.heartbeat_interval,
        drain_timeout=drain_timeout,
    )
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    configure_logging(settings.log_level)
    factory = load_runtime_factory(runtime_spec) if runtime_spec else None
    try:
        code = server.run(_run(config, factory, settings.otel))
    except RegistrationError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.exit(code)


async def _run(config: AgentConfig, factory: RuntimeFactory | None, otel: OtelSettings) -> int:
    telemetry.configure(otel)  # before any channel opens: channels carry traces when on
    node_agent = NodeAgent(config, runtime=factory)
    loop = asyncio.get_running_loop()
    signals = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
    for signum, reason in signals.items():
        loop.add_signal_handler(signum, node_agent.request_drain, reason)
    try:
        return await node_agent.run()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await asyncio.to_thread(telemetry.shutdown)  # a blocking flush, off the loop


@agent.command()
@click.option(
    "--timeout", type=click.FloatRange(min=0),
    help=f"seconds to wait for the agent to leave (default: the drain timeout + {LEAVE_TIMEOUT:g})",
)  # fmt: skip
@click.pass_obj
def prestop(config: AgentConfig, timeout: float | None) -> None:
    """Drain this node and wait until its agent has left the fleet (a PreStop hook)."""
    timeout = config.drain_timeout + LEAVE_TIMEOUT if timeout is None else timeout
    try:
        gone = server.run(leave_fleet(config.server, config.node_id, timeout=timeout))
    except grpc.aio.AioRpcError as exc:
        raise click.ClickException(
            f"cannot drain {config.name}: {exc.code().name}: {exc.details()}"
        ) from exc
    if not gone:
        raise click.ClickException(f"{config.name} is still in the fleet after {timeout:g}s")
    click.echo(f"{config.name} left the fleet")
