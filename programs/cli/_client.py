"""A small typed, synchronous client of the control-plane API, over the generated stubs.

One :class:`Client` talks to one API address (``astra up``, or the proxy in front of
the services of a docker-compose deployment). Names may be given whole
(``nodes/gpu-1``) or as ids (``gpu-1``). Listings follow every page. A call the server
refuses or cannot answer raises :class:`ApiError` with the status code and the
server's message.

>>> with Client("127.0.0.1:7100") as client:
...     ready = client.nodes(phase=node_pb2.NODE_PHASE_READY)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol, Self, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from astra import telemetry
from astra._gen.astra.v1 import (
    app_pb2,
    app_service_pb2,
    app_service_pb2_grpc,
    node_pb2,
    replica_pb2,
    resource_service_pb2,
    resource_service_pb2_grpc,
    route_pb2,
    scheduler_service_pb2,
    scheduler_service_pb2_grpc,
)
from astra.errors import AstraError

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Item = TypeVar("_Item")


class _PageRequest(Protocol):
    """A List call's request: the page it asks for."""

    page_token: str


class _Page(Protocol):
    """A List call's response: where the next page starts (empty: none)."""

    @property
    def next_page_token(self) -> str: ...


_PageRequestT = TypeVar("_PageRequestT", bound=_PageRequest)
_PageT = TypeVar("_PageT", bound=_Page)

# Typed views of the generated stubs (written without types): each method the client
# calls, with the request and response types of its RPC.
_Unary = grpc.UnaryUnaryMultiCallable


class _ResourceStub(Protocol):
    ListNodes: _Unary[resource_service_pb2.ListNodesRequest, resource_service_pb2.ListNodesResponse]
    GetNode: _Unary[resource_service_pb2.GetNodeRequest, resource_service_pb2.GetNodeResponse]
    DrainNode: _Unary[resource_service_pb2.DrainNodeRequest, resource_service_pb2.DrainNodeResponse]


class _AppStub(Protocol):
    ListApps: _Unary[app_service_pb2.ListAppsRequest, app_service_pb2.ListAppsResponse]
    GetApp: _Unary[app_service_pb2.GetAppRequest, app_service_pb2.GetAppResponse]
    CreateApp: _Unary[app_service_pb2.CreateAppRequest, app_service_pb2.CreateAppResponse]
    UpdateApp: _Unary[app_service_pb2.UpdateAppRequest, app_service_pb2.UpdateAppResponse]
    ListReplicas: _Unary[app_service_pb2.ListReplicasRequest, app_service_pb2.ListReplicasResponse]


class _SchedulerStub(Protocol):
    GetRoutes: _Unary[
        scheduler_service_pb2.GetRoutesRequest, scheduler_service_pb2.GetRoutesResponse
    ]


class _HealthStub(Protocol):
    Check: _Unary[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


def _health_stub(channel: grpc.Channel) -> _HealthStub:
    """The standard health service's stub on ``channel``."""
    stub = health_pb2_grpc.HealthStub(channel)
    return stub  # type: ignore[return-value]  # types-grpcio-health-checking's stub lists no RPCs


class ApiError(AstraError):
    """The API refused a call or could not be reached.

    Attributes:
        code: the gRPC status code.
        details: the server's message (or the transport's, when unreachable).
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def resource_name(collection: str, name: str) -> str:
    """``name`` as a resource name of ``collection``: ``("nodes", "a")`` → ``nodes/a``."""
    return name if name.startswith(f"{collection}/") else f"{collection}/{name}"


class Connection:
    """A channel to ``address`` whose calls have a deadline and fail with
    :class:`ApiError`; close it (or use ``with``) when done.

    Args:
        address: ``host:port`` of the server.
        timeout: the deadline of each call, in seconds.
    """

    def __init__(self, address: str, *, timeout: float) -> None:
        self.address = address
        self._timeout = timeout
        self._channel = telemetry.intercept_channel(grpc.insecure_channel(address), address)

    def close(self) -> None:
        """Close the channel. Idempotent."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: _Unary[_Request, _Response], request: _Request) -> _Response:
        """``method(request)`` within the deadline.

        Raises:
            ApiError: the call failed (naming the address when it cannot be reached).
        """
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.UNAVAILABLE:
                details = f"cannot reach {self.address}: {details}"
            raise ApiError(code, details) from None


class Client(Connection):
    """The control-plane API at ``address`` (see :class:`Connection`)."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        super().__init__(address, timeout=timeout)
        self._resources: _ResourceStub = resource_service_pb2_grpc.ResourceServiceStub(
            self._channel
        )
        self._apps: _AppStub = app_service_pb2_grpc.AppServiceStub(self._channel)
        self._scheduler: _SchedulerStub = scheduler_service_pb2_grpc.SchedulerServiceStub(
            self._channel
        )
        self._health = _health_stub(self._channel)

    def health(self, service: str = "") -> str:
        """The serving status of ``service`` (of the server as a whole when empty), by the
        standard gRPC health protocol: ``SERVING``, ``NOT_SERVING``..."""
        request = health_pb2.HealthCheckRequest(service=service)
        status = self._call(self._health.Check, request).status
        return health_pb2.HealthCheckResponse.ServingStatus.Name(status)

    # Nodes (the Resource service).

    def nodes(
        self,
        *,
        phase: int = node_pb2.NODE_PHASE_UNSPECIFIED,
        labels: Mapping[str, str] | None = None,
    ) -> list[node_pb2.Node]:
        """Every node (in ``phase`` and with all ``labels``, when given), in name order."""
        request = resource_service_pb2.ListNodesRequest(
            phase=node_pb2.NodePhase.Name(phase), label_selector=labels or {}
        )
        return list(self._pages(self._resources.ListNodes, request, lambda page: page.nodes))

    def node(self, name: str) -> node_pb2.Node:
        """One node."""
        request = resource_service_pb2.GetNodeRequest(name=resource_name("nodes", name))
        return self._call(self._resources.GetNode, request).node

    def drain(self, name: str, *, reason: str = "") -> node_pb2.Node:
        """Start draining a node (idempotent); returns it, DRAINING."""
        request = resource_service_pb2.DrainNodeRequest(
            name=resource_name("nodes", name), reason=reason
        )
        return self._call(self._resources.DrainNode, request).node

    # Apps and replicas (the App service).

    def apps(self) -> list[app_pb2.App]:
        """Every app, in name order."""
        request = app_service_pb2.ListAppsRequest()
        return list(self._pages(self._apps.ListApps, request, lambda page: page.apps))

    def app(self, name: str) -> app_pb2.App:
        """One app with its status."""
        request = app_service_pb2.GetAppRequest(name=resource_name("apps", name))
        return self._call(self._apps.GetApp, request).app

    def create_app(self, app_id: str, app: app_pb2.App) -> app_pb2.App:
        """Create app ``apps/{app_id}``; returns it as created."""
        request = app_service_pb2.CreateAppRequest(app_id=app_id, app=app)
        return self._call(self._apps.CreateApp, request).app

    def update_app(self, app: app_pb2.App, paths: Iterable[str] = ("*",)) -> app_pb2.App:
        """Replace the fields ``paths`` names (every updatable field by default) with
        ``app``'s; ``app.etag``, when set, guards the update. Returns the app as updated."""
        request = app_service_pb2.UpdateAppRequest(
            app=app, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
        return self._call(self._apps.UpdateApp, request).app

    def replicas(self, app: str) -> list[replica_pb2.Replica]:
        """Every replica of an app."""
        request = app_service_pb2.ListReplicasRequest(parent=resource_name("apps", app))
        return list(self._pages(self._apps.ListReplicas, request, lambda page: page.replicas))

    # Routes (the Scheduler service).

    def routes(self, models: Iterable[str] = ()) -> list[route_pb2.Route]:
        """The routes of ``models`` (of every model when empty)."""
        request = scheduler_service_pb2.GetRoutesRequest(models=list(models))
        return list(self._call(self._scheduler.GetRoutes, request).routes)

    # Plumbing.

    def _pages(
        self,
        method: _Unary[_PageRequestT, _PageT],
        request: _PageRequestT,
        items: Callable[[_PageT], Iterable[_Item]],
    ) -> Iterator[_Item]:
        """The ``items`` of every page of a List call; O(items) calls' worth of pages."""
        while True:
            response = self._call(method, request)
            yield from items(response)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token
