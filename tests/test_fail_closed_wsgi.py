"""
Fail closed, request side: a lenient Flask JSON-RPC app on werkzeug's server
===========================================================================

The Flask app reads bodies the way lenient apps do: ``request.get_json(force=True)``
whatever the method and Content-Type (Python's ``json.loads``: BOMs,
UTF-16/32, last duplicate key wins), handles batches and notifications,
takes positional params and arguments, and "executes" the tool, appending to
a list in the server process. A second variant also normalises the method
with ``method.strip().lower()``. It runs behind ``WSGIPluginMiddleware`` on
werkzeug's real threaded server (``make_server``) on 127.0.0.1.

Each test sends hostile bytes (httpx or a raw socket) and proves both that
the client got the middleware's refusal and that the denied tool never ran.
Bodies that cannot be JSON (form posts, uploads over 1 MiB) pass untouched:
the app answers with the SHA-256 of the bytes it read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, request

import mcp_plugin_mw as mw
from tests.fail_closed_support import (
    BOUND,
    DENIED_TOOL,
    DENIED_WORD,
    EMAIL,
    GUARDS,
    RawResponse,
    assert_problem,
    assert_rpc_refusal,
    chunked,
    denied_call,
    messages_of,
    raw_request,
    rpc,
    werkzeug_on,
    word_call,
)
from tests.test_fail_closed import BAD_IDS, BATCHES, CONTENT_TYPES, ENCODINGS, IDS, SHAPES, SPELLINGS, UNMAPPABLE_PARAMS

pytestmark = pytest.mark.timeout(120)

RAN: list[Any] = []
"""Every execution of the denied tool in the Flask app."""
ECHOED: list[Any] = []


def _tools() -> dict[str, Any]:
    def delete_everything(target: Any = "all", *rest: Any) -> str:
        RAN.append(target)
        return "deleted everything"

    def echo(text: Any = "", *rest: Any) -> str:
        ECHOED.append(text)
        return str(text)

    def whoami(*args: Any, **kwargs: Any) -> str:
        return f"write to {EMAIL}"

    return {"delete_everything": delete_everything, "echo": echo, "whoami": whoami}


def build_flask(normalise: bool) -> Flask:
    app = Flask(f"lenient-{normalise}")
    tools = _tools()

    def handle(message: Any) -> Any:
        if not isinstance(message, dict):
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid Request"}}
        method = message.get("method")
        if normalise and isinstance(method, str):
            method = method.strip().lower()
        params = message.get("params") or {}
        if method == "tools/call":
            if isinstance(params, list):
                name, arguments = ([*params, None, None])[:2]
            elif isinstance(params, dict):
                name, arguments = params.get("name"), params.get("arguments")
            else:
                name, arguments = params, None
            tool = tools.get(name if isinstance(name, str) else str(name))
            if tool is None:
                result: Any = None
                error = {"code": -32602, "message": f"unknown tool {name!r}"}
            else:
                if isinstance(arguments, dict):
                    text = tool(**arguments)
                elif isinstance(arguments, list):
                    text = tool(*arguments)
                elif arguments is None:
                    text = tool()
                else:
                    text = tool(arguments)
                result, error = {"content": [{"type": "text", "text": text}], "isError": False}, None
        elif method == "tools/list":
            result, error = {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in tools]}, None
        else:
            result, error = None, {"code": -32601, "message": f"no method {method!r}"}
        if "id" not in message:
            return None
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        reply.update({"error": error} if error else {"result": result})
        return reply

    @app.route("/mcp", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def mcp() -> Any:
        payload = request.get_json(force=True, silent=True)
        if payload is None:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}, 400
        if isinstance(payload, list):
            replies = [r for r in (handle(m) for m in payload) if r is not None]
            return app.response_class(json.dumps(replies), mimetype="application/json")
        reply = handle(payload)
        if reply is None:
            return "", 202
        return app.response_class(json.dumps(reply), mimetype="application/json")

    @app.route("/upload", methods=["POST", "PUT"])
    def upload() -> Any:
        data = request.get_data()
        return {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}

    app.wsgi_app = mw.WSGIPluginMiddleware(app.wsgi_app, config=GUARDS)  # type: ignore[method-assign]
    return app


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "normalising"])
def flask_port(request: pytest.FixtureRequest) -> Iterator[int]:
    with werkzeug_on(build_flask(request.param)) as port:
        yield port


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    RAN.clear()
    ECHOED.clear()
    yield
    RAN.clear()
    ECHOED.clear()


def send(port: int, body: bytes, headers: list[tuple[str, str]] | None = None, method: str = "POST") -> RawResponse:
    if headers is None:
        headers = [("Content-Type", "application/json")]
    return raw_request(port, method, "/mcp", headers, body)


def refused(answer: RawResponse, request_id: Any = 1, **kw: Any) -> dict:
    never_ran()  # the side effect first: a bypass reports as such
    return assert_rpc_refusal(answer.status, answer.content_type, answer.body, request_id=request_id, **kw)


def never_ran() -> None:
    assert RAN == [], f"the denied tool ran in the Flask app: {RAN!r}"
    assert not [t for t in ECHOED if DENIED_WORD in str(t).lower()], f"the denied word reached the tool: {ECHOED!r}"


def test_baseline(flask_port: int) -> None:
    refused(send(flask_port, denied_call()), 1, code=-32602, plugin="policy")
    refused(send(flask_port, word_call()), 1, code=-32602, plugin="banned")
    never_ran()
    ok = send(flask_port, json.dumps(rpc(params={"name": "echo", "arguments": {"text": "hi"}})).encode())
    assert ok.status == 200
    assert json.loads(ok.body)["result"]["content"][0]["text"] == "hi"
    masked = send(flask_port, json.dumps(rpc(id=9, params={"name": "whoami", "arguments": {}})).encode())
    assert masked.status == 200
    assert EMAIL.encode() not in masked.body
    assert "[REDACTED:EMAIL]" in json.loads(masked.body)["result"]["content"][0]["text"]


def test_the_app_is_really_lenient() -> None:
    """Without the middleware, each trick below does run the denied tool: the tests are not vacuous."""
    app = build_flask(normalise=True)
    app.wsgi_app = app.wsgi_app.app  # type: ignore[attr-defined]
    client = app.test_client()
    tricks = [
        ("PUT", "text/plain", denied_call()),
        ("OPTIONS", None, denied_call()),
        ("POST", "text/plain", denied_call().decode().encode("utf-16")),
        ("POST", "application/x-www-form-urlencoded", b"\xef\xbb\xbf" + denied_call()),
        ("POST", "application/json", json.dumps(rpc(" Tools/Call ")).encode()),
        ("POST", "application/json", json.dumps(rpc(params=[DENIED_TOOL, ["all"]])).encode()),
        ("POST", "application/json", json.dumps(rpc(id={"a": 1})).encode()),
        ("POST", "application/json", SHAPES["method-twice-last-wins"].encode()),
    ]
    for method, content_type, body in tricks:
        RAN.clear()
        headers = {"content-type": content_type} if content_type else {}
        client.open("/mcp", method=method, data=body, headers=headers)
        assert RAN, (method, content_type, body[:60])


# --------------------------------------------------------------------------
# Method, Content-Type, encoding
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "Post", "PUT", "put", "PATCH", "GET", "get", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_any_method_spelling_is_inspected(flask_port: int, method: str, content_type: str) -> None:
    refused(send(flask_port, denied_call(), [("Content-Type", content_type)], method), 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize("content_type", [c for c in CONTENT_TYPES if c is not None], ids=repr)
def test_content_type_does_not_decide(flask_port: int, content_type: str) -> None:
    refused(send(flask_port, denied_call(), [("Content-Type", content_type)]), 1, code=-32602, plugin="policy")
    never_ran()


def test_no_content_type(flask_port: int) -> None:
    refused(send(flask_port, denied_call(), []), 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize(
    "pair", [("text/plain", "application/json"), ("application/json", "text/plain"), ("text/html", "text/plain")]
)
def test_two_content_type_headers(flask_port: int, pair: tuple[str, str]) -> None:
    headers = [("Content-Type", pair[0]), ("Content-Type", pair[1])]
    refused(send(flask_port, denied_call(), headers), 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_bom_utf16_utf32(flask_port: int, encoding: str, content_type: str | None) -> None:
    body = ENCODINGS[encoding](denied_call().decode())
    headers = [("Content-Type", content_type)] if content_type else []
    refused(send(flask_port, body, headers), 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-be"])
def test_word_in_utf16_body(flask_port: int, encoding: str) -> None:
    refused(send(flask_port, word_call().decode().encode(encoding), []), 1, code=-32602, plugin="banned")
    never_ran()


def test_unknown_charset_is_415(flask_port: int) -> None:
    answer = send(flask_port, denied_call(), [("Content-Type", "application/json; charset=x-klingon")])
    assert_problem(answer.status, answer.content_type, answer.body, 415)
    never_ran()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "x-custom"])
def test_content_encoding_is_415(flask_port: int, encoding: str) -> None:
    answer = send(flask_port, denied_call(), [("Content-Type", "text/plain"), ("Content-Encoding", encoding)])
    assert_problem(answer.status, answer.content_type, answer.body, 415)
    never_ran()


# --------------------------------------------------------------------------
# JSON-RPC spellings and shapes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", SPELLINGS, ids=repr)
def test_method_spelling(flask_port: int, method: str) -> None:
    answer = send(flask_port, json.dumps(rpc(method)).encode())
    error = refused(answer, 1, code=-32600)
    assert error["error"]["code"] == -32600
    never_ran()


@pytest.mark.parametrize("kind", list(BAD_IDS))
def test_forbidden_id_types(flask_port: int, kind: str) -> None:
    params = json.dumps({"name": DENIED_TOOL, "arguments": {"target": "all"}}).encode()
    body = b'{"jsonrpc":"2.0","id":' + BAD_IDS[kind] + b',"method":"tools/call","params":' + params + b"}"
    refused(send(flask_port, body), None, code=-32600)
    never_ran()


def test_notification_of_tools_call(flask_port: int) -> None:
    message = rpc(meta=False)
    del message["id"]
    refused(send(flask_port, json.dumps(message).encode()), None, code=-32600)
    never_ran()


@pytest.mark.parametrize("kind", list(UNMAPPABLE_PARAMS))
def test_unmappable_params(flask_port: int, kind: str) -> None:
    body = json.dumps(rpc(id=4, params=UNMAPPABLE_PARAMS[kind], meta=False)).encode()
    refused(send(flask_port, body), 4, code=-32602)
    never_ran()


@pytest.mark.parametrize("kind", list(BATCHES))
def test_batches(flask_port: int, kind: str) -> None:
    answer = send(flask_port, json.dumps(BATCHES[kind]).encode())
    never_ran()
    assert b"deleted everything" not in answer.body
    found = messages_of(answer.content_type, answer.body)
    assert [m for m in found if "error" in m], (answer.status, answer.body[:500])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_json_shapes(flask_port: int, shape: str) -> None:
    refused(send(flask_port, SHAPES[shape].encode()), 1, code=-32602, plugin="policy")
    never_ran()


def test_batch_results_are_masked(flask_port: int) -> None:
    batch = [rpc(id=1, params={"name": "whoami", "arguments": {}}), rpc(id="1", params={"name": "whoami"})]
    answer = send(flask_port, json.dumps(batch).encode(), [("Content-Type", "text/plain")])
    assert EMAIL.encode() not in answer.body
    never_ran()


@pytest.mark.parametrize("request_id", IDS, ids=repr)
def test_ids_kept_exactly(flask_port: int, request_id: Any) -> None:
    answer = send(flask_port, denied_call(id=request_id))
    refused(answer, request_id, code=-32602, plugin="policy")
    if request_id == 18446744073709551619:
        assert b'"id":18446744073709551619' in answer.body.replace(b" ", b"")


# --------------------------------------------------------------------------
# Framing: chunked bodies, Content-Length against Transfer-Encoding
# --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_chunked_body_from_httpx(flask_port: int, content_type: str | None) -> None:
    body = denied_call()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 5):
            yield body[start : start + 5]

    headers = {"content-type": content_type} if content_type else {}
    with httpx.Client(timeout=BOUND) as http:
        answer = http.post(f"http://127.0.0.1:{flask_port}/mcp", content=pieces(), headers=headers)
    assert_rpc_refusal(
        answer.status_code, answer.headers.get("content-type"), answer.content, request_id=1, plugin="policy"
    )
    never_ran()


@pytest.mark.parametrize("te", ["chunked", "Chunked", " chunked "])
def test_chunked_body_raw(flask_port: int, te: str) -> None:
    body = denied_call()
    headers = [("Content-Type", "text/plain"), ("Transfer-Encoding", te)]
    answer = raw_request(flask_port, "POST", "/mcp", headers, chunked(body[:3], body[3:20], body[20:]))
    refused(answer, 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize("length", [0, 1, 5, 40])
def test_content_length_smaller_than_a_chunked_body(flask_port: int, length: int) -> None:
    """werkzeug honours Transfer-Encoding and reads the whole de-chunked body: so must the middleware."""
    body = denied_call()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(length)), ("Transfer-Encoding", "chunked")]
    answer = raw_request(flask_port, "POST", "/mcp", headers, chunked(body[: length or 1], body[length or 1 :]))
    never_ran()
    assert b"deleted everything" not in answer.body
    if answer.status == 200:
        refused(answer, 1, plugin="policy")
    else:
        assert 400 <= answer.status < 500, (answer.status, answer.body[:300])


def test_harmless_prefix_then_smuggled_call(flask_port: int) -> None:
    """Content-Length covers a harmless call; a chunked body carries the denied one."""
    harmless = json.dumps(rpc("tools/list", params={})).encode()
    body = denied_call()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(harmless))),
        ("Transfer-Encoding", "chunked"),
    ]
    answer = raw_request(flask_port, "POST", "/mcp", headers, chunked(body))
    never_ran()
    assert b"deleted everything" not in answer.body


# --------------------------------------------------------------------------
# What cannot be JSON passes untouched, byte for byte
# --------------------------------------------------------------------------


def _digest(answer: RawResponse) -> dict:
    assert answer.status == 200, (answer.status, answer.body[:300])
    return json.loads(answer.body)


def test_form_post_passes_untouched(flask_port: int) -> None:
    body = f"name={DENIED_TOOL}&text={DENIED_WORD}&email={EMAIL}".encode()
    answer = raw_request(flask_port, "POST", "/upload", [("Content-Type", "application/x-www-form-urlencoded")], body)
    assert _digest(answer) == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


@pytest.mark.parametrize("content_type", ["application/octet-stream", "image/png", None, "application/json"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_binary_upload_over_a_mebibyte_passes_untouched(
    flask_port: int, content_type: str | None, framing: str
) -> None:
    body = b"\x89PNG\r\n\x1a\n" + os.urandom(1536 * 1024)
    headers = [("Content-Type", content_type)] if content_type else []
    if framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        answer = raw_request(flask_port, "PUT", "/upload", headers, chunked(*pieces))
    else:
        answer = raw_request(flask_port, "PUT", "/upload", headers, body)
    assert _digest(answer) == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


def test_text_that_is_not_json_passes_untouched(flask_port: int) -> None:
    body = b"  plain words about tools/call and " + DENIED_TOOL.encode() + b"\n" + os.urandom(64)
    answer = raw_request(flask_port, "POST", "/upload", [("Content-Type", "text/plain")], body)
    assert _digest(answer) == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
