"""``astra agent`` (run the node agent) and ``astra agent prestop`` (make it leave).

The ``astra`` group registers :data:`agent` as ``astra agent``; ``python -m node_agent``
runs it alone.
"""

from __future__ import annotations

import asyncio
import signal

import click
import grpc

from astra import configure_logging, server, telemetry
from astra.config import OtelSettings, Settings, settings_options
from node_agent._agent import LEAVE_TIMEOUT, NodeAgent
from node_agent._config import AgentConfig, with_node_address
from node_agent._membership import RegistrationError
from node_agent._prestop import prestop as leave_fleet
from node_agent._runtime import RuntimeFactory, load_runtime_factory


@click.group(name="agent", invoke_without_command=True)
@settings_options
def agent(settings: Settings) -> None:
    """Run this machine's node agent until SIGTERM (or SIGINT), then leave gracefully:
    drain, wait for the replicas, deregister, exit 0.

    The node is --node-id, reached at --node-address; its runtime (--runtime) gets
    the same settings, the node address resolved once here."""
    ctx = click.get_current_context()
    settings = with_node_address(settings)
    config = AgentConfig.from_settings(settings)
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    configure_logging(settings.log_level)
    spec = settings.agent_runtime
    factory = load_runtime_factory(spec, settings) if spec else None
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
