"""OpenTelemetry: one span per hook invocation, one event per plugin call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcp_plugin_mw import GlobalContext, telemetry
from tests.sample_plugins import entry, tool_post, tool_pre


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Route the package's spans to an in-memory exporter for this test only."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("test"))
    yield memory
    provider.shutdown()


async def test_a_span_per_invocation_with_an_event_per_plugin(make_manager, call, exporter):
    manager = make_manager(
        [
            entry("tag", "Tag", priority=1),
            entry("upper", "Upper", priority=2),
            entry("broken", "Raiser", priority=3, mode="permissive"),
        ]
    )
    await call(manager, "tool_pre_invoke", tool_pre("x"), GlobalContext(request_id="req-1"))
    (span,) = exporter.get_finished_spans()
    assert span.name == "mcp_plugin_mw tool_pre_invoke"
    assert span.attributes["mcp_plugin_mw.hook"] == "tool_pre_invoke"
    assert span.attributes["mcp_plugin_mw.request_id"] == "req-1"
    assert span.attributes["mcp_plugin_mw.blocked"] is False
    assert span.attributes["mcp_plugin_mw.modified"] is True
    assert [event.name for event in span.events] == ["plugin tag", "plugin upper", "plugin broken"]
    outcomes = [
        (event.attributes["mcp_plugin_mw.plugin"], event.attributes["mcp_plugin_mw.outcome"]) for event in span.events
    ]
    assert outcomes == [("tag", "passed"), ("upper", "modified"), ("broken", "error")]
    for event in span.events:
        assert event.attributes["mcp_plugin_mw.hook"] == "tool_pre_invoke"
        assert isinstance(event.attributes["mcp_plugin_mw.duration_ms"], float)
        assert event.attributes["mcp_plugin_mw.duration_ms"] >= 0
    assert "mcp_plugin_mw.error" not in span.events[0].attributes
    assert span.events[2].attributes["mcp_plugin_mw.error"] == "RuntimeError: boom"


async def test_a_block_is_on_the_span(make_manager, call, exporter):
    manager = make_manager([entry("guard", "Blocker", config={"code": "NO_WAY"})])
    await call(manager, "tool_post_invoke", tool_post())
    (span,) = exporter.get_finished_spans()
    assert span.name == "mcp_plugin_mw tool_post_invoke"
    assert span.attributes["mcp_plugin_mw.blocked"] is True
    assert span.attributes["mcp_plugin_mw.modified"] is False
    assert span.attributes["mcp_plugin_mw.violation.code"] == "NO_WAY"
    assert span.attributes["mcp_plugin_mw.violation.plugin"] == "guard"
    assert [event.attributes["mcp_plugin_mw.outcome"] for event in span.events] == ["blocked"]


async def test_one_span_per_call(make_manager, call, exporter):
    manager = make_manager([entry("upper", "Upper")])
    await call(manager, "tool_pre_invoke", tool_pre(), GlobalContext(request_id="a"))
    await call(manager, "tool_post_invoke", tool_post(), GlobalContext(request_id="b"))
    spans = exporter.get_finished_spans()
    assert [(s.name, s.attributes["mcp_plugin_mw.request_id"]) for s in spans] == [
        ("mcp_plugin_mw tool_pre_invoke", "a"),
        ("mcp_plugin_mw tool_post_invoke", "b"),
    ]


async def test_no_span_when_no_plugin_is_subscribed(make_manager, call, exporter):
    manager = make_manager([entry("upper", "Upper", hooks=["tool_pre_invoke"])])
    await call(manager, "tool_post_invoke", tool_post())
    assert exporter.get_finished_spans() == ()


async def test_a_timeout_is_on_the_span(make_manager, call, exporter):
    manager = make_manager([entry("sleeper", "Sleeper", timeout=0.05)])
    await call(manager, "tool_pre_invoke", tool_pre())
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.attributes["mcp_plugin_mw.outcome"] == "timeout"
    assert event.attributes["mcp_plugin_mw.error"] == "timed out after 0.05s"
    assert span.attributes["mcp_plugin_mw.violation.code"] == "PLUGIN_TIMEOUT"
