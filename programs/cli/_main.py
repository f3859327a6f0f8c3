"""The ``astra`` command."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

import astra
from astra.config import Settings, settings_options
from astra.errors import AstraError
from astra.store import StoreError
from programs.cli import _ops
from programs.cli._deploy import deploy
from programs.cli._health import health
from programs.cli._infer import infer

_log = logging.getLogger("programs.cli")

#: Commands imported when first looked up, as ``module:attribute``: each brings a part of
#: the platform (the agent and psutil, the gateway, every service, Ray) that the client
#: commands do not need, so ``astra nodes`` starts without them.
_LAZY = {
    "agent": "node_agent:agent_command",
    "gateway": "gateway:gateway_command",
    "serve": "programs.cli._serve:serve",
    "sim": "programs.sim:sim",
    "up": "programs.cli._up:up_command",
}


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
def config(settings: Settings) -> None:
    """Print the settings in effect, as JSON."""
    click.echo(settings.model_dump_json(indent=2))


for command in (*_ops.COMMANDS, deploy, infer, health):
    main.add_command(command)
