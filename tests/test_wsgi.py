"""
WSGI middleware in front of a Flask MCP-shaped app, on a real server
=====================================================================

Every test in the first part runs the app of :mod:`tests.wsgi_app` behind
``WSGIPluginMiddleware`` on werkzeug's threaded server on 127.0.0.1, talked to
with httpx, twice: plain, and with werkzeug's ``LintMiddleware`` both outside
the whole app and between the middleware and Flask. Lint warnings are
recorded and must be none. The app records the bytes it received and
produced, so the tests compare both ends byte for byte.

The second part calls the middleware in process where a server cannot reach
(the legacy ``write()`` callable, closing the app's iterator).
"""

from __future__ import annotations

import dataclasses
import gc
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from werkzeug.middleware.lint import LintMiddleware

import mcp_plugin_mw as mw
from tests.wsgi_app import BOUND, PING, Recorder, Server, create_app, dumps, progress_events
from tests.wsgi_plugins import Crash, Observe

JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def plugin(name: str, cls: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": f"tests.wsgi_plugins.{cls}", **extra}


def rpc(method: str, params: Any, request_id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def call(name: str, arguments: Any = None, request_id: Any = 1, **params: Any) -> dict[str, Any]:
    return rpc("tools/call", {"name": name, "arguments": arguments or {}, **params}, request_id)


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


# ----------------------------------------------------------------------
# Lint warnings and the server fixture
# ----------------------------------------------------------------------


class LintWatch:
    """Records every warning werkzeug's LintMiddleware emits, from any thread.

    The lint module calls ``warn`` by its module-level name; replacing that
    name catches warnings raised on the server's threads and in ``__del__``
    (which ``warnings`` filters set to "error" would swallow there).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.warnings: list[str] = []
        monkeypatch.setattr("werkzeug.middleware.lint.warn", self.record)

    def record(self, message: Any, category: Any = None, stacklevel: int = 1) -> None:
        self.warnings.append(f"{getattr(category, '__name__', category)}: {message}")


@dataclasses.dataclass
class Served:
    """One running server: where it is, what its app recorded, and its middleware."""

    url: str
    recorder: Recorder
    middleware: mw.WSGIPluginMiddleware
    client: httpx.Client

    def post(self, path: str, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        body = content if isinstance(content, bytes) or not isinstance(content, dict | list) else encode(content)
        return self.client.post(path, content=body, headers={**JSON, **(headers or {})})

    @property
    def mcp_calls(self) -> list[bytes]:
        return [item.body for item in self.recorder.received if item.path == "/mcp" and item.method == "POST"]


Serve = Callable[..., Served]


@pytest.fixture(params=["plain", "lint"])
def serve(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Start the Flask app behind the middleware on 127.0.0.1; all is stopped and checked at teardown."""
    lint = request.param == "lint"
    watch = LintWatch(monkeypatch) if lint else None
    servers: list[Server] = []
    clients: list[httpx.Client] = []
    middlewares: list[mw.WSGIPluginMiddleware] = []
    Observe.seen.clear()

    def start(config: dict[str, Any], *, remote_user: str | None = None) -> Served:
        recorder = Recorder()
        app = create_app(recorder)
        inner = LintMiddleware(app.wsgi_app) if lint else app.wsgi_app
        middleware = mw.WSGIPluginMiddleware(inner, config=config)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        outer: Any = app
        if remote_user is not None:
            outer = _with_remote_user(app, remote_user)
        server = Server(LintMiddleware(outer) if lint else outer)
        client = httpx.Client(base_url=server.url, timeout=BOUND)
        servers.append(server)
        clients.append(client)
        middlewares.append(middleware)
        return Served(server.url, recorder, middleware, client)

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.close()
    for middleware in middlewares:
        middleware.manager.close()
    gc.collect()  # an iterator never closed warns when it is collected
    if watch is not None:
        assert watch.warnings == []


def _with_remote_user(app: Any, user: str) -> Any:
    """Set REMOTE_USER as an authenticating server in front of the app would."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        environ["REMOTE_USER"] = user
        return app(environ, start_response)

    return wrapped


def test_lint_watch_sees_what_lint_complains_about(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lint check in ``serve`` is real: a wrong Content-Length on the server is caught."""
    watch = LintWatch(monkeypatch)

    def liar(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"abc"]

    server = Server(LintMiddleware(liar))
    try:
        with httpx.Client(base_url=server.url, timeout=BOUND) as client, pytest.raises(httpx.RemoteProtocolError):
            client.get("/")
    finally:
        server.close()
    assert any("Content-Length" in warning for warning in watch.warnings)


# ----------------------------------------------------------------------
# MCP hooks on JSON responses
# ----------------------------------------------------------------------

TOOLS = {"plugins": [plugin("tools", "ToolRewrite")]}


def test_pre_plugin_rewrites_tool_arguments(serve: Serve) -> None:
    served = serve(TOOLS)
    answer = served.post("/mcp", call("echo", {"text": "my secret plan", "n": [1, {"é": None}]}, request_id=5))
    assert answer.status_code == 200
    received = served.recorder.last
    forwarded = json.loads(received.body)
    assert forwarded == call("echo", {"text": "my [masked] plan", "n": [1, {"é": None}]}, request_id=5)
    assert received.content_length == str(len(received.body))
    assert received.headers["content-length"] == str(len(received.body))
    # What the app echoed back is what it received: the masked text.
    assert answer.json()["result"]["structuredContent"] == {
        "arguments": {"text": "my [masked] plan", "n": [1, {"é": None}]}
    }


def test_post_plugin_rewrites_tool_result(serve: Serve) -> None:
    served = serve(TOOLS)
    answer = served.post("/mcp", call("echo", {"text": "hello"}, request_id="s-1"))
    produced = json.loads(served.recorder.produced[-1])
    assert produced["result"]["content"] == [{"type": "text", "text": "hello"}]
    assert answer.json() == {
        "jsonrpc": "2.0",
        "id": "s-1",
        "result": {
            "content": [{"type": "text", "text": "hello [checked]"}],
            "structuredContent": {"arguments": {"text": "hello"}},
        },
    }
    assert answer.headers["content-length"] == str(len(answer.content))
    assert answer.headers["content-type"] == "application/json"


def test_prompt_hooks_both_ways(serve: Serve) -> None:
    served = serve({"plugins": [plugin("prompts", "PromptRewrite")]})
    answer = served.post("/mcp", rpc("prompts/get", {"name": "explain", "arguments": {"topic": "weather"}}, 3))
    assert json.loads(served.recorder.last.body)["params"] == {"name": "explain", "arguments": {"topic": "climate"}}
    assert served.recorder.last.content_length == str(len(served.recorder.last.body))
    assert answer.json()["result"] == {
        "description": "explain",
        "messages": [{"role": "user", "content": {"type": "text", "text": "TELL ME ABOUT CLIMATE"}}],
    }
    assert answer.headers["content-length"] == str(len(answer.content))


def test_resource_hooks_both_ways_and_mcp_name_follows(serve: Serve) -> None:
    served = serve({"plugins": [plugin("resources", "ResourceRewrite")]})
    answer = served.post(
        "/mcp",
        rpc("resources/read", {"uri": "file:///old.txt"}, 4),
        headers={"mcp-method": "resources/read", "mcp-name": "file:///old.txt"},
    )
    received = served.recorder.last
    assert json.loads(received.body)["params"] == {"uri": "file:///new.txt"}
    assert received.headers["mcp-name"] == "file:///new.txt"
    assert received.headers["mcp-method"] == "resources/read"
    assert answer.json()["result"] == {
        "contents": [{"uri": "file:///new.txt", "mimeType": "text/plain", "text": "CONTENTS of file:///new.txt"}]
    }


# ----------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------

DENY = {"plugins": [plugin("deny", "Deny")]}


@pytest.mark.parametrize("request_id", [0, "req-é"])
@pytest.mark.parametrize(
    ("document", "kind", "name"),
    [
        (call("forbidden", {"a": 1}), "tool", "forbidden"),
        (rpc("prompts/get", {"name": "forbidden"}), "prompt", "forbidden"),
        (rpc("resources/read", {"uri": "file:///forbidden"}), "resource", "file:///forbidden"),
    ],
)
def test_block_is_a_jsonrpc_error_with_the_request_id(
    serve: Serve, request_id: Any, document: dict[str, Any], kind: str, name: str
) -> None:
    served = serve(DENY)
    answer = served.post("/mcp", {**document, "id": request_id})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-length"] == str(len(answer.content))
    description = f"{kind} {name!r} is denied"
    assert answer.json() == {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {
            "code": -32602,
            "message": f"Plugin Violation: {description}",
            "data": {
                "plugin_name": "deny",
                "plugin_error_code": "DENIED",
                "description": description,
                "details": {"kind": kind, "name": name},
            },
        },
    }
    assert type(answer.json()["id"]) is type(request_id)
    assert served.mcp_calls == []


def test_block_tools_as_result_gives_an_is_error_result(serve: Serve) -> None:
    served = serve({**DENY, "plugin_settings": {"block_tools_as_result": True}})
    answer = served.post("/mcp", call("forbidden", request_id=0))
    reply = answer.json()
    assert reply["id"] == 0
    assert "error" not in reply
    assert reply["result"]["isError"] is True
    assert reply["result"]["content"] == [{"type": "text", "text": "Plugin Violation: tool 'forbidden' is denied"}]
    assert reply["result"]["_meta"]["mcp-plugin-mw/violation"]["plugin_name"] == "deny"
    # Only tools/call becomes a result; a blocked prompt stays an error.
    prompt = served.post("/mcp", rpc("prompts/get", {"name": "forbidden"}, 1)).json()
    assert prompt["error"]["code"] == -32602
    assert served.mcp_calls == []


def test_batch_with_one_blocked_element(serve: Serve) -> None:
    served = serve(DENY)
    batch = [
        call("echo", {"text": "one"}, request_id=1),
        call("forbidden", request_id=2),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": 1}},
        rpc("prompts/get", {"name": "greet", "arguments": {"topic": "cats"}}, 3),
    ]
    answer = served.post("/mcp", batch)
    assert answer.status_code == 200
    assert answer.headers["content-length"] == str(len(answer.content))
    # The app saw the batch without the blocked element, notification included.
    assert json.loads(served.mcp_calls[-1]) == [batch[0], batch[2], batch[3]]
    replies = {reply["id"]: reply for reply in answer.json()}
    assert sorted(replies) == [1, 2, 3]
    produced = {reply["id"]: reply for reply in json.loads(served.recorder.produced[-1])}
    assert replies[1] == produced[1]
    assert replies[3] == produced[3]
    assert replies[2]["error"]["code"] == -32602
    assert replies[2]["error"]["data"]["plugin_name"] == "deny"


def test_batch_whose_only_request_is_blocked(serve: Serve) -> None:
    """The app answers the rest (a notification) with 202; the client still gets the error, in an array."""
    served = serve(DENY)
    notification = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
    answer = served.post("/mcp", [call("forbidden", request_id=7), notification])
    assert json.loads(served.mcp_calls[-1]) == [notification]
    assert answer.status_code == 200
    replies = answer.json()
    assert [(reply["id"], reply["error"]["code"]) for reply in replies] == [(7, -32602)]


def test_batch_reusing_an_id_is_refused_for_the_checked_calls(serve: Serve) -> None:
    """Responses are matched by id: two requests under one id could let a response pass unchecked."""
    served = serve(TOOLS)
    answer = served.post(
        "/mcp",
        [call("echo", {"text": "one"}, 1), call("echo", {"text": "two"}, 1), call("echo", {"text": "three"}, 2)],
    )
    replies = answer.json()
    refused = [reply for reply in replies if reply["id"] == 1]
    assert [reply["error"]["code"] for reply in refused] == [-32600, -32600]
    assert [reply["result"]["content"][0]["text"] for reply in replies if reply["id"] == 2] == ["three [checked]"]


def test_plugin_error_in_enforce_mode_leaks_nothing(serve: Serve) -> None:
    served = serve({"plugins": [plugin("crash", "Crash")]})
    answer = served.post("/mcp", call("crash", request_id=11))
    error = answer.json()["error"]
    assert answer.json()["id"] == 11
    assert error["code"] == -32603
    assert error["data"]["plugin_error_code"] == "PLUGIN_ERROR"
    assert error["data"]["plugin_name"] == "crash"
    http = served.client.post("/api/crash", content=b'{"a": 1}', headers=JSON)
    assert http.status_code == 500
    assert http.headers["content-type"] == "application/problem+json"
    assert http.json()["code"] == "PLUGIN_ERROR"
    for body in (answer.content, http.content):
        assert b"hunter2" not in body
        assert b"Traceback" not in body
        assert b"RuntimeError" not in body
    assert Crash.MESSAGE not in answer.text
    assert served.recorder.received == []
    # The server keeps serving.
    assert (
        served.post("/mcp", call("echo", {"text": "still here"})).json()["result"]["content"][0]["text"] == "still here"
    )


# ----------------------------------------------------------------------
# Plain HTTP hooks
# ----------------------------------------------------------------------

HTTP = {"plugins": [plugin("http", "HttpRewrite")]}


def test_http_pre_request_rewrites_a_json_body(serve: Serve) -> None:
    served = serve(HTTP)
    answer = served.client.post("/api/echo", content=b'{"a": [1, 2]}', headers={"content-type": "application/json"})
    received = served.recorder.last
    assert json.loads(received.body) == {"a": [1, 2], "stamped": "by plugin"}
    assert received.content_length == str(len(received.body))
    assert answer.json() == {"received": {"a": [1, 2], "stamped": "by plugin"}}
    assert answer.headers["x-inspected"] == "yes"
    assert answer.content == served.recorder.produced[-1]


def test_http_post_request_rewrites_a_response(serve: Serve) -> None:
    served = serve(HTTP)
    answer = served.client.get("/api/info")
    assert json.loads(served.recorder.produced[-1]) == {"service": "demo", "path": "/api/info"}
    assert answer.json() == {"service": "demo", "path": "/api/info", "inspected": True}
    assert answer.headers["content-length"] == str(len(answer.content))
    assert answer.headers["x-inspected"] == "yes"


@pytest.mark.parametrize(
    ("path", "status", "title", "code"),
    [("/api/admin", 403, "Forbidden", "NO_ADMIN"), ("/api/teapot", 418, "Error", "TEAPOT")],
)
def test_http_block_is_problem_json(serve: Serve, path: str, status: int, title: str, code: str) -> None:
    served = serve(HTTP)
    for method in ("GET", "POST"):
        answer = served.client.request(method, path, content=b'{"x": 1}' if method == "POST" else None)
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["content-length"] == str(len(answer.content))
        problem = answer.json()
        assert problem["status"] == status
        assert problem["title"] == title
        assert problem["code"] == code
        assert problem["plugin_name"] == "http"
    assert served.recorder.received == []


# ----------------------------------------------------------------------
# Refusals: size and encoding
# ----------------------------------------------------------------------


def test_body_over_max_body_bytes_is_413(serve: Serve) -> None:
    served = serve({**TOOLS, "plugin_settings": {"max_body_bytes": 200}})
    big = encode(call("echo", {"text": "x" * 500}))
    answer = served.post("/mcp", big)
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["max_body_bytes"] == 200
    assert answer.json()["status"] == 413

    def pieces(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 64):
            yield body[start : start + 64]

    # Without a Content-Length (chunked), the size is counted while reading.
    chunked = served.client.post("/mcp", content=pieces(big), headers=JSON)
    assert chunked.status_code == 413
    assert served.recorder.received == []
    # A chunked body under the limit reaches the app whole, with its length.
    small = encode(call("echo", {"text": "a secret"}))
    answer = served.client.post("/mcp", content=pieces(small), headers=JSON)
    assert answer.status_code == 200
    received = served.recorder.last
    assert json.loads(received.body) == call("echo", {"text": "a [masked]"})
    assert received.content_length == str(len(received.body))
    assert "transfer-encoding" not in received.headers


def test_chunked_body_unmodified_reaches_the_app(serve: Serve) -> None:
    """A chunked request that plugins read but leave alone still reaches the app byte for byte."""
    served = serve({"plugins": [plugin("noop", "Noop")]})
    raw = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "t"}}}'
    answer = served.client.post("/mcp", content=iter([raw[:17], raw[17:]]), headers=JSON)
    assert answer.status_code == 200
    assert served.recorder.last.body == raw
    assert answer.content == served.recorder.produced[-1]


def test_gzip_request_with_a_request_plugin_is_415(serve: Serve) -> None:
    served = serve(TOOLS)
    answer = served.post(
        "/mcp", gzip.compress(encode(call("echo", {"text": "a secret"}))), {"content-encoding": "gzip"}
    )
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 415
    assert served.recorder.received == []


# ----------------------------------------------------------------------
# What passes untouched
# ----------------------------------------------------------------------


def test_excluded_urls_pass_untouched(serve: Serve) -> None:
    served = serve({**HTTP, "plugin_settings": {"excluded_urls": ["^/api/info$"]}})
    answer = served.client.get("/api/info")
    assert "x-inspected" not in answer.headers
    assert answer.content == served.recorder.produced[-1]
    raw = b'{"a":  1}'
    answer = served.client.post("/api/admin", content=raw)  # not excluded: still blocked
    assert answer.status_code == 403
    excluded = serve({**HTTP, "plugin_settings": {"excluded_urls": ["^/api/(echo|admin)$"]}})
    answer = excluded.client.post("/api/admin", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 200
    answer = excluded.client.post("/api/echo", content=raw, headers={"content-type": "application/json"})
    assert excluded.recorder.last.body == raw
    assert answer.content == excluded.recorder.produced[-1]


@pytest.mark.parametrize("config", [TOOLS, {"plugins": [*TOOLS["plugins"], *HTTP["plugins"]]}], ids=["mcp", "mcp+http"])
def test_notifications_and_other_methods_pass(serve: Serve, config: dict[str, Any]) -> None:
    served = serve(config)
    notification = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
    answer = served.post("/mcp", notification)
    assert answer.status_code == 202
    assert answer.content == b""
    assert served.recorder.last.body == notification
    answer = served.client.get("/mcp", headers={"accept": "text/event-stream"})
    assert (answer.status_code, answer.content) == (200, PING)
    answer = served.client.delete("/mcp")
    assert (answer.status_code, answer.content) == (200, b"")
    answer = served.client.head("/mcp")
    assert (answer.status_code, answer.headers["x-head"]) == (200, "yes")
    answer = served.client.options("/mcp")
    assert (answer.status_code, answer.headers["allow"]) == (200, "GET, POST, DELETE, HEAD, OPTIONS")
    assert [item.method for item in served.recorder.received] == ["POST", "GET", "DELETE", "HEAD", "OPTIONS"]


def test_malformed_json_is_refused_and_the_server_keeps_serving(serve: Serve) -> None:
    # A lenient parser may still read the call in it: the middleware answers
    # the parse error itself, and the app never sees the body.
    served = serve({"plugins": [*TOOLS["plugins"], *DENY["plugins"]]})
    broken = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "forbidden"'
    answer = served.post("/mcp", broken)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == -32700
    assert all(request.body != broken for request in served.recorder.received)
    again = served.post("/mcp", call("echo", {"text": "ok"}))
    assert again.json()["result"]["content"] == [{"type": "text", "text": "ok [checked]"}]


@pytest.mark.parametrize(
    "body",
    [
        # JSON that Python's json module (and so Flask) reads but orjson does not.
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"forbidden","arguments":{"x":NaN}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"forbidden","arguments":{"x":1e400}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"forbidden","arguments":{"x":"\\ud800"}}}',
        b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"forbidden"}}',
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"forbidden"}}'.encode("utf-16"),
    ],
    ids=["nan", "huge-float", "lone-surrogate", "bom", "utf-16"],
)
def test_json_the_app_accepts_cannot_slip_past_plugins(serve: Serve, body: bytes) -> None:
    served = serve(DENY)
    answer = served.post("/mcp", body)
    assert answer.json()["error"]["data"]["plugin_name"] == "deny"
    assert served.mcp_calls == []


def test_json_the_app_writes_cannot_slip_past_response_plugins(serve: Serve) -> None:
    """Python's json writes NaN; a result holding one must still reach the response hooks."""
    served = serve(TOOLS)
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"t","x":NaN}}}'
    answer = served.post("/mcp", body)
    assert b"NaN" in served.recorder.produced[-1]
    assert answer.json()["result"]["content"] == [{"type": "text", "text": "t [checked]"}]
    assert answer.headers["content-length"] == str(len(answer.content))


def test_unmodified_exchanges_are_byte_for_byte(serve: Serve) -> None:
    """Plugins on every hook that change nothing: the app gets the client's bytes, the client the app's."""
    served = serve({"plugins": [plugin("noop", "Noop"), plugin("async-noop", "AsyncNoop"), *DENY["plugins"]]})
    bodies = [
        b'{ "jsonrpc" :"2.0","id":7 ,\n\t"method": "tools/call", "params": {"name": "echo",'
        b' "arguments": {"text": "\\u00e9t\xc3\xa9 \xf0\x9f\x98\x80", "n": [1.50, -0, 1e3, {"k": null}]}}}  \r\n',
        b'{"jsonrpc":"2.0","id":"p","method":"prompts/get","params":{"name":"x","arguments":{"topic":"\xe2\x82\xac"}}}',
        b'{"method":"resources/read","params":{"uri":"file:///a b.txt","extra":{}},"id":0,"jsonrpc":"2.0"}',
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"} , {"jsonrpc":"2.0","id":2,"method":"tools/call",'
        b'"params":{"name":"echo","arguments":{"text":"b"}}}]',
    ]
    for body in bodies:
        answer = served.post("/mcp", body)
        assert answer.status_code == 200
        assert served.recorder.last.body == body
        assert served.recorder.last.content_length == str(len(body))
        assert answer.content == served.recorder.produced[-1]
        assert answer.headers["content-length"] == str(len(answer.content))
    # A streamed response too.
    answer = served.post("/mcp", encode(call("progress", request_id=3)))
    assert answer.content == served.recorder.produced[-1] == b"".join(progress_events(3, "tok"))
    answer = served.client.post("/api/echo", content=b'{"plain": "json"}', headers={"content-type": "application/json"})
    assert served.recorder.last.body == b'{"plain": "json"}'
    assert answer.content == served.recorder.produced[-1]


# ----------------------------------------------------------------------
# Server-Sent Events
# ----------------------------------------------------------------------


def split_events(stream: bytes) -> list[bytes]:
    """Cut a CRLF-framed event stream into its blocks, separators kept."""
    parts = stream.split(b"\r\n\r\n")
    assert parts[-1] == b""
    return [part + b"\r\n\r\n" for part in parts[:-1]]


def event_data(block: bytes) -> Any:
    lines = [line for line in block.split(b"\r\n") if line.startswith(b"data: ")]
    assert len(lines) == 1
    return json.loads(lines[0][len(b"data: ") :])


def test_sse_events_transformed_one_by_one(serve: Serve) -> None:
    served = serve(TOOLS)
    answer = served.post("/mcp", call("progress", request_id=21, _meta={"progressToken": "p-9"}))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream"
    assert "content-length" not in answer.headers
    produced = split_events(served.recorder.produced[-1])
    got = split_events(answer.content)
    assert len(produced) == len(got) == 5
    # Progress notifications and ping comments go out byte for byte.
    assert got[:4] == produced[:4]
    assert got[1] == got[3] == PING
    assert event_data(got[0])["params"]["progressToken"] == "p-9"
    # The result event is rewritten, and keeps its framing.
    assert got[4] != produced[4]
    assert got[4].startswith(b"event: message\r\ndata: ")
    assert event_data(got[4]) == {
        "jsonrpc": "2.0",
        "id": 21,
        "result": {"content": [{"type": "text", "text": "done [checked]"}], "structuredContent": {"steps": 2}},
    }


def test_server_messages_on_a_stream_reach_server_message(serve: Serve) -> None:
    # Progress notifications are the server's own messages: with a plugin on
    # server_message they are rewritten too; the result is left to its hook.
    rewrite = {"name": "steps", "kind": "regex_replace", "hooks": ["server_message"]}
    served = serve({"plugins": [{**rewrite, "config": {"rules": [{"search": "step", "replace": "stage"}]}}]})
    answer = served.post("/mcp", call("progress", request_id=22, _meta={"progressToken": "p-1"}))
    assert answer.status_code == 200
    produced = split_events(served.recorder.produced[-1])
    got = split_events(answer.content)
    assert len(produced) == len(got) == 5
    notes = [event_data(block) for block in got if b"notifications/progress" in block]
    assert [note["params"]["message"] for note in notes] == ["stage 1", "stage 2"]
    assert all(note["params"]["progressToken"] == "p-1" for note in notes)
    assert got[4] == produced[4]  # the result, as the app sent it


def test_first_sse_event_reaches_the_client_before_the_last_is_produced(serve: Serve) -> None:
    served = serve(TOOLS)
    gate = served.recorder.gate("g1")
    body = encode(call("progress", {"gate": "g1"}, request_id=30))
    first = bytearray()
    rest = bytearray()
    with served.client.stream("POST", "/mcp", content=body, headers=JSON) as answer:
        assert answer.status_code == 200
        chunks = answer.iter_raw()
        for chunk in chunks:
            first += chunk
            if b"\r\n\r\n" in first:
                break
        # The app's generator is now waiting for the gate: it has produced one
        # event only, and has not given up waiting.
        assert served.recorder.gate_timeouts == []
        assert served.recorder.produced == []
        assert first == progress_events(30, "tok")[0]
        gate.set()
        for chunk in chunks:
            rest += chunk
    assert served.recorder.gate_timeouts == []
    events = split_events(bytes(first + rest))
    assert len(events) == 5
    assert event_data(events[4])["result"]["content"] == [{"type": "text", "text": "done [checked]"}]


# ----------------------------------------------------------------------
# Plugin state and the request's GlobalContext
# ----------------------------------------------------------------------


def test_pre_hook_state_reaches_the_post_hook(serve: Serve) -> None:
    served = serve({"plugins": [plugin("state", "StateCarry")]})
    answer = served.post("/mcp", call("echo", {"text": "hi"}), headers={"x-request-id": "r-1"})
    assert answer.json()["result"]["_meta"] == {
        "test/pre-state": {"name": "echo", "args": {"text": "hi"}, "request_id": "r-1"}
    }
    # On an event stream too.
    answer = served.post("/mcp", call("progress", {"k": 1}, request_id=2), headers={"x-request-id": "r-2"})
    final = event_data(split_events(answer.content)[-1])
    assert final["result"]["_meta"] == {"test/pre-state": {"name": "progress", "args": {"k": 1}, "request_id": "r-2"}}
    # In a batch, each member's post hook gets that member's state.
    answer = served.post("/mcp", [call("echo", {"text": "a"}, 1), call("echo", {"text": "b"}, 2)])
    metas = {reply["id"]: reply["result"]["_meta"]["test/pre-state"]["args"] for reply in answer.json()}
    assert metas == {1: {"text": "a"}, 2: {"text": "b"}}


def test_global_context_from_headers(serve: Serve) -> None:
    served = serve(
        {
            "plugins": [plugin("observe", "Observe")],
            "plugin_settings": {"user_header": "X-Forwarded-User", "tenant_header": "X-Tenant"},
        }
    )
    headers = {"x-request-id": "ctx-1", "x-forwarded-user": "alice", "x-tenant": "acme"}
    served.post("/mcp", call("echo", {"text": "x"}), headers=headers)
    assert Observe.seen["ctx-1"] == {"user": "alice", "tenant": "acme", "tool": "echo"}
    served.post("/mcp", call("other"), headers={"x-request-id": "ctx-2"})
    assert Observe.seen["ctx-2"] == {"user": None, "tenant": None, "tool": "other"}
    served.post("/mcp", call("generated"))
    [generated] = [key for key, seen in Observe.seen.items() if seen["tool"] == "generated"]
    assert len(generated) == 32


def test_global_context_user_from_remote_user(serve: Serve) -> None:
    observe = {"plugins": [plugin("observe", "Observe")]}
    served = serve(observe, remote_user="carol")
    served.post("/mcp", call("echo"), headers={"x-request-id": "ru-1"})
    assert Observe.seen["ru-1"]["user"] == "carol"
    assert served.recorder.last.remote_user == "carol"
    # A configured user header, when present, names the user instead.
    with_header = serve({**observe, "plugin_settings": {"user_header": "X-User"}}, remote_user="carol")
    with_header.post("/mcp", call("echo"), headers={"x-request-id": "ru-2", "x-user": "dave"})
    assert Observe.seen["ru-2"]["user"] == "dave"
    with_header.post("/mcp", call("echo"), headers={"x-request-id": "ru-3"})
    assert Observe.seen["ru-3"]["user"] == "carol"


# ----------------------------------------------------------------------
# In process: what a server does not show
# ----------------------------------------------------------------------


def environ_for(body: bytes, method: str = "POST", path: str = "/mcp", **extra: Any) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    environ.update(extra)
    return environ


class Started:
    """A ``start_response`` that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
        self.calls.append((status, headers))
        return self.write

    def write(self, data: bytes) -> None:
        raise AssertionError("the middleware must not use the server's write() here")


class ClosingBody:
    """An app iterable that records whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("config", "content_type", "chunks"),
    [
        ({"plugins": []}, "application/json", [b'{"a": 1}']),
        (TOOLS, "application/json", [b'{"jsonrpc":"2.0","id":1,', b'"result":{"content":[]}}']),
        (TOOLS, "text/event-stream", [b'data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n']),
        (HTTP, "text/plain", [b"plain"]),
    ],
    ids=["no-plugins", "buffered", "streamed", "http-buffered"],
)
def test_app_iterator_is_always_closed(config: dict[str, Any], content_type: str, chunks: list[bytes]) -> None:
    body = ClosingBody(chunks)

    def app(environ: dict[str, Any], start_response: Any) -> ClosingBody:
        start_response("200 OK", [("Content-Type", content_type)])
        return body

    middleware = mw.WSGIPluginMiddleware(app, config=config)
    try:
        started = Started()
        result = middleware(environ_for(encode(call("echo"))), started)
        output = b"".join(result)
        getattr(result, "close", lambda: None)()
    finally:
        middleware.manager.close()
    assert body.closed
    assert [status for status, _ in started.calls] == ["200 OK"]
    assert output


def test_legacy_write_callable_joins_the_body_in_order() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "application/json")])
        write(b'{"jsonrpc":"2.0","id":1,')
        return [b'"result":{"content":[{"type":"text","text":"w"}]}}']

    middleware = mw.WSGIPluginMiddleware(app, config=TOOLS)
    started = Started()
    try:
        result = middleware(environ_for(encode(call("echo"))), started)
        output = b"".join(result)
        getattr(result, "close", lambda: None)()
    finally:
        middleware.manager.close()
    assert json.loads(output)["result"]["content"] == [{"type": "text", "text": "w [checked]"}]
    [(status, headers)] = started.calls
    assert status == "200 OK"
    assert dict(headers)["content-length"] == str(len(output))


def test_no_config_passes_everything_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCP_PLUGIN_MW_CONFIG", raising=False)
    produced = dumps({"ok": True})

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [produced]

    middleware = mw.WSGIPluginMiddleware(app)
    try:
        result = middleware(environ_for(b"{bad"), Started())
        assert result == [produced]  # the app's own iterable, untouched
    finally:
        middleware.manager.close()
