"""Ending streaming calls when their server begins shutting down.

A watch stream (``WatchCluster``, ``WatchAssignments``, ``WatchRoutes``...) or a heartbeat
stream never ends on its own, so a graceful shutdown would wait its whole grace for
them, then cancel them.
:class:`StreamStopper` ends them as soon as the shutdown begins, with UNAVAILABLE, the
status that tells their clients to reconnect (to another replica): a call waiting for
its next message is interrupted there, one sending a message ends right after it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Collection
from typing import Any

import grpc

from astra.server._interceptors import (
    SHUTTING_DOWN,
    Behaviour,
    Context,
    Continuation,
    Handler,
    behaviour_of,
)


async def _end(context: Context) -> None:
    """End the call with UNAVAILABLE; as cancelled if its client has gone meanwhile."""
    try:
        await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
    except grpc.aio.AbortError:
        raise
    except Exception:
        raise asyncio.CancelledError from None


class _Call:
    """One server-streaming call in progress."""

    __slots__ = ("cancelled", "interrupted", "task", "waiting")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        #: True while the call waits for its servicer's next message.
        self.waiting = False
        self.interrupted = False
        #: True once :meth:`interrupt` has cancelled the task.
        self.cancelled = False

    def interrupt(self) -> None:
        self.interrupted = True
        if self.waiting and not self.cancelled:
            self.cancelled = True
            self.task.cancel()

    def ours(self) -> bool:
        """Whether the cancel being handled is :meth:`interrupt`'s alone (not also the
        client's, or the server's at the end of the grace); if so, it is taken back."""
        return self.cancelled and self.task.uncancel() == 0


class StreamStopper(grpc.aio.ServerInterceptor):
    """Ends the calls with a stream of responses (server-streaming and bidirectional) of
    every service but ``keep`` with UNAVAILABLE once :meth:`stop` is called, and answers
    new ones so. Synchronous servicers' streams are left to the grace.

    Costs nothing per message: the call's task is cancelled only while it waits for its
    servicer's next message, and the servicer's generator is closed as on any cancel.
    """

    def __init__(self, *, keep: Collection[str] = ()) -> None:
        """
        Args:
            keep: services (full names) whose streams are left to run, e.g. health,
                whose watchers are told NOT_SERVING and leave on their own.
        """
        self._keep = frozenset(keep)
        self._calls: set[_Call] = set()
        self._stopping = False
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    @property
    def streams(self) -> int:
        """How many server-streaming calls are in progress."""
        return len(self._calls)

    def stop(self) -> None:
        """End every stream in progress, and every new one. Idempotent."""
        self._stopping = True
        for call in list(self._calls):
            call.interrupt()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        method = handler_call_details.method
        if method.lstrip("/").partition("/")[0] in self._keep:
            return handler
        bidirectional = handler.request_streaming
        behaviour = behaviour_of(handler)
        if not (inspect.isasyncgenfunction(behaviour) or inspect.iscoroutinefunction(behaviour)):
            return handler  # a synchronous servicer, run on a thread: left to the grace
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            make = (
                grpc.stream_stream_rpc_method_handler
                if bidirectional
                else grpc.unary_stream_rpc_method_handler
            )
            cached = (
                handler,
                make(
                    self._wrap(behaviour),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                ),
            )
            self._wrapped[method] = cached
        return cached[1]

    def _wrap(self, behaviour: Behaviour) -> Behaviour:
        if not inspect.isasyncgenfunction(behaviour):
            return self._wrap_writer(behaviour)

        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            current = self._start()
            stream = behaviour(request, context)
            try:
                while not current.interrupted:
                    current.waiting = True
                    try:
                        response = await anext(stream)
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        if not current.ours():
                            raise
                        break
                    finally:
                        current.waiting = False
                    yield response
            finally:
                self._calls.discard(current)
                await stream.aclose()
            await _end(context)

        return call

    def _wrap_writer(self, behaviour: Behaviour) -> Behaviour:
        """A servicer writing its messages itself (``context.write``), and reading them
        (``context.read``) when the call is bidirectional, is interruptible anywhere: a
        message being written when the shutdown begins may be lost."""

        async def call(request: Any, context: Context) -> None:
            current = self._start()
            current.waiting = True
            try:
                if not current.interrupted:
                    await behaviour(request, context)
                    return
            except asyncio.CancelledError:
                if not current.ours():
                    raise
            finally:
                self._calls.discard(current)
            await _end(context)

        return call

    def _start(self) -> _Call:
        task = asyncio.current_task()
        assert task is not None
        current = _Call(task)
        current.interrupted = self._stopping
        self._calls.add(current)
        return current
