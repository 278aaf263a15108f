"""
ASGI middleware behaviour that the SDK tests do not reach
=========================================================

A raw ASGI echo app records exactly what it received; the middleware sits in
front of it and is called directly or through httpx's ASGI transport.
"""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson
import pytest

import mcp_plugin_mw as mw
from tests.asgi_plugins import Observe

TOOL_PRE = {"plugins": [{"name": "observe", "kind": "tests.asgi_plugins.Observe"}]}
HTTP = {"plugins": [{"name": "http", "kind": "tests.asgi_plugins.HttpRewrite"}]}


class EchoApp:
    """Answers every request with the body it received, as JSON-RPC-ish JSON."""

    def __init__(
        self,
        response: bytes | None = None,
        content_type: bytes = b"application/json",
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.response = response
        self.content_type = content_type
        self.extra_headers = extra_headers or []
        self.received: list[bytes] = []
        self.scopes: list[dict[str, Any]] = []
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            self.scopes.append(scope)
            return
        self.calls += 1
        self.scopes.append(scope)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(body)
        out = self.response if self.response is not None else body
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", str(len(out)).encode()),
            *self.extra_headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000")


def tools_call(text: str = "hi", request_id: Any = 1) -> bytes:
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}},
        }
    )


async def test_lifespan_and_websocket_scopes_pass_through() -> None:
    app = EchoApp()
    middleware = mw.PluginMiddleware(app, config=HTTP)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent")

    await middleware({"type": "lifespan"}, receive, send)
    await middleware({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert [scope["type"] for scope in app.scopes] == ["lifespan", "websocket"]


async def test_request_context_from_headers_and_scope_user() -> None:
    app = EchoApp()
    settings = {"user_header": "X-User", "tenant_header": "X-Tenant", "server_id_header": "X-Server"}
    middleware = mw.PluginMiddleware(app, config={**TOOL_PRE, "plugin_settings": settings})
    async with client(middleware) as http:
        await http.post(
            "/mcp",
            content=tools_call(),
            headers={
                "content-type": "application/json; charset=utf-8",
                "x-request-id": "req-42",
                "x-user": "alice",
                "x-tenant": "acme",
                "x-server": "srv-1",
            },
        )
    assert Observe.last == {
        "request_id": "req-42",
        "user": "alice",
        "tenant": "acme",
        "server": "srv-1",
        "content_type": "application/json; charset=utf-8",
    }

    class User:
        is_authenticated = True
        display_name = "bob"

    async def with_user(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await mw.PluginMiddleware(app, config=TOOL_PRE)({**scope, "user": User()}, receive, send)

    async with client(with_user) as http:
        await http.post("/mcp", content=tools_call(), headers={"content-type": "application/json"})
    assert Observe.last["user"] == "bob"
    assert len(str(Observe.last["request_id"])) == 32  # generated when the client sends none


async def test_unmodified_request_and_response_pass_byte_for_byte() -> None:
    raw = b'{ "jsonrpc" : "2.0", "id": 7, "method": "tools/call",\n "params": {"name": "echo", "arguments": {"text": "\\u00e9t\xc3\xa9"}}}'
    response = b'{"jsonrpc": "2.0",  "id": 7, "result": {"content": []}}'
    app = EchoApp(response=response)
    async with client(mw.PluginMiddleware(app, config=TOOL_PRE)) as http:
        answer = await http.post("/mcp", content=raw, headers={"content-type": "application/json"})
    assert app.received == [raw]
    assert answer.content == response


async def test_body_over_limit_is_refused_from_content_length_and_while_reading() -> None:
    app = EchoApp()
    middleware = mw.PluginMiddleware(app, config=TOOL_PRE, max_body_bytes=100)
    async with client(middleware) as http:
        big = tools_call("x" * 200)
        answer = await http.post("/mcp", content=big, headers={"content-type": "application/json"})
        assert answer.status_code == 413
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["max_body_bytes"] == 100

        async def chunks() -> Any:  # no Content-Length: counted while reading
            for start in range(0, len(big), 16):
                yield big[start : start + 16]

        answer = await http.post("/mcp", content=chunks(), headers={"content-type": "application/json"})
        assert answer.status_code == 413
        small = await http.post("/mcp", content=tools_call(), headers={"content-type": "application/json"})
        assert small.status_code == 200
    assert app.received == [tools_call()]


async def test_compressed_request_refused_when_a_request_plugin_applies() -> None:
    app = EchoApp()
    async with client(mw.PluginMiddleware(app, config=TOOL_PRE)) as http:
        answer = await http.post(
            "/mcp",
            content=gzip.compress(tools_call()),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    assert answer.status_code == 415
    assert app.calls == 0


async def test_excluded_urls_and_other_methods_pass_untouched() -> None:
    app = EchoApp()
    middleware = mw.PluginMiddleware(app, config={**HTTP, "plugin_settings": {"excluded_urls": ["^/health$"]}})
    async with client(middleware) as http:
        answer = await http.post("/health", content=b'{"a": 1}')
        assert answer.content == b'{"a": 1}'
        assert "x-inspected" not in answer.headers
        answer = await http.post("/other", content=b'{"a": 1}')
        assert answer.json() == {"a": 1, "stamped": True}
        assert answer.headers["x-inspected"] == "yes"
        assert answer.headers["content-length"] == str(len(answer.content))
    only_mcp = mw.PluginMiddleware(EchoApp(), config=TOOL_PRE)
    async with client(only_mcp) as http:
        for method in ("GET", "DELETE", "HEAD", "OPTIONS"):
            answer = await http.request(method, "/mcp")
            assert answer.status_code == 200


async def test_http_hooks_block_rewrite_path_and_rate_limit() -> None:
    app = EchoApp()
    async with client(mw.PluginMiddleware(app, config=HTTP)) as http:
        blocked = await http.post("/admin/users", content=b"x")
        assert blocked.status_code == 451
        assert blocked.headers["content-type"] == "application/problem+json"
        problem = blocked.json()
        assert problem["code"] == "NO_ADMIN"
        assert problem["plugin_name"] == "http"
        assert problem["status"] == 451
        await http.post("/old", content=b"x")
        assert app.scopes[-1]["path"] == "/new"
        assert app.scopes[-1]["query_string"] == b"moved=1"
        limited = await http.post("/rate", content=b"x")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "7"
    assert app.calls == 2


async def test_compressed_or_oversized_response_is_not_passed_unchecked() -> None:
    config = {"plugins": [{"name": "shout", "kind": "tests.mcp_plugins.Shout"}]}
    body = orjson.dumps({"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": "x" * 500}]}})
    zipped = EchoApp(response=gzip.compress(body), extra_headers=[(b"content-encoding", b"gzip")])
    async with client(mw.PluginMiddleware(zipped, config=config)) as http:
        answer = await http.post("/mcp", content=tools_call(request_id=3), headers={"content-type": "application/json"})
    assert answer.json()["error"]["code"] == -32603
    assert answer.json()["id"] == 3
    large = EchoApp(response=body)
    async with client(mw.PluginMiddleware(large, config=config, max_response_bytes=100)) as http:
        answer = await http.post("/mcp", content=tools_call(request_id=3), headers={"content-type": "application/json"})
    assert answer.json()["error"]["code"] == -32603
    assert "cannot be inspected" in answer.json()["error"]["message"]


async def test_batch_blocks_only_the_offending_element() -> None:
    config = {"plugins": [{"name": "mask", "kind": "tests.mcp_plugins.MaskSecret"}]}
    batch = orjson.dumps(
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "ok"}},
            },
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "forbidden"}},
            },
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        ]
    )
    answered = orjson.dumps([{"jsonrpc": "2.0", "id": 1, "result": {"content": []}}])
    app = EchoApp(response=answered)
    async with client(mw.PluginMiddleware(app, config=config)) as http:
        answer = await http.post("/mcp", content=batch, headers={"content-type": "application/json"})
    forwarded = orjson.loads(app.received[0])
    assert [message.get("id") for message in forwarded] == [1, None]
    replies = answer.json()
    # Each member keeps its own plugin state: member 1's post hook sees member 1's text.
    assert replies[0] == {"jsonrpc": "2.0", "id": 1, "result": {"content": [], "_meta": {"test/original": "ok"}}}
    assert replies[1]["id"] == 2
    assert replies[1]["error"]["data"]["plugin_name"] == "mask"
    assert answer.headers["content-length"] == str(len(answer.content))


@pytest.mark.parametrize("request_id", [0, "abc"])
async def test_block_answers_with_the_request_id(request_id: Any) -> None:
    config = {"plugins": [{"name": "mask", "kind": "tests.mcp_plugins.MaskSecret"}]}
    app = EchoApp()
    async with client(mw.PluginMiddleware(app, config=config)) as http:
        answer = await http.post(
            "/mcp", content=tools_call("forbidden", request_id), headers={"content-type": "application/json"}
        )
    assert answer.json()["id"] == request_id
    assert answer.json()["error"]["code"] == -32602
    assert app.calls == 0


async def test_malformed_json_is_refused_and_server_keeps_serving() -> None:
    # A lenient parser (JSON5, JSON lines, raw_decode) may still read a
    # tools/call in it: the middleware answers the parse error itself.
    app = EchoApp()
    broken = b'{"method": "tools/call", nope'
    async with client(mw.PluginMiddleware(app, config=TOOL_PRE)) as http:
        answer = await http.post("/mcp", content=broken, headers={"content-type": "application/json"})
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == -32700
        again = await http.post("/mcp", content=tools_call(), headers={"content-type": "application/json"})
        assert again.status_code == 200
        # Bytes that cannot name a watched method in any spelling go to the
        # app unparsed: it answers them itself.
        await http.post("/mcp", content=b"{nope", headers={"content-type": "application/json"})
    assert app.received == [tools_call(), b"{nope"]


async def test_later_receive_calls_reach_the_real_receive() -> None:
    """After the replayed body, the app's next receive() must see the client's disconnect."""
    messages = [
        {"type": "http.request", "body": tools_call(), "more_body": False},
        {"type": "http.disconnect"},
    ]
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
    }
    await mw.PluginMiddleware(app, config=TOOL_PRE)(scope, receive, send)
    assert seen[0]["body"] == tools_call()
    assert seen[1] == {"type": "http.disconnect"}
    assert sent[0]["status"] == 204


@pytest.mark.parametrize(
    "method",
    ["ｔｏｏｌｓ/ｃａｌｌ", "TOOLS/ＣＡＬＬ", "\u1d57ools/call", "Tools//Call"],
)
async def test_method_spellings_a_unicode_normalising_app_reads_are_refused(method: str) -> None:
    # An app that applies NFKC and case folding reads fullwidth letters as
    # ASCII: the middleware refuses the message rather than pass it unmapped.
    app = EchoApp()
    body = orjson.dumps(
        {"jsonrpc": "2.0", "id": 3, "method": method, "params": {"name": "echo", "arguments": {"text": "hi"}}}
    )
    async with client(mw.PluginMiddleware(app, config=TOOL_PRE)) as http:
        answer = await http.post("/mcp", content=body, headers={"content-type": "application/json"})
    assert answer.json()["error"]["code"] == -32600
    assert answer.json()["id"] == 3
    assert app.received == []
