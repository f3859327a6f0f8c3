"""ORCA (Open Request Cost Aggregation) load reports, as gRPC's weighted round robin
and Envoy read them: the ``endpoint-load-metrics-bin`` trailer of each call, and the
out-of-band ``xds.service.orca.v3.OpenRcaService/StreamCoreMetrics`` stream.

The two messages (``xds.data.orca.v3.OrcaLoadReport`` and
``xds.service.orca.v3.OrcaLoadReportRequest``, from cncf/xds) are built here from their
descriptors, in a private descriptor pool: no generated code, and no clash with another
copy of the same protos in the process. A :class:`LoadReport` maps onto them as
``rps_fractional``, ``eps``, ``application_utilization`` and the named metrics
``inflight`` and ``latency_ms``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory

from node_agent.replica._load import LoadReport

#: The trailing-metadata key of a call's binary ORCA report.
ORCA_TRAILER = "endpoint-load-metrics-bin"
#: The out-of-band service and its method.
ORCA_SERVICE = "xds.service.orca.v3.OpenRcaService"
ORCA_METHOD = "StreamCoreMetrics"
#: Seconds between out-of-band reports when the client asks for none, and the least.
DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.1

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    name: str, number: int, kind: _F.Type.ValueType, *, type_name: str = "", repeated: bool = False
) -> _F:
    field = _F(name=name, number=number, type=kind)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    return field


def _map(message: descriptor_pb2.DescriptorProto, name: str, number: int, scope: str) -> None:
    entry = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    message.nested_type.add(
        name=entry,
        field=[_field("key", 1, _F.TYPE_STRING), _field("value", 2, _F.TYPE_DOUBLE)],
        options=descriptor_pb2.MessageOptions(map_entry=True),
    )
    message.field.append(
        _field(name, number, _F.TYPE_MESSAGE, type_name=f".{scope}.{entry}", repeated=True)
    )


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    report = descriptor_pb2.DescriptorProto(name="OrcaLoadReport")
    scope = "xds.data.orca.v3.OrcaLoadReport"
    report.field.extend(
        [
            _field("cpu_utilization", 1, _F.TYPE_DOUBLE),
            _field("mem_utilization", 2, _F.TYPE_DOUBLE),
            _field("rps", 3, _F.TYPE_UINT64),
        ]
    )
    _map(report, "request_cost", 4, scope)
    _map(report, "utilization", 5, scope)
    report.field.extend(
        [_field("rps_fractional", 6, _F.TYPE_DOUBLE), _field("eps", 7, _F.TYPE_DOUBLE)]
    )
    _map(report, "named_metrics", 8, scope)
    report.field.append(_field("application_utilization", 9, _F.TYPE_DOUBLE))
    pool.Add(
        descriptor_pb2.FileDescriptorProto(
            name="xds/data/orca/v3/orca_load_report.proto",
            package="xds.data.orca.v3",
            syntax="proto3",
            message_type=[report],
        )
    )
    request = descriptor_pb2.DescriptorProto(
        name="OrcaLoadReportRequest",
        field=[
            _field("report_interval", 1, _F.TYPE_MESSAGE, type_name=".google.protobuf.Duration"),
            _field("request_cost_names", 2, _F.TYPE_STRING, repeated=True),
        ],
    )
    pool.Add(
        descriptor_pb2.FileDescriptorProto(
            name="xds/service/orca/v3/orca.proto",
            package="xds.service.orca.v3",
            syntax="proto3",
            dependency=[
                "google/protobuf/duration.proto",
                "xds/data/orca/v3/orca_load_report.proto",
            ],
            message_type=[request],
            service=[
                descriptor_pb2.ServiceDescriptorProto(
                    name="OpenRcaService",
                    method=[
                        descriptor_pb2.MethodDescriptorProto(
                            name=ORCA_METHOD,
                            input_type=".xds.service.orca.v3.OrcaLoadReportRequest",
                            output_type=".xds.data.orca.v3.OrcaLoadReport",
                            server_streaming=True,
                        )
                    ],
                )
            ],
        )
    )
    return pool


_POOL = _pool()
#: ``xds.data.orca.v3.OrcaLoadReport``.
OrcaLoadReport: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("xds.data.orca.v3.OrcaLoadReport")
)
#: ``xds.service.orca.v3.OrcaLoadReportRequest``.
OrcaLoadReportRequest: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("xds.service.orca.v3.OrcaLoadReportRequest")
)


def to_orca(report: LoadReport) -> Any:
    """``report`` as an ``OrcaLoadReport``."""
    return OrcaLoadReport(
        rps_fractional=report.rps,
        eps=report.eps,
        application_utilization=report.utilization,
        named_metrics={"inflight": float(report.in_flight), "latency_ms": report.latency_ms},
    )


class _OrcaService(grpc.ServiceRpcHandler):
    """The ORCA service's one method, under its service name."""

    def __init__(self, method: grpc.RpcMethodHandler[Any, Any]) -> None:
        self._method = method

    def service_name(self) -> str:
        return ORCA_SERVICE

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        wanted = f"/{ORCA_SERVICE}/{ORCA_METHOD}"
        return self._method if handler_call_details.method == wanted else None


def orca_handler(load: Callable[[], LoadReport]) -> grpc.ServiceRpcHandler:
    """The out-of-band ORCA service: each stream gets ``load()`` every
    ``report_interval`` (at least :data:`MIN_INTERVAL`, :data:`DEFAULT_INTERVAL` when
    unset) until the client leaves or the server stops."""

    async def stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        interval = request.report_interval.ToTimedelta().total_seconds() or DEFAULT_INTERVAL
        while True:
            yield to_orca(load())
            await asyncio.sleep(max(MIN_INTERVAL, interval))

    return _OrcaService(
        grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=OrcaLoadReportRequest.FromString,
            response_serializer=lambda report: report.SerializeToString(),
        )
    )
