"""One mapping from domain errors to gRPC status codes, applied to every RPC by an interceptor.

Servicers raise (see the tree in :mod:`astra.errors`); they never build statuses. An
exception outside the mapping is a bug: it is logged with its traceback and answered
with INTERNAL and a generic message, so no internals leak to callers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from opentelemetry import trace

from astra.errors import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from astra.server._interceptors import Context, WrappingInterceptor
from astra.store import CompactedError, LimitError, UnavailableError

_log = logging.getLogger(__name__)

_STATUS: dict[type[BaseException], grpc.StatusCode] = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    ConflictError: grpc.StatusCode.ABORTED,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    LimitError: grpc.StatusCode.INVALID_ARGUMENT,
    # A watch resumed from a compacted revision: start again from 0 for a snapshot.
    CompactedError: grpc.StatusCode.OUT_OF_RANGE,
    # What generated servicer base classes raise for a method nobody implemented.
    NotImplementedError: grpc.StatusCode.UNIMPLEMENTED,
}


def status_for(error: BaseException) -> grpc.StatusCode | None:
    """The status code ``error`` maps to (by its nearest mapped base class), or ``None``."""
    for cls in type(error).__mro__:
        code = _STATUS.get(cls)
        if code is not None:
            return code
    return None


class ErrorInterceptor(WrappingInterceptor):
    """Turns what a servicer raises into the gRPC status the mapping names."""

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise  # the servicer aborted with a status of its own
        except Exception as exc:
            code = status_for(exc)
            if code is None:
                _log.error("%s failed with an unexpected error", method, exc_info=exc)
                trace.get_current_span().record_exception(exc)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            await context.abort(code, str(exc))
