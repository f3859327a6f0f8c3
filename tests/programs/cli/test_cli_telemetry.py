"""``astra nodes`` as a real process exporting its trace over OTLP: the command's span and
its RPCs' CLIENT spans reach a collector, and the services (here) join that trace."""

from __future__ import annotations

import asyncio
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra.config import OtelSettings
from astra.testing import OtlpCollector
from tests.node_agent.waiting import eventually
from tests.programs.cli.running import ROOT, child_env
from tests.services.app.plane import Plane

LIST_NODES = "astra.v1.ResourceService/ListNodes"


async def test_a_command_is_one_trace_from_the_cli_process_into_the_services(
    control: Plane,
) -> None:
    spans = InMemorySpanExporter()
    telemetry.configure(OtelSettings(exporter="none"), span_exporter=spans)
    try:
        async with OtlpCollector() as collector:
            env = child_env(
                ASTRA_API_ADDRESS=control.address,
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,  # alone, it turns OTLP on
                ASTRA_OTEL__SERVICE_NAME="astra-cli",
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "programs.cli", "nodes", "-o", "json",
                env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
            assert json.loads(out), "the fleet is listed"
            # The command flushed its spans before it exited.
            by_name = {received.span.name: received for received in collector.spans}
        assert {received.service for received in collector.spans} == {"astra-cli"}
        command, call = by_name["astra nodes"].span, by_name[LIST_NODES].span
        assert call.kind == call.SPAN_KIND_CLIENT and call.parent_span_id == command.span_id

        def served() -> list:
            return [
                s
                for s in spans.get_finished_spans()
                if s.name == LIST_NODES and s.kind is trace.SpanKind.SERVER
            ]

        await eventually(lambda: len(served()) == 1, what="the service's span")
        (server,) = served()
        assert server.context.trace_id == int.from_bytes(command.trace_id, "big")
        assert server.parent is not None
        assert server.parent.span_id == int.from_bytes(call.span_id, "big")
    finally:
        telemetry.shutdown()
