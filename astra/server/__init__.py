"""The scaffolding every AstraRay gRPC server shares.

- :class:`Server`: a grpc.aio server with an explicit lifecycle, health checking,
  reflection, owned background tasks, and the standard interceptors.
- Interceptors: :class:`TelemetryInterceptor` (OpenTelemetry span and duration per RPC),
  :class:`LoggingInterceptor`, :class:`ErrorInterceptor` (domain errors to statuses,
  see :func:`status_for`); write more with :class:`WrappingInterceptor` and :func:`observed`.
- :class:`Violations`: request validation that names each offending field.
- :class:`Tasks`: a long-lived group of named background tasks.
- :func:`run`: run a coroutine on uvloop where available.
"""

from astra.server._errors import ErrorInterceptor, status_for
from astra.server._interceptors import (
    SERVER_ERRORS,
    LoggingInterceptor,
    TelemetryInterceptor,
    WrappingInterceptor,
    observed,
)
from astra.server._loop import new_event_loop, run, stop_on_signals
from astra.server._server import Server
from astra.server._tasks import Tasks
from astra.server._validation import Violations

__all__ = [
    "SERVER_ERRORS",
    "ErrorInterceptor",
    "LoggingInterceptor",
    "Server",
    "Tasks",
    "TelemetryInterceptor",
    "Violations",
    "WrappingInterceptor",
    "new_event_loop",
    "observed",
    "run",
    "status_for",
    "stop_on_signals",
]
