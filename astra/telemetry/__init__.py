"""OpenTelemetry for AstraRay: traces and metrics, off unless configured.

Call :func:`configure` once at start-up with :class:`astra.config.OtelSettings`; use
:func:`tracer` and :func:`meter` to instrument, :func:`enabled` to skip telemetry work
cheaply while it is off, and :func:`shutdown` to flush on exit.

Traces cross processes in the W3C ``traceparent`` request metadata: open channels with
:func:`channel` (grpc.aio) or wrap them with :func:`intercept_channel` (synchronous
grpc) for a CLIENT span per call; code that sends its own calls uses :func:`inject`
with :func:`start_client_span` / :func:`end_client_span`. Servers join the trace in
:class:`astra.server.TelemetryInterceptor`.
"""

from astra.telemetry._client import (
    channel,
    end_client_span,
    inject,
    intercept_channel,
    start_client_span,
)
from astra.telemetry._setup import configure, enabled, meter, settings, shutdown, tracer

__all__ = [
    "channel",
    "configure",
    "enabled",
    "end_client_span",
    "inject",
    "intercept_channel",
    "meter",
    "settings",
    "shutdown",
    "start_client_span",
    "tracer",
]
