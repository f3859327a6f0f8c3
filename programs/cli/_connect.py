"""The options of the commands that call the API, and the client they make."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from astra import telemetry
from astra.config import Settings
from programs.cli._client import Client


def timeout_option(default: float, text: str) -> Callable[[Callable[..., Any]], Any]:
    """A ``--timeout`` in seconds (> 0) with ``default``."""
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=default,
        show_default=True,
        help=text,
    )


def load_settings(config: Path | None, **flags: Any) -> Settings:
    """The settings, the ``flags`` given (those not None) taking precedence."""
    overrides = {name: value for name, value in flags.items() if value is not None}
    return Settings.load(config_file=config, overrides=overrides)


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--config``: the TOML file the settings come from (besides flags and environment)."""
    return click.option(
        "--config",
        type=click.Path(path_type=Path, dir_okay=False),
        help="TOML file with settings [env: ASTRA_CONFIG]",
    )(command)


def api_client(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` ``--api-address``, ``--config`` and ``--timeout``; it receives a
    connected ``client`` (closed when it returns) instead.

    With OpenTelemetry configured (``ASTRA_OTEL__*``, ``[otel]`` in the config file, or
    ``OTEL_EXPORTER_OTLP_ENDPOINT``), the command is a span whose RPCs carry its trace
    to the services.

    The address comes, highest precedence first, from the flag, ``ASTRA_API_ADDRESS``,
    the TOML config file, or the default, as every setting does.
    """

    @click.option(
        "--api-address",
        help="host:port of the control-plane API [env: ASTRA_API_ADDRESS; default: 127.0.0.1:7100]",
    )
    @config_option
    @timeout_option(10.0, "seconds each call to the API may take")
    @functools.wraps(command)
    def with_client(
        api_address: str | None, config: Path | None, timeout: float, **params: Any
    ) -> Any:
        settings = load_settings(config, api_address=api_address)
        owned = not telemetry.enabled()  # a program embedding the CLI keeps its own
        if owned:
            telemetry.configure(settings.otel)  # off unless asked for
        try:
            with (
                telemetry.tracer("programs.cli").start_as_current_span(f"astra {command.__name__}"),
                Client(settings.api_address, timeout=timeout) as client,
            ):
                return command(client=client, **params)
        finally:
            if owned:
                telemetry.shutdown()

    return with_client
