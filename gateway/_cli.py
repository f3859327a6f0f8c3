"""``astra gateway``: run the inference gateway on its own."""

from __future__ import annotations

import click

from astra import configure_logging, server, telemetry
from astra.config import Settings, settings_options
from gateway._broker import BrokerOptions
from gateway._gateway import Gateway


@click.command(name="gateway")
@settings_options
@click.option(
    "--model",
    "models",
    multiple=True,
    help="route only this model (repeatable; default: every model)",
)
def gateway_command(settings: Settings, models: tuple[str, ...]) -> None:
    """Run the inference gateway until SIGTERM or Ctrl-C: the Open Inference Protocol on
    --gateway-address, routed by the Scheduler's routes at --api-address; with
    --redis-url, the async broker (astra.v1.AsyncInferenceService) too."""
    configure_logging(settings.log_level)
    server.run(_serve(settings, models))


async def _serve(settings: Settings, models: tuple[str, ...]) -> None:
    telemetry.configure(settings.otel)
    gateway = Gateway(
        scheduler=settings.api_address,
        address=settings.gateway_address,
        models=models,
        grace=settings.shutdown_grace,
        broker=BrokerOptions.from_settings(settings),
        fast_lane=settings.gateway_fast_lane,
    )
    try:
        with server.stop_on_signals() as stop:
            async with gateway:
                await stop.wait()
    finally:
        telemetry.shutdown()
