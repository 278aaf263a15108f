"""
OpenTelemetry: a span per hook invocation, a child span per plugin call
=======================================================================

Spans go to the SDK's in-memory exporter through a provider of the test's
own: the package's tracer is swapped for the test (the global provider can be
set once per process, so no test sets it). Plugins that start spans of their
own get that provider's tracer in their ``config``. The out-of-process tests
run real servers on 127.0.0.1: a standard-library sidecar that records the
headers it gets, ``serve-plugin`` in a child process, and an MCP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags, TraceState

import mcp_plugin_mw as mw
from mcp_plugin_mw import GlobalContext, Plugin, PluginContext, PluginResult, telemetry
from tests.external import SERVE_PLUGIN
from tests.sample_plugins import BOUND, entry, tool_post, tool_pre

HERE = __name__


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[TracerProvider]:
    """A provider of the test's own, exporting to memory; the package's spans go to it."""
    memory = InMemorySpanExporter()
    own = TracerProvider()
    own.add_span_processor(SimpleSpanProcessor(memory))
    own.memory = memory  # type: ignore[attr-defined]
    monkeypatch.setattr(telemetry, "_tracer", own.get_tracer("test"))
    yield own
    own.shutdown()


@pytest.fixture
def exporter(provider: TracerProvider) -> InMemorySpanExporter:
    return provider.memory  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def detach_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """What OpenTelemetry logs when a context is detached where it was not attached (must stay empty)."""
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")
    found: list[str] = []
    yield found
    found.extend(r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry"))
    assert found == []


def hook_span(exporter: InMemorySpanExporter, hook: str = "tool_pre_invoke") -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == f"mcp_plugin_mw {hook}"]
    return span


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    spans = [s for s in exporter.get_finished_spans() if s.parent is not None]
    return sorted((s for s in spans if s.parent.span_id == parent.context.span_id), key=lambda s: s.start_time)


def plugin_spans(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in children(exporter, parent) if s.name.startswith("plugin ")]


def own(name: str, cls: str, provider: TracerProvider, **fields: Any) -> dict[str, Any]:
    """An entry for a plugin of this module that starts spans with ``provider``'s tracer."""
    return {"name": name, "kind": f"{HERE}.{cls}", "config": {"tracer": provider.get_tracer("plugin")}, **fields}


# --------------------------------------------------------------------------
# Plugins that trace (and one that fails harder than plugins may)
# --------------------------------------------------------------------------


class OwnSpan(Plugin):
    """Sync: does its work in a span of its own, named after itself."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        with self.config["tracer"].start_as_current_span(f"{self.name} work"):
            pass


class AsyncOwnSpan(Plugin):
    """Async: a span of its own around an ``await`` that suspends."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        with self.config["tracer"].start_as_current_span(f"{self.name} work"):
            await asyncio.sleep(0.001)


class BlockingOwnSpan(OwnSpan):
    """:class:`OwnSpan` on a worker thread."""

    blocking = True


class SyncNap(Plugin):
    """Sync: sleeps ``config['seconds']``."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        threading.Event().wait(self.config["seconds"])


class AsyncNap(Plugin):
    """Async: sleeps ``config['seconds']``."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        await asyncio.sleep(self.config["seconds"])


class Fatal(BaseException):
    """Not an ``Exception``: the executor lets it through, so the whole invocation raises."""


class SyncFatal(Plugin):
    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        raise Fatal("the end")


class AsyncFatal(Plugin):
    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        await asyncio.sleep(0)
        raise Fatal("the end")


class Waiting(Plugin):
    """Async: sets ``config['entered']`` (a ``threading.Event``) and waits until cancelled."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        self.config["entered"].set()
        await asyncio.sleep(BOUND)


class TraceEcho(Plugin):
    """Answers, as metadata, the trace and span ids of the span current while it runs (hosted remotely)."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        current = trace.get_current_span().get_span_context()
        return PluginResult(
            metadata={
                "trace_id": trace.format_trace_id(current.trace_id),
                "span_id": trace.format_span_id(current.span_id),
            }
        )


# --------------------------------------------------------------------------
# The hook span and the plugins' spans
# --------------------------------------------------------------------------


async def test_a_span_per_invocation_with_a_child_span_per_plugin(make_manager, call, exporter):
    manager = make_manager(
        [
            entry("tag", "Tag", priority=1),
            entry("upper", "Upper", priority=2),
            entry("broken", "Raiser", priority=3, mode="permissive"),
        ]
    )
    await call(manager, "tool_pre_invoke", tool_pre("x"), GlobalContext(request_id="req-1"))
    span = hook_span(exporter)
    assert span.attributes["mcp_plugin_mw.hook"] == "tool_pre_invoke"
    assert span.attributes["mcp_plugin_mw.request_id"] == "req-1"
    assert span.attributes["mcp_plugin_mw.blocked"] is False
    assert span.attributes["mcp_plugin_mw.modified"] is True
    assert span.status.status_code is StatusCode.UNSET
    plugins = plugin_spans(exporter, span)
    assert [(s.name, s.attributes["mcp_plugin_mw.outcome"]) for s in plugins] == [
        ("plugin tag", "passed"),
        ("plugin upper", "modified"),
        ("plugin broken", "error"),
    ]
    assert [s.attributes["mcp_plugin_mw.plugin"] for s in plugins] == ["tag", "upper", "broken"]
    assert all(s.context.trace_id == span.context.trace_id for s in plugins)
    assert "mcp_plugin_mw.error" not in plugins[0].attributes
    assert plugins[2].attributes["mcp_plugin_mw.error"] == "RuntimeError: boom"
    assert plugins[2].status.status_code is StatusCode.ERROR
    assert plugins[2].status.description == "RuntimeError: boom"
    assert [s.status.status_code for s in plugins[:2]] == [StatusCode.UNSET, StatusCode.UNSET]


@pytest.mark.parametrize("cls", ["SyncNap", "AsyncNap"])
async def test_plugin_spans_sit_where_the_calls_ran(make_manager, call, exporter, cls):
    naps = [0.03, 0.01, 0.02]
    manager = make_manager(
        [entry(f"tag{i}", "Tag", priority=i * 2) for i in range(3)]
        + [
            {"name": f"p{i}", "kind": f"{HERE}.{cls}", "priority": i * 2 + 1, "config": {"seconds": s}}
            for i, s in enumerate(naps)
        ]
    )
    await call(manager, "tool_pre_invoke", tool_pre())
    span = hook_span(exporter)
    plugins = plugin_spans(exporter, span)
    assert [s.name for s in plugins] == [
        "plugin tag0",
        "plugin p0",
        "plugin tag1",
        "plugin p1",
        "plugin tag2",
        "plugin p2",
    ]
    # Within the hook's span, one after the other, each as long as its call.
    assert span.start_time <= plugins[0].start_time
    for before, after in itertools.pairwise(plugins):
        assert before.end_time <= after.start_time
    assert plugins[-1].end_time <= span.end_time
    for nap, plugin in zip(naps, plugins[1::2], strict=True):
        seconds = (plugin.end_time - plugin.start_time) / 1e9
        assert nap * 0.9 <= seconds < nap + 1.0


@pytest.mark.parametrize("cls", ["OwnSpan", "AsyncOwnSpan", "BlockingOwnSpan"])
async def test_a_plugins_own_span_is_a_child_of_the_hook_span(
    make_manager, call, provider, exporter, cls, detach_errors
):
    manager = make_manager([own("first", cls, provider, priority=1), own("second", cls, provider, priority=2)])
    await call(manager, "tool_pre_invoke", tool_pre())
    span = hook_span(exporter)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("first work", "second work"):
        assert spans[name].parent.span_id == span.context.span_id
        assert spans[name].context.trace_id == span.context.trace_id
        assert span.start_time <= spans[name].start_time <= spans[name].end_time <= span.end_time
    assert [s.name for s in plugin_spans(exporter, span)] == ["plugin first", "plugin second"]


async def test_concurrent_plugins_spans_are_children_too(make_manager, call, provider, exporter, detach_errors):
    # Observability plugins run concurrently: asyncio.gather, a task each.
    plugins = [own(f"obs{i}", "AsyncOwnSpan", provider, category="observability") for i in range(3)]
    manager = make_manager(plugins)
    await call(manager, "tool_pre_invoke", tool_pre())
    span = hook_span(exporter)
    works = [s for s in exporter.get_finished_spans() if s.name.endswith(" work")]
    assert len(works) == 3
    assert {s.parent.span_id for s in works} == {span.context.span_id}
    assert {s.name for s in plugin_spans(exporter, span)} == {"plugin obs0", "plugin obs1", "plugin obs2"}


@pytest.mark.parametrize("cls", ["OwnSpan", "AsyncOwnSpan"])
def test_the_callers_span_is_the_parent_and_comes_back_after(make_manager, provider, exporter, cls, detach_errors):
    # invoke_sync from this thread: the async chain hops to the background loop and back.
    manager = make_manager([own("p", cls, provider)])
    outer_tracer = provider.get_tracer("app")
    with outer_tracer.start_as_current_span("request") as outer:
        manager.invoke_sync("tool_pre_invoke", tool_pre())
        assert trace.get_current_span() is outer
    assert trace.get_current_span() is trace.INVALID_SPAN
    span = hook_span(exporter)
    assert span.parent.span_id == outer.get_span_context().span_id
    (work,) = [s for s in exporter.get_finished_spans() if s.name == "p work"]
    assert work.parent.span_id == span.context.span_id


async def test_the_callers_span_is_the_parent_in_async_code(make_manager, provider, exporter, detach_errors):
    manager = make_manager([own("p", "AsyncOwnSpan", provider)])
    with provider.get_tracer("app").start_as_current_span("request") as outer:
        await manager.invoke("tool_pre_invoke", tool_pre())
        assert trace.get_current_span() is outer
    assert hook_span(exporter).parent.span_id == outer.get_span_context().span_id


async def test_a_block_is_on_the_span(make_manager, call, exporter):
    manager = make_manager([entry("tag", "Tag", priority=1), entry("guard", "Blocker", config={"code": "NO_WAY"})])
    await call(manager, "tool_post_invoke", tool_post())
    span = hook_span(exporter, "tool_post_invoke")
    assert span.attributes["mcp_plugin_mw.blocked"] is True
    assert span.attributes["mcp_plugin_mw.modified"] is False
    assert span.attributes["mcp_plugin_mw.violation.code"] == "NO_WAY"
    assert span.attributes["mcp_plugin_mw.violation.plugin"] == "guard"
    tag, guard = plugin_spans(exporter, span)
    assert guard.attributes["mcp_plugin_mw.outcome"] == "blocked"
    assert guard.attributes["mcp_plugin_mw.violation.code"] == "NO_WAY"
    assert "mcp_plugin_mw.violation.code" not in tag.attributes
    # A block is a decision, not a failure.
    assert span.status.status_code is StatusCode.UNSET


async def test_one_span_per_call(make_manager, call, exporter):
    manager = make_manager([entry("upper", "Upper")])
    await call(manager, "tool_pre_invoke", tool_pre(), GlobalContext(request_id="a"))
    await call(manager, "tool_post_invoke", tool_post(), GlobalContext(request_id="b"))
    hooks = [s for s in exporter.get_finished_spans() if s.name.startswith("mcp_plugin_mw ")]
    assert [(s.name, s.attributes["mcp_plugin_mw.request_id"]) for s in hooks] == [
        ("mcp_plugin_mw tool_pre_invoke", "a"),
        ("mcp_plugin_mw tool_post_invoke", "b"),
    ]
    assert hooks[0].context.trace_id != hooks[1].context.trace_id


async def test_no_span_when_no_plugin_is_subscribed(make_manager, call, exporter):
    manager = make_manager([entry("upper", "Upper", hooks=["tool_pre_invoke"])])
    await call(manager, "tool_post_invoke", tool_post())
    assert exporter.get_finished_spans() == ()


async def test_a_timeout_is_on_the_span(make_manager, call, exporter):
    manager = make_manager([entry("sleeper", "Sleeper", timeout=0.05)])
    await call(manager, "tool_pre_invoke", tool_pre())
    span = hook_span(exporter)
    (plugin,) = plugin_spans(exporter, span)
    assert plugin.attributes["mcp_plugin_mw.outcome"] == "timeout"
    assert plugin.attributes["mcp_plugin_mw.error"] == "timed out after 0.05s"
    assert plugin.status.status_code is StatusCode.ERROR
    assert (plugin.end_time - plugin.start_time) / 1e9 >= 0.045
    assert span.attributes["mcp_plugin_mw.violation.code"] == "PLUGIN_TIMEOUT"
    assert span.attributes["mcp_plugin_mw.violation.plugin"] == "sleeper"


async def test_an_enforcing_plugins_error_blocks_on_the_span(make_manager, call, exporter):
    manager = make_manager([entry("broken", "Raiser")])
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert not result.continue_processing
    span = hook_span(exporter)
    assert span.attributes["mcp_plugin_mw.violation.code"] == "PLUGIN_ERROR"
    (plugin,) = plugin_spans(exporter, span)
    assert plugin.status.status_code is StatusCode.ERROR


# --------------------------------------------------------------------------
# The span ends on every path
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["SyncFatal", "AsyncFatal"])
async def test_a_raising_chain_ends_its_span_with_an_error(make_manager, call, exporter, cls, detach_errors):
    manager = make_manager([{"name": "fatal", "kind": f"{HERE}.{cls}"}])
    with pytest.raises(Fatal):
        await call(manager, "tool_pre_invoke", tool_pre())
    span = hook_span(exporter)
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Fatal: the end"
    assert span.attributes["mcp_plugin_mw.error"] == "Fatal"
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_a_cancelled_invoke_ends_its_span(make_manager, exporter, detach_errors):
    entered = threading.Event()
    manager = make_manager([{"name": "waiting", "kind": f"{HERE}.Waiting", "config": {"entered": entered}}])
    await manager.ainitialize()
    task = asyncio.ensure_future(manager.invoke("tool_pre_invoke", tool_pre()))
    await asyncio.to_thread(entered.wait, BOUND)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = hook_span(exporter)
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["mcp_plugin_mw.error"] == "CancelledError"
    assert trace.get_current_span() is trace.INVALID_SPAN


# --------------------------------------------------------------------------
# Trace context to out-of-process plugins
# --------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """A protocol-1 sidecar that changes nothing and keeps each call's headers."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self._answer(b'{"status":"ok"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.seen.append({name.lower(): value for name, value in self.headers.items()})
        self._answer(b'{"result": null}')

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    """Managers of out-of-process plugins, closed on the test's own loop."""
    made: list[mw.PluginManager] = []

    def make(*plugins: dict[str, Any]) -> mw.PluginManager:
        manager = mw.PluginManager({"plugins": list(plugins)}, environ={})
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.aclose()


def sidecar(url: str) -> dict[str, Any]:
    return {
        "name": "side",
        "kind": "external",
        "transport": "http",
        "url": url,
        "hooks": ["tool_pre_invoke"],
        "health_interval": 0,
        "start_timeout": 5,
    }


def traceparent_of(span: ReadableSpan) -> str:
    found = span.context
    return f"00-{trace.format_trace_id(found.trace_id)}-{trace.format_span_id(found.span_id)}-{found.trace_flags:02x}"


async def test_a_sidecar_receives_the_hook_spans_traceparent(make, call, exporter, recorder):
    url, seen = recorder
    manager = make(sidecar(url))
    await call(manager, "tool_pre_invoke", tool_pre())
    (headers,) = seen
    assert headers["traceparent"] == traceparent_of(hook_span(exporter))
    assert "tracestate" not in headers


async def test_a_sidecar_receives_the_tracestate(make, exporter, recorder):
    url, seen = recorder
    manager = make(sidecar(url))
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "opaque")]),
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        await manager.invoke("tool_pre_invoke", tool_pre())
    finally:
        otel_context.detach(token)
    (headers,) = seen
    span = hook_span(exporter)
    assert span.context.trace_id == remote.trace_id
    assert headers["traceparent"] == traceparent_of(span)
    assert headers["tracestate"] == "vendor=opaque"


async def test_no_traceparent_without_a_span(make, call, recorder):
    # No SDK is set for the package (no provider fixture): no span, nothing to forward.
    url, seen = recorder
    manager = make(sidecar(url))
    await call(manager, "tool_pre_invoke", tool_pre())
    (headers,) = seen
    assert "traceparent" not in headers


async def test_nothing_is_added_without_opentelemetry(make, call, exporter, recorder, monkeypatch):
    monkeypatch.setattr(telemetry, "_propagate", None)
    url, seen = recorder
    manager = make(sidecar(url))
    await call(manager, "tool_pre_invoke", tool_pre())
    (headers,) = seen
    assert "traceparent" not in headers


async def test_a_subprocess_plugin_continues_the_trace(make, call, exporter):
    manager = make(
        {
            "name": "child",
            "kind": "external",
            "transport": "subprocess",
            "exec": SERVE_PLUGIN[0],
            "args": [*SERVE_PLUGIN[1:], f"{HERE}.TraceEcho"],
            "hooks": ["tool_pre_invoke"],
            "start_timeout": BOUND,
            "health_interval": 0,
            "shutdown_grace": 1,
        }
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    span = hook_span(exporter)
    # serve-plugin made the traceparent it received current while the plugin ran.
    assert result.metadata == {
        "trace_id": trace.format_trace_id(span.context.trace_id),
        "span_id": trace.format_span_id(span.context.span_id),
    }


async def test_serve_plugin_leaves_an_existing_server_span_current(provider):
    # An instrumented server has made its own span (holding the caller's context) current.
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with (
        provider.get_tracer("server").start_as_current_span("POST /call") as server_span,
        telemetry.remote_context(headers),
    ):
        assert trace.get_current_span() is server_span
    with telemetry.remote_context(headers):
        current = trace.get_current_span().get_span_context()
        assert (current.trace_id, current.span_id, current.is_remote) == (
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            True,
        )
    assert trace.get_current_span() is trace.INVALID_SPAN


# --------------------------------------------------------------------------
# An MCP plugin server (transport: mcp)
# --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def mcp_plugin_server() -> AsyncIterator[tuple[str, list[dict[str, str]], list[str]]]:
    """A minimal cpex-style plugin server: its POST headers, and the trace ids its tool ran under."""
    from mcp.server.mcpserver import MCPServer

    from tests.fail_closed_support import uvicorn_on

    headers: list[dict[str, str]] = []
    traces: list[str] = []
    server = MCPServer("traced-plugins")

    @server.tool()
    def get_plugin_config(name: str) -> str:
        return json.dumps({"name": name, "hooks": ["tool_pre_invoke"]})

    @server.tool()
    def invoke_hook(hook_type: str, plugin_name: str, payload: dict[str, Any], context: dict[str, Any]) -> str:
        traces.append(trace.format_trace_id(trace.get_current_span().get_span_context().trace_id))
        return json.dumps({"plugin_name": plugin_name, "result": {"continue_processing": True}})

    inner = server.streamable_http_app(json_response=True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        await inner(scope, receive, send)

    with uvicorn_on(app) as port:
        yield f"http://127.0.0.1:{port}/mcp", headers, traces


async def test_an_mcp_plugin_server_receives_the_trace_context(make, exporter):
    pytest.importorskip("mcp")
    async with mcp_plugin_server() as (url, headers, traces):
        manager = make(
            {
                "name": "traced",
                "kind": "external",
                "transport": "mcp",
                "mcp": {"proto": "STREAMABLEHTTP", "url": url},
                "hooks": ["tool_pre_invoke"],
            }
        )
        await manager.ainitialize()
        before = len(headers)
        await manager.invoke("tool_pre_invoke", tool_pre())
        await manager.aclose()
    trace_id = trace.format_trace_id(hook_span(exporter).context.trace_id)
    # The SDK's _meta, as the server's tool saw it, and our header on the POST.
    assert traces[-1] == trace_id
    sent = [h["traceparent"] for h in headers[before:] if "traceparent" in h]
    assert sent
    assert {value.split("-")[1] for value in sent} == {trace_id}
