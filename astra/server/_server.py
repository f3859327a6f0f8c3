"""The async gRPC server every AstraRay service runs in."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from astra.server._errors import ErrorInterceptor
from astra.server._interceptors import LoggingInterceptor, TelemetryInterceptor
from astra.server._plain import PlainMethods
from astra.server._stopping import StreamStopper
from astra.server._tasks import Tasks

T = TypeVar("T")

_log = logging.getLogger(__name__)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Server:
    """A grpc.aio server with health checking, reflection, AstraRay's interceptors
    (OpenTelemetry, logging, domain-error mapping) and background tasks it owns.

    Register services, then run it in one of three ways::

        server = Server("127.0.0.1:7100")
        server.add_servicer(servicer, add_FooServiceServicer_to_server, FOO_DESCRIPTOR)
        await server.serve_forever()              # start, serve until shutdown() or cancel

        async with Server("127.0.0.1:0") as server:   # start; shutdown on exit
            ...

        await server.start(); ...; await server.shutdown(grace=1.0)

    Health (``grpc.health.v1.Health``) reports SERVING for the whole server (service
    ``""``) and each registered service once started, per-service status can be changed
    with :meth:`set_serving`, and everything turns NOT_SERVING when shutdown begins, so
    watchers see it before the server drains. Reflection lists every service.

    A shutdown does not wait for what never ends on its own: the callbacks given to
    :meth:`on_shutdown` stop this process's own clients of the server first, then every
    server-streaming call (the ``Watch*`` RPCs; health's are left to their watchers)
    ends with UNAVAILABLE, and only then do the other in-flight RPCs drain.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:0",
        *,
        grace: float = 5.0,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        plain: Collection[str] = (),
    ) -> None:
        """
        Args:
            address: ``host:port`` to listen on; port 0 picks a free one (see :attr:`port`).
            grace: default seconds in-flight RPCs get to finish on :meth:`shutdown`.
            interceptors: more interceptors, run inside the standard ones.
            options: gRPC channel arguments. ``SO_REUSEPORT`` is off by default, so a
                busy port is an error instead of two servers silently sharing it.
            plain: unary-unary methods (``/package.Service/Method``) on a hot path: while
                telemetry is off and RPC logs are not at DEBUG, their calls skip every
                interceptor (``interceptors`` too), a light wrapper logging their failures
                and mapping their errors instead (:mod:`astra.server._plain`).
        """
        self._address = address
        self._grace = grace
        self._streams = StreamStopper(keep=(health.SERVICE_NAME,))
        self._interceptors = (
            TelemetryInterceptor(), LoggingInterceptor(), ErrorInterceptor(), *interceptors,
            self._streams,
        )  # fmt: skip
        if plain:
            self._interceptors = (PlainMethods(self._interceptors, plain),)
        self._options = (("grpc.so_reuseport", 0), *options)
        self._registrations: dict[str, Callable[[grpc.aio.Server], None]] = {}
        self._serving: dict[str, bool] = {}
        self._tasks = Tasks()
        self._on_shutdown: list[Callable[[], Awaitable[object]]] = []
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._port: int | None = None
        self._shutdown: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    # -- registration ----------------------------------------------------------------

    def add_servicer(
        self,
        servicer: T,
        add_to_server: Callable[[T, grpc.aio.Server], None],
        descriptor: ServiceDescriptor,
    ) -> None:
        """Serve ``servicer`` through its generated ``add_..._to_server`` function;
        ``descriptor`` (``*_pb2.DESCRIPTOR.services_by_name[...]``) names the service for
        health and reflection."""
        self._register(descriptor.full_name, functools.partial(add_to_server, servicer))

    def add_generic_handler(self, handler: grpc.ServiceRpcHandler) -> None:
        """Serve a generic handler, e.g. from ``grpc.method_handlers_generic_handler``."""
        self._register(
            handler.service_name(), lambda server: server.add_generic_rpc_handlers((handler,))
        )

    def _register(self, name: str, registration: Callable[[grpc.aio.Server], None]) -> None:
        if self._server is not None or self._shutdown is not None:
            raise RuntimeError(f"cannot add service {name}: register services before start()")
        if name in self._registrations:
            raise ValueError(f"service {name} is registered twice")
        self._registrations[name] = registration

    @property
    def service_names(self) -> list[str]:
        """Every service served: the registered ones, health and reflection."""
        return [*self._registrations, health.SERVICE_NAME, reflection.SERVICE_NAME]

    # -- state -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the actual one when asked for port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` listened on, with the actual port."""
        return f"{self._address.rpartition(':')[0]}:{self.port}"

    async def set_serving(self, service: str, serving: bool) -> None:
        """Report ``service`` (``""``: the whole server) SERVING or NOT_SERVING to health
        checks. Before :meth:`start` it sets the status the server starts with; once
        shutdown begins it is ignored (everything stays NOT_SERVING)."""
        self._serving[service] = serving
        if self._server is not None:
            await self._health.set(service, _SERVING if serving else _NOT_SERVING)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` as a background task the server owns: a failure is logged, and
        :meth:`shutdown` cancels it and waits for it after the RPCs have drained."""
        return self._tasks.spawn(coro, name=name)

    def on_shutdown(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Await ``callback()`` when :meth:`shutdown` begins, once health says NOT_SERVING
        and before the streams end and the RPCs drain: for this process's own clients of
        the server (a feed following one of its streams), which would otherwise see
        their stream fail, or hold the drain. Callbacks run concurrently, for at most
        the grace; a failure is logged."""
        self._on_shutdown.append(callback)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind, register everything and start serving.

        Raises:
            OSError: the address cannot be listened on (in use, or not local).
            RuntimeError: the server was started or shut down before.
        """
        if self._server is not None or self._shutdown is not None:
            raise RuntimeError("a Server can be started once")
        server = grpc.aio.server(interceptors=self._interceptors, options=self._options)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for register in self._registrations.values():
            register(server)
        reflection.enable_server_reflection(self.service_names, server)
        try:
            port = server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise OSError(
                f"cannot listen on {self._address}: address in use or not available"
            ) from exc
        initial = dict.fromkeys(("", *self._registrations), True) | self._serving
        for service, serving in initial.items():
            await self._health.set(service, _SERVING if serving else _NOT_SERVING)
        await server.start()
        self._server, self._port = server, port

    async def wait(self) -> None:
        """Return once the server has shut down completely."""
        await self._stopped.wait()

    async def serve_forever(self) -> None:
        """Start, then serve until :meth:`shutdown`; shuts down if cancelled."""
        await self.start()
        try:
            await self.wait()
        finally:
            await self.shutdown()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop gracefully: health turns NOT_SERVING, new RPCs are refused, in-flight ones
        get ``grace`` seconds (default: the server's) before they are cancelled, then the
        background tasks are cancelled and awaited.

        Idempotent: later and concurrent calls wait for the first one to finish, and a
        caller being cancelled does not interrupt it.
        """
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(
                self._stop(self._grace if grace is None else grace), name="astra.server.shutdown"
            )
        await asyncio.shield(self._shutdown)

    async def _stop(self, grace: float) -> None:
        try:
            if self._server is not None:
                await self._health.enter_graceful_shutdown()
                await self._stop_own_clients(grace)
                self._streams.stop()
                await self._server.stop(grace)
        finally:
            await self._tasks.close()
            self._stopped.set()

    async def _stop_own_clients(self, grace: float) -> None:
        if not self._on_shutdown:
            return
        calls = [asyncio.ensure_future(callback()) for callback in self._on_shutdown]
        done, pending = await asyncio.wait(calls, timeout=grace)
        for call in pending:
            call.cancel()
        if pending:
            _log.warning("%d shutdown callback(s) still running after %gs", len(pending), grace)
            await asyncio.wait(pending)
        for call in done:
            if not call.cancelled() and (error := call.exception()) is not None:
                _log.error("a shutdown callback failed", exc_info=error)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()
