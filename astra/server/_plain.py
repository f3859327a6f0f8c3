"""Plain methods: hot unary methods whose calls skip the interceptor chain while it would
only log them.

grpc.aio runs every interceptor on every call, each a coroutine, and the wrapping ones an
async context manager or two around the handler: tens of microseconds a call, which
matter on a proxy's forwarding path. :class:`PlainMethods` runs the server's chain for
every other call, and for the calls of its methods too while telemetry is on or RPC
logs are at DEBUG; otherwise a plain method's handler runs in one light wrapper that
does what the chain would have done: it logs the call when it fails
(:class:`LoggingInterceptor`) and maps what the handler raises to a status
(:class:`ErrorInterceptor`). Streams never go through it (:class:`StreamStopper` is
in the chain).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import grpc

from astra import telemetry
from astra.server._errors import ErrorInterceptor
from astra.server._interceptors import (
    Context,
    Continuation,
    Handler,
    LoggingInterceptor,
    behaviour_of,
    final_status,
)

_rpc_log = logging.getLogger("astra.server.rpc")

#: A unary-unary grpc.aio behaviour.
Behaviour = Callable[[Any, Context], Awaitable[Any]]


class PlainMethods(grpc.aio.ServerInterceptor):
    """``interceptors`` in order, except for the calls of the unary-unary ``methods``
    (``/package.Service/Method``) while telemetry is off and RPC logs are not at DEBUG
    (module docs)."""

    def __init__(
        self, interceptors: Sequence[grpc.aio.ServerInterceptor], methods: Collection[str]
    ) -> None:
        self._interceptors = tuple(interceptors)
        self._methods = frozenset(methods)
        self._errors = ErrorInterceptor()
        self._light: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        if (
            method in self._methods
            and not telemetry.enabled()
            and not _rpc_log.isEnabledFor(logging.DEBUG)
        ):
            handler = await continuation(handler_call_details)
            if handler is not None and not (
                handler.request_streaming or handler.response_streaming
            ):
                return self._lightly(method, handler)
        return await self._chain(0, continuation, handler_call_details)

    async def _chain(
        self, index: int, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> Handler | None:
        if index == len(self._interceptors):
            return await continuation(details)
        following = functools.partial(self._chain, index + 1, continuation)
        return await self._interceptors[index].intercept_service(following, details)

    def _lightly(self, method: str, handler: Handler) -> Handler:
        cached = self._light.get(method)
        if cached is None or cached[0] is not handler:
            cached = (
                handler,
                grpc.unary_unary_rpc_method_handler(
                    self._wrap(method, behaviour_of(handler)),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                ),
            )
            self._light[method] = cached
        return cached[1]

    def _wrap(self, method: str, behaviour: Behaviour) -> Behaviour:
        async def call(request: Any, context: Context) -> Any:
            start = time.perf_counter()
            try:
                return await behaviour(request, context)
            except BaseException as error:
                await self._failed(method, context, error, time.perf_counter() - start)
                raise

        return call

    async def _failed(
        self, method: str, context: Context, error: BaseException, seconds: float
    ) -> None:
        """What the chain does to a call that raised: map the error to a status unless
        the handler aborted, then log how the call ended."""
        try:
            if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
                async with self._errors.around(method, context):
                    raise error
        finally:
            LoggingInterceptor._log(method, context, final_status(context, error), seconds)
