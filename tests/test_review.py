"""
Review findings: guardrail bypasses found by reading the middleware
===================================================================

Each test shows traffic that a subscribed plugin must see but that reached
the app or the client unchecked before the fix it came with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore, StreamableHTTPServerTransport
from starlette.requests import Request as StarletteRequest

import mcp_plugin_mw as mw
from tests.fail_closed_support import uvicorn_on
from tests.test_asgi import EchoApp, client, tools_call

MASK = {"plugins": [{"name": "mask", "kind": "tests.mcp_plugins.MaskSecret"}]}
SHOUT = {"plugins": [{"name": "shout", "kind": "tests.mcp_plugins.Shout"}]}


def _sdk_accepts_content_type(content_type: str) -> bool:
    """What the official MCP SDK server decides about a request's Content-Type."""
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": [(b"content-type", content_type.encode())]}
    transport = StreamableHTTPServerTransport(mcp_session_id=None)
    return bool(transport._check_content_type(StarletteRequest(scope)))


async def test_content_type_list_naming_json_is_inspected() -> None:
    # The SDK server takes a Content-Type that lists application/json among
    # other types as JSON; the middleware must read such a body too.
    for content_type in ("text/plain, application/json", "application/json, text/plain"):
        assert _sdk_accepts_content_type(content_type)
        app = EchoApp()
        async with client(mw.PluginMiddleware(app, config=MASK)) as http:
            answer = await http.post("/mcp", content=tools_call("forbidden"), headers={"content-type": content_type})
        assert app.calls == 0, content_type
        assert answer.json()["error"]["message"].startswith("Plugin Violation")


def test_content_type_list_naming_json_is_inspected_wsgi() -> None:
    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    body = tools_call("forbidden")
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/mcp",
        "CONTENT_TYPE": "text/plain, application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    out = b"".join(mw.WSGIPluginMiddleware(app, config=MASK)(environ, lambda *a: None))
    assert seen == []
    assert orjson.loads(out)["error"]["message"].startswith("Plugin Violation")


def _sse(*documents: Any) -> bytes:
    return b"".join(b"event: message\r\ndata: " + orjson.dumps(d) + b"\r\n\r\n" for d in documents)


RESULT = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "quiet"}]}}


async def test_compressed_event_stream_is_not_passed_unchecked() -> None:
    # README: a compressed response a response hook should see is replaced,
    # never passed unchecked. An event stream is a response too.
    app = EchoApp(
        response=gzip.compress(_sse(RESULT)),
        content_type=b"text/event-stream",
        extra_headers=[(b"content-encoding", b"gzip")],
    )
    async with client(mw.PluginMiddleware(app, config=SHOUT)) as http:
        answer = await http.post("/mcp", content=tools_call(), headers={"content-type": "application/json"})
    assert answer.headers.get("content-encoding") is None
    assert answer.json()["error"]["code"] == -32603
    assert answer.json()["id"] == 1


def test_compressed_event_stream_is_not_passed_unchecked_wsgi() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Content-Encoding", "gzip")])
        return [gzip.compress(_sse(RESULT))]

    body = tools_call()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/mcp",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    started: list[Any] = []
    out = b"".join(mw.WSGIPluginMiddleware(app, config=SHOUT)(environ, lambda *a: started.append(a)))
    assert [name.lower() for name, _ in started[-1][1]].count("content-encoding") == 0
    assert orjson.loads(out)["error"]["code"] == -32603


async def test_batched_responses_in_one_event_are_inspected() -> None:
    # MCP 2025-03-26: the responses on an event stream "MAY be batched".
    batch = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {}}},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {}}},
        ]
    )
    second = {**RESULT, "id": 2}
    app = EchoApp(response=b"data: " + orjson.dumps([RESULT, second]) + b"\n\n", content_type=b"text/event-stream")
    async with client(mw.PluginMiddleware(app, config=SHOUT)) as http:
        answer = await http.post("/mcp", content=batch, headers={"content-type": "application/json"})
    assert answer.text.startswith("data: ")
    documents = orjson.loads(answer.text[len("data: ") :])
    assert [d["result"]["content"][0]["text"] for d in documents] == ["QUIET", "QUIET"]


class MemoryEventStore(EventStore):
    """The smallest event store the SDK server resumes streams from."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: Any) -> str | None:
        found = [i for i, (event_id, _, _) in enumerate(self.events) if event_id == last_event_id]
        if not found:
            return None
        stream_id = self.events[found[0]][1]
        for event_id, stream, message in self.events[found[0] + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def polling_server() -> Any:
    server = MCPServer("review")

    @server.tool()
    async def polled(ctx: Context) -> str:
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        return "quiet"

    @server.tool()
    def plain() -> str:
        return "loud"

    return server.streamable_http_app(event_store=MemoryEventStore(), retry_interval=50)


async def test_a_result_resumed_over_get_is_inspected() -> None:
    # MCP 2025-11-25 polling: the server closes the POST stream and the client
    # resumes it with GET and Last-Event-ID; the result then arrives on the
    # GET stream. The official SDK client and server do exactly this.
    with uvicorn_serving(mw.PluginMiddleware(polling_server(), config=SHOUT)) as url:
        async with Client(streamable_http_client(url), mode="legacy") as mcp_client:
            # The call the POST stream left unanswered is found again: its
            # result gets the response hook (Shout upper-cases it).
            resumed = await asyncio.wait_for(mcp_client.call_tool("polled", {}), 10)
            assert [item.text for item in resumed.content] == ["QUIET"]
            assert [item.text for item in (await mcp_client.call_tool("plain", {})).content] == ["LOUD"]


async def test_a_resumed_result_no_call_is_known_for_fails_closed() -> None:
    # With nowhere to keep the unanswered call (the store forgets at once),
    # the resumed result cannot be attributed: it is replaced, not passed.
    config = {**SHOUT, "plugin_settings": {"pending_calls": {"ttl": 0.000001}}}
    with uvicorn_serving(mw.PluginMiddleware(polling_server(), config=config)) as url:
        async with Client(streamable_http_client(url), mode="legacy") as mcp_client:
            with pytest.raises(MCPError) as caught:
                await asyncio.wait_for(mcp_client.call_tool("polled", {}), 10)
            assert caught.value.code == -32603
            assert "cannot be inspected" in caught.value.message
            # The session goes on: results on the POST's own stream are checked.
            assert [item.text for item in (await mcp_client.call_tool("plain", {})).content] == ["LOUD"]


@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1; yields the URL of its ``/mcp`` endpoint."""
    with uvicorn_on(app) as port:
        yield f"http://127.0.0.1:{port}/mcp"


async def test_get_stream_passes_what_no_response_hook_watches() -> None:
    listed = {"jsonrpc": "2.0", "id": 4, "result": {"tools": []}}
    note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
    tool = {**RESULT, "id": 5}
    stream = b": hi\n\n" + _sse(listed, note) + b"id: 7\nevent: message\ndata: " + orjson.dumps(tool) + b"\n\n"
    app = EchoApp(response=stream, content_type=b"text/event-stream")
    async with client(mw.PluginMiddleware(app, config=SHOUT)) as http:
        answer = await http.get("/mcp", headers={"last-event-id": "3"})
    head, _, tail = answer.content.partition(b"id: 7\n")
    assert head == b": hi\n\n" + _sse(listed, note)
    replaced = orjson.loads(tail.split(b"data: ", 1)[1])
    assert replaced["id"] == 5
    assert replaced["error"]["code"] == -32603


async def test_unterminated_last_event_the_sdk_client_dispatches_is_inspected() -> None:
    # httpx2's parser, which the SDK client reads streams with, dispatches a
    # last event that ends in a lone CR at the end of the stream.
    stream = b"event: message\r\ndata: " + orjson.dumps(RESULT) + b"\r"
    dispatched = [event.data for event in _client_events(stream)]
    assert dispatched == [orjson.dumps(RESULT).decode()]
    app = EchoApp(response=stream, content_type=b"text/event-stream")
    async with client(mw.PluginMiddleware(app, config=SHOUT)) as http:
        answer = await http.post("/mcp", content=tools_call(), headers={"content-type": "application/json"})
    [data] = [event.data for event in _client_events(answer.content)]
    assert orjson.loads(data)["result"]["content"][0]["text"] == "QUIET"
    # Untouched (Shout leaves the "slow" tool alone), the tail goes out as it came.
    slow = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow"}})
    app = EchoApp(response=stream, content_type=b"text/event-stream")
    async with client(mw.PluginMiddleware(app, config=SHOUT)) as http:
        answer = await http.post("/mcp", content=slow, headers={"content-type": "application/json"})
    assert answer.content == stream


def _client_events(stream: bytes) -> list[Any]:
    from httpx2._sse import _SSEParser

    parser = _SSEParser()
    return [*parser.decode(stream.decode()), *parser.flush()]


async def test_result_under_a_json_like_content_type_is_inspected() -> None:
    # The SDK client takes any Content-Type that starts with
    # "application/json" (lower-cased) as JSON.
    for content_type in (b"application/json-rpc", b"application/json charset=utf-8"):
        app = EchoApp(response=orjson.dumps(RESULT), content_type=content_type)
        async with client(mw.PluginMiddleware(app, config=SHOUT)) as http:
            answer = await http.post("/mcp", content=tools_call(), headers={"content-type": "application/json"})
        assert orjson.loads(answer.content)["result"]["content"][0]["text"] == "QUIET", content_type


async def test_event_over_the_response_limit_is_replaced_not_raised() -> None:
    # An event too large to parse used to raise out of the app's send().
    big = {**RESULT, "result": {"content": [{"type": "text", "text": "x" * 500}]}}
    stream = b": start\n\n" + _sse(big) + _sse({"jsonrpc": "2.0", "method": "notifications/message"})
    app = EchoApp(response=stream, content_type=b"text/event-stream")
    async with client(mw.PluginMiddleware(app, config=SHOUT, max_response_bytes=300)) as http:
        answer = await http.post("/mcp", content=tools_call(), headers={"content-type": "application/json"})
    assert b"x" * 500 not in answer.content
    [data] = [event.data for event in _client_events(answer.content)]
    assert orjson.loads(data)["error"]["code"] == -32603
    assert orjson.loads(data)["id"] == 1


def test_event_over_the_response_limit_is_replaced_not_raised_wsgi() -> None:
    big = {**RESULT, "result": {"content": [{"type": "text", "text": "x" * 500}]}}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return [_sse(big)[:200], _sse(big)[200:]]

    body = tools_call()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/mcp",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    middleware = mw.WSGIPluginMiddleware(app, config=SHOUT, max_response_bytes=300)
    out = b"".join(middleware(environ, lambda *a: None))
    [data] = [event.data for event in _client_events(out)]
    assert orjson.loads(data)["error"]["code"] == -32603
