"""The ``astra`` command."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

import astra
from astra import server
from astra._log import configure_logging
from astra.cli import _local, _ops, _up
from astra.cli._deploy import deploy
from astra.cli._health import health
from astra.cli._howto import how_to_call
from astra.cli._infer import infer
from astra.cli._options import settings_options
from astra.config import Settings
from astra.errors import AstraError
from astra.sim._cli import sim
from astra.store import StoreError
from node_agent._cli import agent

_log = logging.getLogger("astra.cli")

#: Commands imported when first looked up, as ``module:attribute``: their packages import
#: this one on their own (``python -m gateway``), so importing them here is a cycle.
_LAZY = {"gateway": "gateway._cli:gateway_command"}


class _Group(click.Group):
    """A click group whose commands fail with a one-line message, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY and cmd_name not in self.commands:
            module, _, attribute = _LAZY[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (AstraError, StoreError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            _log.debug("unexpected error", exc_info=True)
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (--log-level debug shows where)"
            ) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(astra.__version__, prog_name="astra")
def main() -> None:
    """AstraRay: a control plane for AI inference on Ray.

    Every setting can be given as a flag, an ASTRA_* environment variable or in the
    TOML file named by --config (or ASTRA_CONFIG), in that order of precedence.
    """


@main.command()
@settings_options
@click.option(
    "--agent/--no-agent", default=True, show_default=True,
    help="run a node agent with a local Ray on this machine",
)  # fmt: skip
@click.option(
    "--demo/--no-demo", default=True, show_default=True,
    help="deploy the demo app (needs the agent to serve)",
)  # fmt: skip
@click.option(
    "--gateway/--no-gateway", default=True, show_default=True,
    help="serve the inference gateway on --gateway-address",
)  # fmt: skip
def up(settings: Settings, agent: bool, demo: bool, gateway: bool) -> None:
    """Run AstraRay on this machine (embedded store by default) until Ctrl-C or SIGTERM:
    the four services, a node agent with a local Ray, a demo app and the gateway; once
    the demo model serves through the gateway, print how to call it."""
    from gateway import gateway_component  # imports this package: not at the top

    configure_logging(settings.log_level)
    wanted = (
        (agent, _local.local_agent),
        (demo, _local.demo_app),
        (gateway, gateway_component),
        (demo and gateway, how_to_call),
    )
    local = tuple(component for on, component in wanted if on)
    server.run(_up.up(settings, (*_up.COMPONENTS, *local)))


@main.command()
@settings_options
def config(settings: Settings) -> None:
    """Print the settings in effect, as JSON."""
    click.echo(settings.model_dump_json(indent=2))


for command in (agent, sim, *_ops.COMMANDS, deploy, infer, health):
    main.add_command(command)
