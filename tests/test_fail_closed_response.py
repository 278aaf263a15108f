"""
Fail closed, response side
==========================

A tiny hand-written MCP server (enough of 2026-07-28 and 2025-11-25 for the
official SDK ``Client``) answers ``tools/call`` with crafted replies: an id
of another JSON type, an id matching no request, an event stream in UTF-16,
two Content-Type headers, a stream that has already begun when a response
hook fails. It runs behind ``PluginMiddleware`` on uvicorn on 127.0.0.1 and
is driven by raw httpx and by the SDK client (``auto`` and ``legacy``).
What the client reads is asserted: masked values never in the raw bytes,
-32603 in place of what the middleware cannot inspect, and the server goes
on serving.

``http.response.pathsend`` and trailers are ASGI extensions uvicorn does not
advertise: those tests call the middleware directly with a hand-written
``receive`` and ``send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from starlette.responses import FileResponse

import mcp_plugin_mw as mw
from tests.fail_closed_support import (
    BOUND,
    DENIED_WORD,
    EMAIL,
    SEEN_RESPONSE_BODIES,
    error_for,
    media,
    messages_of,
    sse_data,
    uvicorn_on,
)
from tests.test_fail_closed import HostileTransport

pytestmark = pytest.mark.timeout(120)

PII = {"plugins": [{"name": "pii", "kind": "pii_filter"}]}
BLOCK_RESULT = {
    "plugins": [
        {"name": "banned", "kind": "deny_list", "hooks": ["tool_post_invoke"], "config": {"terms": [DENIED_WORD]}}
    ]
}
RAISING = {"plugins": [{"name": "raiser", "kind": "tests.fail_closed_support.RaisingPost", "mode": "enforce"}]}
NOT_STARTING = {"plugins": [{"name": "starter", "kind": "tests.fail_closed_support.FailsToStart", "mode": "enforce"}]}
BUFFERING = {"plugins": [{"name": "observer", "kind": "tests.fail_closed_support.BufferingObserver"}]}

NEW = "2026-07-28"
LEGACY = "2025-11-25"


def _sse(*documents: Any) -> bytes:
    return b"".join(b"event: message\ndata: " + json.dumps(d).encode() + b"\n\n" for d in documents)


class CraftedServer:
    """Just enough MCP for the SDK client; ``tools/call`` is answered as ``behaviour`` says."""

    def __init__(self, behaviour: str = "json", text: str = f"write to {EMAIL}") -> None:
        self.behaviour = behaviour
        self.text = text
        self.calls: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] != "POST":
            await self._json(send, 405, None)
            return
        message = json.loads(body)
        if "id" not in message:
            await self._json(send, 202, None)
            return
        params = message.get("params") or {}
        meta = params.get("_meta") or {}
        new = meta.get("io.modelcontextprotocol/protocolVersion") == NEW
        method = message["method"]
        if method == "tools/call":
            self.calls.append(message)
            await self._answer_call(message, new, send)
            return
        if method == "server/discover":
            result: dict[str, Any] = {
                "cacheScope": "private",
                "capabilities": {"tools": {"listChanged": False}},
                "supportedVersions": [NEW],
                "ttlMs": 0,
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "crafted", "version": "1"}},
            }
        elif method == "initialize":
            result = {
                "protocolVersion": LEGACY,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "crafted", "version": "1"},
            }
        elif method == "tools/list":
            result = {"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]}
            if new:
                result.update(cacheScope="private", ttlMs=0)
        else:
            result = {}
        if new:
            result["resultType"] = "complete"
        await self._json(send, 200, {"jsonrpc": "2.0", "id": message["id"], "result": result})

    async def _json(self, send: Any, status: int, document: Any, headers: list | None = None) -> None:
        out = b"" if document is None else json.dumps(document).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers or [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))],
            }
        )
        await send({"type": "http.response.body", "body": out})

    async def _answer_call(self, message: Any, new: bool, send: Any) -> None:
        request_id = message["id"]
        behaviour = self.behaviour
        result: dict[str, Any] = {"content": [{"type": "text", "text": self.text}], "isError": False}
        if new:
            result["resultType"] = "complete"
        reply_id = request_id
        if behaviour in ("string_id", "sse_string_id"):
            reply_id = str(request_id) if isinstance(request_id, int) else int(request_id)
        elif behaviour == "float_id":
            reply_id = float(request_id)
        elif behaviour in ("unknown_id", "sse_unknown_id"):
            reply_id = 424242
        document = {"jsonrpc": "2.0", "id": reply_id, "result": result}
        sse_start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
        if behaviour in ("json", "string_id", "float_id", "unknown_id"):
            await self._json(send, 200, document)
        elif behaviour == "two_content_types":
            out = json.dumps(document).encode()
            headers = [(b"content-type", b"application/json"), (b"content-type", b"text/plain")]
            await self._json(send, 200, document, [*headers, (b"content-length", b"%d" % len(out))])
        elif behaviour in ("sse", "sse_string_id", "sse_unknown_id"):
            await send(sse_start)
            await send({"type": "http.response.body", "body": _sse(document)})
        elif behaviour == "utf16_sse":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-16")],
                }
            )
            await send({"type": "http.response.body", "body": _sse(document).decode().encode("utf-16")})
        elif behaviour == "sse_began":
            note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}}
            await send(sse_start)
            await send({"type": "http.response.body", "body": b": started\n\n" + _sse(note), "more_body": True})
            await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": _sse(document), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            raise AssertionError(behaviour)


@contextlib.contextmanager
def crafted(config: Any, behaviour: str, lifespan: str = "on", **kw: Any) -> Iterator[tuple[str, CraftedServer]]:
    server = CraftedServer(behaviour, **kw)
    with uvicorn_on(mw.PluginMiddleware(server, config=config), lifespan=lifespan) as port:
        yield f"http://127.0.0.1:{port}/mcp", server


def call(url: str, request_id: Any = 5, name: str = "whoami") -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": {}}}
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=BOUND) as http:
        return http.post(url, content=json.dumps(body).encode(), headers=headers)


@contextlib.asynccontextmanager
async def sdk(url: str, mode: str) -> AsyncIterator[tuple[Client, bytearray]]:
    sink = bytearray()
    async with (
        httpx2.AsyncClient(transport=HostileTransport(None, sink), timeout=httpx2.Timeout(BOUND)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client, sink


MODES = ["auto", "legacy"]


def text_of(result: Any) -> str:
    return result.content[0].text


# --------------------------------------------------------------------------
# Ids matched the way MCP clients match them
# --------------------------------------------------------------------------


RETYPED = [
    pytest.param(behaviour, request_id, id=f"{behaviour}-{request_id!r}")
    for behaviour in ("string_id", "float_id", "sse_string_id")
    for request_id in (5, "5", 0, "0")
    if not (behaviour == "float_id" and isinstance(request_id, str))
]


@pytest.mark.parametrize(("behaviour", "request_id"), RETYPED)
def test_differently_typed_reply_id_is_still_inspected_raw(behaviour: str, request_id: Any) -> None:
    with crafted(PII, behaviour) as (url, server):
        answer = call(url, request_id)
    assert server.calls, "the call reached the server"
    assert EMAIL.encode() not in answer.content
    assert b"[REDACTED:EMAIL]" in answer.content


@pytest.mark.parametrize("behaviour", ["string_id", "sse_string_id"])
@pytest.mark.parametrize("mode", MODES)
async def test_differently_typed_reply_id_is_still_inspected_sdk(behaviour: str, mode: str) -> None:
    with crafted(PII, behaviour) as (url, _server):
        async with sdk(url, mode) as (client, sink):
            result = await asyncio.wait_for(client.call_tool("whoami", {}), BOUND)
            assert EMAIL not in text_of(result)
            assert "[REDACTED:EMAIL]" in text_of(result)
    assert EMAIL.encode() not in bytes(sink)


@pytest.mark.parametrize("behaviour", ["string_id", "sse_string_id"])
def test_differently_typed_reply_id_still_meets_a_blocking_response_hook(behaviour: str) -> None:
    with crafted(BLOCK_RESULT, behaviour, text=f"the {DENIED_WORD} answer") as (url, _server):
        answer = call(url, 5)
    assert DENIED_WORD.encode() not in answer.content
    found = messages_of(answer.headers.get("content-type"), answer.content)
    assert [m for m in found if "error" in m], answer.content


# --------------------------------------------------------------------------
# Responses that cannot be attributed or read: -32603, never forwarded
# --------------------------------------------------------------------------

UNREADABLE = ["unknown_id", "sse_unknown_id", "utf16_sse", "two_content_types"]


@pytest.mark.parametrize("behaviour", UNREADABLE)
@pytest.mark.parametrize("request_id", [5, "5", 18446744073709551619], ids=repr)
def test_unreadable_response_is_replaced_raw(behaviour: str, request_id: Any) -> None:
    with crafted(PII, behaviour) as (url, _server):
        answer = call(url, request_id)
        assert EMAIL.encode() not in answer.content
        assert EMAIL.encode("utf-16-le") not in answer.content
        assert answer.status_code == 200
        found = messages_of(answer.headers.get("content-type"), answer.content)
        error = error_for(found, request_id)
        assert error["error"]["code"] == -32603
        assert not [m for m in found if "result" in m]
        if request_id == 18446744073709551619:
            assert b'"id":18446744073709551619' in answer.content.replace(b" ", b"")
        assert len([v for k, v in answer.headers.multi_items() if k == "content-type"]) == 1
        # The server goes on serving.
        assert call(url, 6).status_code == 200


@pytest.mark.parametrize("behaviour", UNREADABLE)
@pytest.mark.parametrize("mode", MODES)
async def test_unreadable_response_is_replaced_sdk(behaviour: str, mode: str) -> None:
    with crafted(PII, behaviour) as (url, _server):
        async with sdk(url, mode) as (client, sink):
            with pytest.raises(MCPError) as caught:
                await asyncio.wait_for(client.call_tool("whoami", {}), BOUND)
            assert caught.value.code == -32603
            tools = await asyncio.wait_for(client.list_tools(), BOUND)
            assert [t.name for t in tools.tools] == ["whoami"]
    assert EMAIL.encode() not in bytes(sink)


# --------------------------------------------------------------------------
# A response hook that raises
# --------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["json", "sse"])
def test_raising_post_hook_gives_internal_error_raw(behaviour: str) -> None:
    with crafted(RAISING, behaviour) as (url, _server):
        for request_id in (5, "x", 18446744073709551619):
            answer = call(url, request_id)
            assert answer.status_code == 200
            found = messages_of(answer.headers.get("content-type"), answer.content)
            assert error_for(found, request_id)["error"]["code"] == -32603
            assert EMAIL.encode() not in answer.content
            assert b"internal detail" not in answer.content
            assert b"Traceback" not in answer.content


def test_raising_post_hook_after_the_stream_began_ends_it_with_an_error_event() -> None:
    with crafted(RAISING, "sse_began") as (url, _server):
        body = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        with (
            httpx.Client(timeout=BOUND) as http,
            http.stream("POST", url, content=json.dumps(body).encode(), headers=headers) as answer,
        ):
            assert answer.status_code == 200
            assert media(answer.headers.get("content-type")) == "text/event-stream"
            raw = b"".join(answer.iter_raw())
        events = [json.loads(d) for d in sse_data(raw) if d.strip()]
        assert events[0]["method"] == "notifications/message"
        last = events[-1]
        assert last["id"] == 5
        assert last["error"]["code"] == -32603
        assert not [e for e in events if "result" in e]
        assert EMAIL.encode() not in raw
        assert b"internal detail" not in raw
        # The server goes on serving.
        again = call(url, 6)
        assert again.status_code == 200
        assert error_for(messages_of(again.headers.get("content-type"), again.content), 6)["error"]["code"] == -32603


@pytest.mark.parametrize("behaviour", ["json", "sse", "sse_began"])
@pytest.mark.parametrize("mode", MODES)
async def test_raising_post_hook_sdk(behaviour: str, mode: str) -> None:
    logged: list[Any] = []

    async def on_log(params: Any) -> None:
        logged.append(params)

    with crafted(RAISING, behaviour) as (url, _server):
        sink = bytearray()
        async with (
            httpx2.AsyncClient(transport=HostileTransport(None, sink), timeout=httpx2.Timeout(BOUND)) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode, logging_callback=on_log) as client,
        ):
            for _ in range(2):
                with pytest.raises(MCPError) as caught:
                    await asyncio.wait_for(client.call_tool("whoami", {}), BOUND)
                assert caught.value.code == -32603
            tools = await asyncio.wait_for(client.list_tools(), BOUND)
            assert [t.name for t in tools.tools] == ["whoami"]
    assert EMAIL.encode() not in bytes(sink)
    if behaviour == "sse_began":
        assert logged, "the event sent before the failure reached the client"


# --------------------------------------------------------------------------
# A plugin that fails to start
# --------------------------------------------------------------------------


def test_plugin_failing_to_start_gives_a_clear_error_and_the_server_keeps_serving() -> None:
    # lifespan off: the plugins start with the first request that needs them.
    with crafted(NOT_STARTING, "json", lifespan="off") as (url, server):
        for request_id in (5, "5"):
            answer = call(url, request_id)
            assert answer.status_code == 200, answer.content
            assert media(answer.headers.get("content-type")) == "application/json"
            error = error_for(messages_of("application/json", answer.content), request_id)
            assert error["error"]["code"] == -32603
            assert "starter" in json.dumps(error["error"]), error
            assert b"Traceback" not in answer.content
        assert server.calls == [], "a call went to the app while its guard could not start"


# --------------------------------------------------------------------------
# ASGI extensions through a buffering http_post_request hook
# --------------------------------------------------------------------------


async def _drive(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    requested = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    try:
        await asyncio.wait_for(app(scope, receive, send), BOUND)
    finally:
        done.set()
    return sent


def _scope(extensions: dict[str, Any], path: str = "/file") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": extensions,
        "state": {},
    }


def _delivered(sent: list[dict[str, Any]]) -> bytes:
    out = b""
    for message in sent[1:]:
        if message["type"] == "http.response.body":
            out += message.get("body", b"")
        elif message["type"] == "http.response.pathsend":
            out += Path(message["path"]).read_bytes()
    return out


async def test_pathsend_survives_a_buffering_response_hook(tmp_path: Path) -> None:
    content = b'{"report": "' + b"x" * 5000 + b'"}'
    file = tmp_path / "report.json"
    file.write_bytes(content)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await FileResponse(file, media_type="application/json")(scope, receive, send)

    SEEN_RESPONSE_BODIES.clear()
    middleware = mw.PluginMiddleware(app, config=BUFFERING)
    sent = await _drive(middleware, _scope({"http.response.pathsend": {}}))
    assert sent, "nothing was sent"
    assert sent[0]["type"] == "http.response.start", [m["type"] for m in sent]
    assert sent[0]["status"] == 200
    kinds = [m["type"] for m in sent[1:]]
    assert set(kinds) <= {"http.response.body", "http.response.pathsend"}, kinds
    last = sent[-1]
    assert last["type"] == "http.response.pathsend" or not last.get("more_body", False), kinds
    assert _delivered(sent) == content
    lengths = [v for k, v in sent[0]["headers"] if k.lower() == b"content-length"]
    assert lengths in ([], [str(len(content)).encode()]), lengths
    assert [content] == SEEN_RESPONSE_BODIES, "the response hook did not see the file it let through"


async def test_trailers_survive_a_buffering_response_hook() -> None:
    parts = [b'{"part": 1, ', b'"part2": "', b"y" * 3000 + b'"}']

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"trailer", b"x-checksum")],
                "trailers": True,
            }
        )
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")], "more_trailers": False})

    SEEN_RESPONSE_BODIES.clear()
    middleware = mw.PluginMiddleware(app, config=BUFFERING)
    sent = await _drive(middleware, _scope({"http.response.trailers": {}}, "/data"))
    kinds = [m["type"] for m in sent]
    assert kinds[0] == "http.response.start", kinds
    assert sent[0].get("trailers") is True, sent[0]
    assert kinds[-1] == "http.response.trailers", kinds
    assert set(kinds[1:-1]) == {"http.response.body"}, kinds
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert not bodies[-1].get("more_body", False)
    assert b"".join(m.get("body", b"") for m in bodies) == b"".join(parts)
    assert sent[-1]["headers"] == [(b"x-checksum", b"abc123")]
    assert not sent[-1].get("more_trailers", False)
    assert [b"".join(parts)] == SEEN_RESPONSE_BODIES
