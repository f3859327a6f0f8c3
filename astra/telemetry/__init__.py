"""OpenTelemetry for AstraRay: traces and metrics, off unless configured.

Call :func:`configure` once at start-up with :class:`astra.config.OtelSettings`; use
:func:`tracer` and :func:`meter` to instrument, :func:`enabled` to skip telemetry work
cheaply while it is off, and :func:`shutdown` to flush on exit.
"""

from astra.telemetry._setup import configure, enabled, meter, shutdown, tracer

__all__ = ["configure", "enabled", "meter", "shutdown", "tracer"]
