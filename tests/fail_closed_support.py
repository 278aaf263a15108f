"""
Shared pieces of the fail-closed suites (``tests/test_fail_closed*.py``)
=======================================================================

Real servers on 127.0.0.1 (uvicorn, werkzeug), a raw HTTP/1.1 client for the
bytes no well-behaved client library sends, the hostile bodies, and the
assertions every bypass test ends with: the middleware answered, and the
denied thing never happened on the server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import mcp_plugin_mw as mw
from mcp_plugin_mw import Plugin, PluginContext, PluginResult

BOUND = 10.0
"""Seconds any single network step may take before the test fails."""

EMAIL = "alice.secret@example.com"
DENIED_TOOL = "delete_everything"
DENIED_WORD = "forbidden"
PROTOCOL = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL,
    "io.modelcontextprotocol/clientInfo": {"name": "attacker", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}

GUARDS: dict[str, Any] = {
    "plugins": [
        {"name": "policy", "kind": "tool_policy", "config": {"deny_tools": ["delete_*"]}},
        {"name": "banned", "kind": "deny_list", "config": {"terms": [DENIED_WORD]}},
        {"name": "pii", "kind": "pii_filter"},
    ]
}
"""What every bypass test tries to get past."""


# --------------------------------------------------------------------------
# Messages and bodies
# --------------------------------------------------------------------------


def rpc(method: Any = "tools/call", *, id: Any = 1, params: Any = None, meta: bool = True, **extra: Any) -> dict:
    """A JSON-RPC request; ``params`` defaults to a call of the denied tool."""
    if params is None:
        params = {"name": DENIED_TOOL, "arguments": {"target": "all"}}
    if meta and isinstance(params, dict):
        params = {**params, "_meta": META}
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method, "params": params}
    message.update(extra)
    return message


def denied_call(id: Any = 1, **kw: Any) -> bytes:
    return json.dumps(rpc(id=id, **kw)).encode()


def word_call(id: Any = 1, text: str = f"a {DENIED_WORD} plan") -> bytes:
    return json.dumps(rpc(id=id, params={"name": "echo", "arguments": {"text": text}})).encode()


def mcp_headers(method: str | None = "tools/call", name: str | None = DENIED_TOOL) -> dict[str, str]:
    """The headers an MCP 2026-07-28 client sends with a request."""
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": PROTOCOL}
    if method is not None:
        headers["mcp-method"] = method
    if name is not None:
        headers["mcp-name"] = name
    return headers


# --------------------------------------------------------------------------
# Reading what came back
# --------------------------------------------------------------------------


def media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def sse_data(raw: bytes, charset: str = "utf-8") -> list[str]:
    """The ``data`` of each event of an event stream, as a client dispatches them."""
    text = raw.decode(charset, "replace").replace("\r\n", "\n").replace("\r", "\n")
    events, data = [], []
    for line in text.split("\n"):
        if line == "":
            if data:
                events.append("\n".join(data))
            data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append("\n".join(data))
    return events


def messages_of(content_type: str | None, raw: bytes) -> list[Any]:
    """Every JSON-RPC message in a JSON or event-stream response body (batches flattened)."""
    found: list[Any] = []
    documents: list[Any] = []
    if media(content_type) == "text/event-stream":
        for data in sse_data(raw):
            try:
                documents.append(json.loads(data))
            except ValueError:
                continue
    elif raw.strip():
        try:
            documents.append(json.loads(raw))
        except ValueError:
            return []
    for document in documents:
        found.extend(document if isinstance(document, list) else [document])
    return [m for m in found if isinstance(m, dict)]


def same_id(a: Any, b: Any) -> bool:
    """Ids equal *and* of the same JSON type (5 is not "5", 5 is not 5.0, True is not 1)."""
    return type(a) is type(b) and a == b


def error_for(found: list[Any], request_id: Any) -> dict:
    """The one JSON-RPC error answering ``request_id``, failing the test when absent."""
    errors = [m for m in found if "error" in m and "id" in m and same_id(m["id"], request_id)]
    assert errors, f"no JSON-RPC error with id {request_id!r} in {found!r}"
    return errors[0]


def assert_rpc_refusal(
    status: int,
    content_type: str | None,
    raw: bytes,
    *,
    request_id: Any,
    code: int | tuple[int, ...] | None = None,
    plugin: str | None = None,
) -> dict:
    """The middleware's own JSON-RPC error: HTTP 200, application/json, the id as sent."""
    assert status == 200, (status, raw[:500])
    assert media(content_type) == "application/json", (content_type, raw[:500])
    found = messages_of(content_type, raw)
    error = error_for(found, request_id)
    assert not [m for m in found if "result" in m and same_id(m.get("id"), request_id)], found
    if code is not None:
        codes = code if isinstance(code, tuple) else (code,)
        assert error["error"]["code"] in codes, error
    if plugin is not None:
        assert (error["error"].get("data") or {}).get("plugin_name") == plugin, error
    return error


def assert_problem(status: int, content_type: str | None, raw: bytes, expected: int) -> dict:
    assert status == expected, (status, raw[:500])
    assert media(content_type) == "application/problem+json", (content_type, raw[:500])
    document = json.loads(raw)
    assert document["status"] == expected
    return document


# --------------------------------------------------------------------------
# Raw HTTP/1.1, for what client libraries refuse to send
# --------------------------------------------------------------------------


class RawResponse:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return values[0] if values else None

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")


def raw_request(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    content_length: bool = True,
    extra: bytes = b"",
) -> RawResponse:
    """Send one request exactly as written (method spelling, repeated headers), read one response.

    ``extra`` is written after the body: bytes a smuggling client hopes the
    app reads while the middleware does not.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    if content_length and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall(head + body + extra)
        response = http.client.HTTPResponse(sock, method=method.upper())
        response.begin()
        data = response.read()
        return RawResponse(response.status, list(response.getheaders()), data)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def uvicorn_on(app: Any, lifespan: str = "on") -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the port."""
    import uvicorn

    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + BOUND
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=BOUND)
        sock.close()


@contextlib.contextmanager
def werkzeug_on(app: Any) -> Iterator[int]:
    """Serve a WSGI app with werkzeug's real threaded server on a free 127.0.0.1 port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=BOUND)
        server.server_close()


# --------------------------------------------------------------------------
# Plugins of this suite
# --------------------------------------------------------------------------


class RaisingPost(Plugin):
    """A response hook that raises (mode enforce): the client must get -32603, not a broken stream."""

    def tool_post_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        raise RuntimeError("post hook exploded: internal detail")


class FailsToStart(Plugin):
    """A plugin whose initialize raises."""

    def initialize(self) -> None:
        raise RuntimeError("cannot reach the policy store: internal detail")

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        return PluginResult()

    def tool_post_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        return PluginResult()


SEEN_RESPONSE_BODIES: list[bytes] = []


class BufferingObserver(Plugin):
    """An ``http_post_request`` hook: the middleware must buffer the response to show it the body."""

    def http_post_request(self, payload: Any, context: PluginContext) -> PluginResult:
        SEEN_RESPONSE_BODIES.append(bytes(payload.body))
        return PluginResult()


def manager(config: Any) -> mw.PluginManager:
    return mw.PluginManager(config, environ={})
