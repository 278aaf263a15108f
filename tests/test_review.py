"""
Review findings: guardrail bypasses found by reading the middleware
===================================================================

Each test shows traffic that a subscribed plugin must see but that reached
the app or the client unchecked before the fix it came with.
"""

from __future__ import annotations

import gzip
import io
from typing import Any

import orjson
from mcp.server.streamable_http import StreamableHTTPServerTransport
from starlette.requests import Request as StarletteRequest

import mcp_plugin_mw as mw
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
