"""Replica load reports over ORCA's out-of-band stream
(``xds.service.orca.v3.OpenRcaService/StreamCoreMetrics``), the way gRPC's
weighted_round_robin gets them: nothing is added to the requests themselves.

The two messages are read and written on the wire format directly (``OrcaLoadReport``
fields 1 cpu_utilization, 6 rps_fractional, 7 eps, 9 application_utilization; the
request's field 1 is a ``google.protobuf.Duration``), so no ORCA proto is needed.
"""

from __future__ import annotations

import logging
import struct
import time

import grpc

from astra.rpc import Backoff
from gateway._endpoints import Endpoint
from gateway._weights import WeightPolicy
from gateway._wire import FIXED64, encode_varint, fields

_log = logging.getLogger(__name__)

STREAM_CORE_METRICS = "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics"

_CPU_UTILIZATION, _RPS_FRACTIONAL, _EPS, _APPLICATION_UTILIZATION = 1, 6, 7, 9


def report_request(interval: float) -> bytes:
    """An ``OrcaLoadReportRequest`` asking for a report every ``interval`` seconds."""
    seconds, nanos = int(interval), round((interval - int(interval)) * 1e9)
    duration = b"".join(
        encode_varint(number << 3) + encode_varint(value)
        for number, value in ((1, seconds), (2, nanos))
        if value
    )
    return encode_varint(1 << 3 | 2) + encode_varint(len(duration)) + duration


def parse_report(data: bytes) -> tuple[float, float, float]:
    """``(rps, utilization, eps)`` of a serialized ``OrcaLoadReport``; utilization is
    the application's, else the CPU's.

    Raises:
        ValueError: ``data`` is not a protobuf message.
    """
    values = {_CPU_UTILIZATION: 0.0, _RPS_FRACTIONAL: 0.0, _EPS: 0.0, _APPLICATION_UTILIZATION: 0.0}
    for number, wire_type, start, end in fields(data):
        if number in values and wire_type == FIXED64:
            values[number] = struct.unpack("<d", data[start:end])[0]
    utilization = values[_APPLICATION_UTILIZATION] or values[_CPU_UTILIZATION]
    return values[_RPS_FRACTIONAL], utilization, values[_EPS]


async def follow_reports(endpoint: Endpoint, policy: WeightPolicy) -> None:
    """Keep ``endpoint.report`` fresh from its replica's out-of-band stream, a report
    per weight interval, until the endpoint retires. A broken stream is opened again
    after a backoff; a replica without ORCA (UNIMPLEMENTED) is left alone."""
    stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = endpoint.channel.unary_stream(
        STREAM_CORE_METRICS
    )
    backoff = Backoff(base=0.5, cap=10.0)
    while not endpoint.retired:
        try:
            async for data in stream(report_request(policy.interval)):
                endpoint.report = parse_report(data)
                endpoint.report_time = time.monotonic()
                backoff.reset()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                _log.info("%s sends no load reports", endpoint.address)
                return
        except ValueError:
            _log.warning(
                "%s sent a malformed load report; its reports are ignored", endpoint.address
            )
            return
        await backoff.sleep()
