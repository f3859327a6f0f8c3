"""Telemetry set-up: off by default, in-memory for tests, console, and OTLP to a real collector."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from astra import telemetry
from astra.config import OtelSettings, Settings
from astra.testing import OtlpCollector


@pytest.fixture(autouse=True)
def telemetry_off_after():
    yield
    telemetry.shutdown()


def metric_names(reader: InMemoryMetricReader) -> set[str]:
    data = reader.get_metrics_data()
    return {
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def test_off_by_default_with_no_op_tracers():
    telemetry.configure(OtelSettings(exporter="none"))
    assert not telemetry.enabled()
    with telemetry.tracer("test").start_as_current_span("nothing") as span:
        assert not span.is_recording()


def test_in_memory_exporters_receive_spans_and_metrics():
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    settings = OtelSettings(exporter="none", service_name="astra-test")
    telemetry.configure(settings, span_exporter=spans, metric_reader=metrics)
    assert telemetry.enabled()
    assert telemetry.tracer("test") is telemetry.tracer("test")
    with telemetry.tracer("test").start_as_current_span("work"):
        pass
    telemetry.meter("test").create_counter("placements").add(3)
    (span,) = spans.get_finished_spans()
    assert span.name == "work" and span.resource.attributes["service.name"] == "astra-test"
    assert "placements" in metric_names(metrics)


def test_reconfiguring_replaces_and_shutdown_turns_it_off():
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    telemetry.configure(OtelSettings(exporter="none"), span_exporter=first)
    old_tracer = telemetry.tracer("test")
    telemetry.configure(OtelSettings(exporter="none"), span_exporter=second)
    with telemetry.tracer("test").start_as_current_span("after"):
        pass
    assert telemetry.tracer("test") is not old_tracer
    assert [span.name for span in second.get_finished_spans()] == ["after"]
    assert first.get_finished_spans() == ()
    telemetry.shutdown()
    assert not telemetry.enabled()
    telemetry.shutdown()  # idempotent


CONSOLE_SCRIPT = """
from astra import telemetry
from astra.config import OtelSettings, Settings
from astra.testing import OtlpCollector
telemetry.configure(OtelSettings(exporter="console"))
with telemetry.tracer("test").start_as_current_span("printed"):
    pass
telemetry.shutdown()
"""


def test_the_console_exporter_prints_spans():
    # A child process: the exporter writes to the sys.stdout it saw at import time.
    root = Path(__file__).parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-c", CONSOLE_SCRIPT]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    out = done.stdout
    assert json.loads(out[: out.index("\n}") + 2])["name"] == "printed"


async def test_otlp_exports_to_a_collector():
    async with OtlpCollector() as collector:
        telemetry.configure(OtelSettings(endpoint=collector.endpoint, service_name="astra-otlp"))
        assert telemetry.enabled()  # an endpoint alone picks the OTLP exporter
        with telemetry.tracer("test").start_as_current_span("shipped"):
            pass
        telemetry.meter("test").create_counter("evictions").add(1)
        # A blocking flush, off the loop: the collector is served by this loop.
        await asyncio.to_thread(telemetry.shutdown)
    assert [(received.service, received.span.name) for received in collector.spans] == [
        ("astra-otlp", "shipped")
    ]
    assert ("astra-otlp", "evictions") in collector.metrics


async def test_the_standard_otlp_variable_alone_turns_otlp_on(monkeypatch: pytest.MonkeyPatch):
    async with OtlpCollector() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        settings = Settings.load()
        assert (settings.otel.exporter, settings.otel.endpoint) == ("otlp", None)
        telemetry.configure(settings.otel)
        assert telemetry.settings() == settings.otel
        with telemetry.tracer("test").start_as_current_span("from the environment"):
            pass
        await asyncio.to_thread(telemetry.shutdown)
    assert [received.span.name for received in collector.spans] == ["from the environment"]
    assert telemetry.settings() is None


def test_the_console_exporter_is_chosen_by_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("ASTRA_OTEL__EXPORTER", "console")
    assert Settings.load().otel.exporter == "console"  # asked for: it wins over the endpoint
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.delenv("ASTRA_OTEL__EXPORTER")
    assert Settings.load().otel.exporter == "none"  # the default: off
