"""
Fail closed, request side: the official MCP SDK server and the FastAPI example
=============================================================================

An attacker's view of DESIGN.md §9 and notes/contract.md ("Request side"):
every request body the app could read as JSON is inspected, whatever its
HTTP method, Content-Type, encoding, method spelling or shape. Each test
sends the hostile bytes to a real server on 127.0.0.1 (uvicorn) and proves
two things:

* what the client got is the middleware's refusal (a JSON-RPC error with the
  request's id, or a 415 problem), and
* the denied tool never ran: the server-side list it appends to is empty.

The MCP server is ``MCPServer`` with ``json_response`` True and False; raw
bytes go through httpx or a raw socket, and the SDK ``Client`` (``auto``
2026-07-28 and ``legacy`` 2025-11-25) is driven through a hostile httpx2
transport that re-spells its requests on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

import mcp_plugin_mw as mw
from tests.fail_closed_support import (
    BOUND,
    DENIED_TOOL,
    DENIED_WORD,
    EMAIL,
    GUARDS,
    META,
    assert_problem,
    assert_rpc_refusal,
    denied_call,
    mcp_headers,
    raw_request,
    rpc,
    uvicorn_on,
    word_call,
)

pytestmark = pytest.mark.timeout(120)

RAN: list[str] = []
"""Every call of the denied tool that reached the server's code."""
ECHOED: list[str] = []
"""Every text the echo tool was called with."""


def build_server() -> MCPServer:
    server = MCPServer("fail-closed")

    @server.tool()
    def delete_everything(target: str = "all") -> str:
        RAN.append(target)
        return "deleted everything"

    @server.tool()
    def echo(text: str) -> str:
        ECHOED.append(text)
        return text

    @server.tool()
    def whoami() -> str:
        return f"write to {EMAIL}"

    return server


class Served:
    def __init__(self, port: int, json_response: bool) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.json_response = json_response

    def send(
        self,
        method: str,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        content_type: str | None = "application/json",
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send ``body`` with the MCP headers (``headers`` replaces them) and ``content_type``."""
        merged = dict(mcp_headers() if headers is None else headers)
        if content_type is not None:
            merged["content-type"] = content_type
        merged.update(extra or {})
        with httpx.Client(timeout=BOUND) as http:
            return http.request(method, self.url, content=body, headers=merged)


@pytest.fixture(scope="module", params=[True, False], ids=["json", "sse"])
def sdk(request: pytest.FixtureRequest) -> Iterator[Served]:
    inner = build_server().streamable_http_app(json_response=request.param)
    with uvicorn_on(mw.PluginMiddleware(inner, config=GUARDS)) as port:
        yield Served(port, request.param)


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    RAN.clear()
    ECHOED.clear()
    yield
    RAN.clear()
    ECHOED.clear()


def refused(response: httpx.Response, request_id: Any = 1, **kw: Any) -> dict:
    never_ran()  # the side effect first: a bypass reports as such
    return assert_rpc_refusal(
        response.status_code, response.headers.get("content-type"), response.content, request_id=request_id, **kw
    )


def never_ran() -> None:
    assert RAN == [], f"the denied tool ran: {RAN!r}"
    assert not [t for t in ECHOED if DENIED_WORD in t.lower()], f"the denied word reached the tool: {ECHOED!r}"


# --------------------------------------------------------------------------
# The baseline: a plain well-formed call is refused, so every test below
# differs from it only by its one hostile trait.
# --------------------------------------------------------------------------


def test_baseline_denied_tool_is_refused(sdk: Served) -> None:
    refused(sdk.send("POST", denied_call()), 1, code=-32602, plugin="policy")
    refused(sdk.send("POST", word_call(), mcp_headers(name="echo")), 1, code=-32602, plugin="banned")
    never_ran()
    allowed = sdk.send(
        "POST", json.dumps(rpc(params={"name": "echo", "arguments": {"text": "hi"}})).encode(), mcp_headers(name="echo")
    )
    assert allowed.status_code == 200
    assert ECHOED == ["hi"]


# --------------------------------------------------------------------------
# HTTP method spellings and carriers
# --------------------------------------------------------------------------

METHODS = ["PUT", "PATCH", "GET", "DELETE", "OPTIONS"]


@pytest.mark.parametrize("method", METHODS)
def test_any_http_method_with_a_body_is_inspected(sdk: Served, method: str) -> None:
    refused(sdk.send(method, denied_call()), 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize("method", ["post", "Post", "pOST", "put", "get"])
def test_http_method_is_compared_case_insensitively(sdk: Served, method: str) -> None:
    headers = [*mcp_headers().items(), ("Content-Type", "application/json")]
    answer = raw_request(sdk.port, method, "/mcp", headers, denied_call())
    assert_rpc_refusal(answer.status, answer.content_type, answer.body, request_id=1, code=-32602, plugin="policy")
    never_ran()


# --------------------------------------------------------------------------
# Content-Type
# --------------------------------------------------------------------------

CONTENT_TYPES = [
    None,
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/json-rpc",
    "application/jsonl",
    "application/json5",
    "application/json-seq",
    "Application/JSONx",
    "APPLICATION/JSON",
    "application/foo+json",
    "application/json; charset=utf-8; x=y",
    "application/json;charset=UTF-8",
    "application/json, text/plain",
    "text/plain, application/json",
    "*/*",
    "",
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES, ids=repr)
def test_content_type_does_not_decide(sdk: Served, content_type: str | None) -> None:
    refused(sdk.send("POST", denied_call(), content_type=content_type), 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize(
    "pair",
    [("text/plain", "application/json"), ("application/json", "text/plain"), ("application/json", "application/json")],
    ids=repr,
)
def test_several_content_type_headers(sdk: Served, pair: tuple[str, str]) -> None:
    headers = [*mcp_headers().items(), ("Content-Type", pair[0]), ("Content-Type", pair[1])]
    answer = raw_request(sdk.port, "POST", "/mcp", headers, denied_call())
    assert_rpc_refusal(answer.status, answer.content_type, answer.body, request_id=1, code=-32602, plugin="policy")
    never_ran()


# --------------------------------------------------------------------------
# Encodings: whatever Python's json.loads(bytes) reads
# --------------------------------------------------------------------------

ENCODINGS = {
    "utf-8-bom": lambda s: b"\xef\xbb\xbf" + s.encode("utf-8"),
    "utf-16-le": lambda s: s.encode("utf-16-le"),
    "utf-16-be": lambda s: s.encode("utf-16-be"),
    "utf-16-le-bom": lambda s: b"\xff\xfe" + s.encode("utf-16-le"),
    "utf-16-be-bom": lambda s: b"\xfe\xff" + s.encode("utf-16-be"),
    "utf-32-le": lambda s: s.encode("utf-32-le"),
    "utf-32-be": lambda s: s.encode("utf-32-be"),
    "utf-32-le-bom": lambda s: b"\xff\xfe\x00\x00" + s.encode("utf-32-le"),
    "utf-32-be-bom": lambda s: b"\x00\x00\xfe\xff" + s.encode("utf-32-be"),
}


def test_every_encoding_here_is_one_json_loads_reads() -> None:
    for encode in ENCODINGS.values():
        assert json.loads(encode(denied_call().decode()))["params"]["name"] == DENIED_TOOL


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "charset"])
def test_bom_and_utf16_utf32_bodies(sdk: Served, encoding: str, content_type: str) -> None:
    body = ENCODINGS[encoding](denied_call().decode())
    if content_type == "charset":
        charset = encoding.removesuffix("-bom")
        content_type = f"application/json; charset={'utf-8' if charset == 'utf-8' else charset}"
    refused(sdk.send("POST", body, content_type=content_type), 1, code=-32602, plugin="policy")
    never_ran()


@pytest.mark.parametrize("charset", ["x-klingon", "utf-7000", "nonsense"])
def test_unknown_charset_is_415(sdk: Served, charset: str) -> None:
    answer = sdk.send("POST", denied_call(), content_type=f"application/json; charset={charset}")
    assert_problem(answer.status_code, answer.headers.get("content-type"), answer.content, 415)
    never_ran()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP", "identity, gzip"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_compressed_request_body_is_415(sdk: Served, encoding: str, content_type: str | None) -> None:
    import gzip

    answer = sdk.send(
        "POST", gzip.compress(denied_call()), content_type=content_type, extra={"content-encoding": encoding}
    )
    assert_problem(answer.status_code, answer.headers.get("content-type"), answer.content, 415)
    never_ran()


# --------------------------------------------------------------------------
# JSON-RPC method spellings
# --------------------------------------------------------------------------

SPELLINGS = [
    "Tools/Call",
    "TOOLS/CALL",
    "tools/Call",
    "tools/call ",
    " tools/call",
    "\ttools/call\n",
    "tools/call\u0000",
    "\u0000tools/call",
    "tools//call",
    "tools///call",
    "Tools//Call ",
]


@pytest.mark.parametrize("method", SPELLINGS, ids=repr)
def test_near_miss_method_spelling_is_invalid_request(sdk: Served, method: str) -> None:
    headers = mcp_headers(method="tools/call")
    answer = sdk.send("POST", json.dumps(rpc(method)).encode(), headers)
    error = assert_rpc_refusal(
        answer.status_code, answer.headers.get("content-type"), answer.content, request_id=1, code=-32600
    )
    assert error["error"]["code"] == -32600
    never_ran()


@pytest.mark.parametrize("method", ["Prompts/Get", "prompts/get ", "RESOURCES/READ", "resources//read"], ids=repr)
def test_near_miss_of_other_mapped_methods(sdk: Served, method: str) -> None:
    params = {"name": "x", "uri": "file:///etc/passwd", "arguments": {}}
    answer = sdk.send("POST", json.dumps(rpc(method, params=params)).encode(), mcp_headers(method=None, name=None))
    assert_rpc_refusal(
        answer.status_code, answer.headers.get("content-type"), answer.content, request_id=1, code=-32600
    )


# --------------------------------------------------------------------------
# Mapped methods the middleware cannot map
# --------------------------------------------------------------------------

BAD_IDS = {
    "object": b'{"a":1}',
    "array": b"[1]",
    "true": b"true",
    "false": b"false",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
}


def _with_raw_id(raw_id: bytes) -> bytes:
    params = json.dumps({"name": DENIED_TOOL, "arguments": {"target": "all"}, "_meta": META}).encode()
    return b'{"jsonrpc":"2.0","id":' + raw_id + b',"method":"tools/call","params":' + params + b"}"


@pytest.mark.parametrize("kind", list(BAD_IDS))
def test_forbidden_id_type_is_invalid_request_with_null_id(sdk: Served, kind: str) -> None:
    refused(sdk.send("POST", _with_raw_id(BAD_IDS[kind])), None, code=-32600)
    never_ran()


def test_notification_of_a_mapped_method_is_invalid_request(sdk: Served) -> None:
    message = rpc()
    del message["id"]
    refused(sdk.send("POST", json.dumps(message).encode()), None, code=-32600)
    never_ran()


UNMAPPABLE_PARAMS = {
    "params-list": [DENIED_TOOL, {"target": "all"}],
    "params-string": DENIED_TOOL,
    "params-number": 7,
    "arguments-list": {"name": DENIED_TOOL, "arguments": ["all"]},
    "arguments-string": {"name": DENIED_TOOL, "arguments": "all"},
    "arguments-number": {"name": DENIED_TOOL, "arguments": 1},
    "arguments-true": {"name": DENIED_TOOL, "arguments": True},
    "name-list": {"name": [DENIED_TOOL], "arguments": {}},
    "name-object": {"name": {"value": DENIED_TOOL}, "arguments": {}},
    "name-number": {"name": 5, "arguments": {}},
    "name-null": {"name": None, "arguments": {}},
    "name-absent": {"arguments": {"target": "all"}},
}


@pytest.mark.parametrize("kind", list(UNMAPPABLE_PARAMS))
@pytest.mark.parametrize("request_id", [1, "abc", 0])
def test_unmappable_params_is_invalid_params_with_the_id(sdk: Served, kind: str, request_id: Any) -> None:
    body = json.dumps(rpc(id=request_id, params=UNMAPPABLE_PARAMS[kind], meta=False)).encode()
    refused(sdk.send("POST", body), request_id, code=-32602)
    never_ran()


@pytest.mark.parametrize("arguments", [None, "absent"])
def test_null_or_absent_arguments_are_mapped(sdk: Served, arguments: Any) -> None:
    params: dict[str, Any] = {"name": DENIED_TOOL}
    if arguments is None:
        params["arguments"] = None
    refused(sdk.send("POST", json.dumps(rpc(params=params)).encode()), 1, code=-32602, plugin="policy")
    never_ran()


def test_resource_uri_not_a_string_is_invalid_params(sdk: Served) -> None:
    body = json.dumps(rpc("resources/read", id=3, params={"uri": ["file:///etc/passwd"]})).encode()
    refused(sdk.send("POST", body, mcp_headers(method="resources/read", name=None)), 3, code=-32602)


# --------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------


def _listing(id: Any) -> dict:
    return rpc("tools/list", id=id, params={})


def _echo(id: Any, text: str) -> dict:
    return rpc(id=id, params={"name": "echo", "arguments": {"text": text}})


BATCHES = {
    "denied-second": [_listing(1), rpc(id=2)],
    "denied-last-of-three": [_listing(1), _echo(2, "hi"), rpc(id=3)],
    "duplicate-ids": [_echo(1, "hi"), rpc(id=1)],
    "int-and-string-id": [_echo(5, "hi"), rpc(id="5")],
    "string-and-int-id": [_echo("5", "hi"), rpc(id=5)],
    "float-and-int-id": [_echo(5, "hi"), rpc(id=5.0)],
    "word-second": [_listing(1), _echo(2, f"a {DENIED_WORD} plan")],
    "unmappable-second": [_listing(1), rpc(id=2, params={"name": DENIED_TOOL, "arguments": ["x"]})],
    "spelled-second": [_listing(1), rpc("Tools/Call", id=2)],
    "nested-batch": [_listing(1), [rpc(id=2)]],
}


@pytest.mark.parametrize("kind", list(BATCHES))
def test_batch_members_are_each_inspected(sdk: Served, kind: str) -> None:
    answer = sdk.send("POST", json.dumps(BATCHES[kind]).encode(), mcp_headers(method=None, name=None))
    never_ran()
    found = _messages(answer)
    assert [m for m in found if "error" in m], (answer.status_code, answer.content[:500])
    assert b"deleted everything" not in answer.content


def _messages(answer: httpx.Response) -> list[Any]:
    from tests.fail_closed_support import messages_of

    return messages_of(answer.headers.get("content-type"), answer.content)


# --------------------------------------------------------------------------
# Duplicate keys, whitespace, key order, escapes
# --------------------------------------------------------------------------

_P_DENIED = json.dumps({"name": DENIED_TOOL, "arguments": {"target": "all"}, "_meta": META})
_P_ECHO = json.dumps({"name": "echo", "arguments": {"text": "hi"}, "_meta": META})

SHAPES = {
    "method-twice-last-wins": (
        '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":' + _P_DENIED + ',"method":"tools/call"}'
    ),
    "params-twice-last-wins": (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + _P_ECHO + ',"params":' + _P_DENIED + "}"
    ),
    "name-twice-last-wins": (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"target":"all"},'
        '"_meta":' + json.dumps(META) + ',"name":"' + DENIED_TOOL + '"}}'
    ),
    "id-twice": '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":' + _P_DENIED + ',"id":1}',
    "reversed-key-order": '{"params":' + _P_DENIED + ',"method":"tools/call","id":1,"jsonrpc":"2.0"}',
    "leading-whitespace": " \r\n\t " + denied_call().decode(),
    "trailing-whitespace": denied_call().decode() + " \r\n\t\n",
    "pretty-printed": json.dumps(rpc(), indent=4),
    "tabs-everywhere": denied_call().decode().replace(":", "\t:\t").replace(",", "\r\n,\n"),
    "escaped-method": denied_call().decode().replace('"tools/call"', '"tools\\/call"'),
    "unicode-escaped-method": denied_call().decode().replace('"tools/call"', '"\\u0074ools/c\\u0061ll"'),
    "unicode-escaped-name": denied_call().decode().replace(DENIED_TOOL, "\\u0064elete_everything"),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_json_shape_tricks(sdk: Served, shape: str) -> None:
    answer = sdk.send("POST", SHAPES[shape].encode(), mcp_headers(method="tools/call", name=None))
    refused(answer, 1, code=-32602, plugin="policy")
    never_ran()


def test_unicode_escaped_word_is_blocked(sdk: Served) -> None:
    body = word_call().decode().replace(DENIED_WORD, "\\u0066orbidde\\u006e").encode()
    refused(sdk.send("POST", body, mcp_headers(name="echo")), 1, code=-32602, plugin="banned")
    never_ran()


# --------------------------------------------------------------------------
# Chunked request bodies
# --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_chunked_request_body(sdk: Served, content_type: str | None, piece: int) -> None:
    body = denied_call()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), piece):
            yield body[start : start + piece]

    refused(sdk.send("POST", pieces(), content_type=content_type), 1, code=-32602, plugin="policy")
    never_ran()


# --------------------------------------------------------------------------
# Ids in the middleware's own replies
# --------------------------------------------------------------------------

IDS = [18446744073709551619, -18446744073709551619, "5", 5, 0, -1, 5.5, "", "ünï", "18446744073709551619"]


@pytest.mark.parametrize("request_id", IDS, ids=repr)
def test_ids_kept_exactly_in_refusals(sdk: Served, request_id: Any) -> None:
    answer = sdk.send("POST", denied_call(id=request_id))
    refused(answer, request_id, code=-32602, plugin="policy")
    if request_id == 18446744073709551619:
        assert b'"id":18446744073709551619' in answer.content.replace(b" ", b"")
    never_ran()


# --------------------------------------------------------------------------
# The SDK client as the attacker: its own requests, re-spelled on the wire
# --------------------------------------------------------------------------


def _respell(request: httpx2.Request, body: bytes, how: str) -> httpx2.Request:
    headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in ("content-length",)]
    method = request.method
    if how == "utf16-text-plain":
        body = body.decode().encode("utf-16")
        headers = [(k, "text/plain") if k.lower() == "content-type" else (k, v) for k, v in headers]
    elif how == "utf32-no-content-type":
        body = body.decode().encode("utf-32-be")
        headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
    elif how == "bom-json-rpc":
        body = b"\xef\xbb\xbf" + body
        headers = [(k, "application/json-rpc") if k.lower() == "content-type" else (k, v) for k, v in headers]
    elif how == "put":
        method = "PUT"
    elif how == "method-case":
        body = body.replace(b'"tools/call"', b'"Tools/Call"')
    elif how == "whitespace-method":
        body = body.replace(b'"tools/call"', b'"tools/call "')
    return httpx2.Request(method, request.url, headers=headers, content=body, extensions=request.extensions)


class HostileTransport(httpx2.AsyncHTTPTransport):
    """Re-spells the SDK client's ``tools/call`` requests; records every response byte."""

    def __init__(self, how: str | None, sink: bytearray) -> None:
        super().__init__()
        self.how = how
        self.sink = sink

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        if self.how is not None and b'"tools/call"' in body:
            request = _respell(request, body, self.how)
        response = await super().handle_async_request(request)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, self.sink),
            extensions=response.extensions,
        )


class _Tee(httpx2.AsyncByteStream):
    def __init__(self, stream: Any, sink: bytearray) -> None:
        self.stream = stream
        self.sink = sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.sink.extend(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


@contextlib.asynccontextmanager
async def sdk_client(url: str, mode: str, how: str | None = None) -> AsyncIterator[tuple[Client, bytearray]]:
    sink = bytearray()
    async with (
        httpx2.AsyncClient(transport=HostileTransport(how, sink), timeout=httpx2.Timeout(BOUND)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client, sink


MODES = ["auto", "legacy"]


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_denied_tool_word_and_pii(sdk: Served, mode: str) -> None:
    async with sdk_client(sdk.url, mode) as (client, sink):
        with pytest.raises(MCPError) as caught:
            await asyncio.wait_for(client.call_tool(DENIED_TOOL, {"target": "all"}), BOUND)
        assert caught.value.code == -32602
        assert caught.value.data["plugin_name"] == "policy"
        with pytest.raises(MCPError) as caught:
            await asyncio.wait_for(client.call_tool("echo", {"text": f"a {DENIED_WORD} plan"}), BOUND)
        assert caught.value.data["plugin_name"] == "banned"
        result = await asyncio.wait_for(client.call_tool("whoami", {}), BOUND)
        assert EMAIL not in result.content[0].text
        assert "[REDACTED:EMAIL]" in result.content[0].text
        after = await asyncio.wait_for(client.call_tool("echo", {"text": "still here"}), BOUND)
        assert after.content[0].text == "still here"
    assert EMAIL.encode() not in bytes(sink)
    never_ran()


RESPELLINGS = {
    "utf16-text-plain": -32602,
    "utf32-no-content-type": -32602,
    "bom-json-rpc": -32602,
    "put": -32602,
    "method-case": -32600,
    "whitespace-method": -32600,
}


@pytest.mark.parametrize("how", list(RESPELLINGS))
@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_respelled_on_the_wire(sdk: Served, mode: str, how: str) -> None:
    async with sdk_client(sdk.url, mode, how) as (client, _sink):
        with pytest.raises(MCPError) as caught:
            await asyncio.wait_for(client.call_tool(DENIED_TOOL, {"target": "all"}), BOUND)
        assert caught.value.code == RESPELLINGS[how], caught.value
    never_ran()
