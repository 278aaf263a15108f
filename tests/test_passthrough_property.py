"""
Property: plugins that change nothing change no byte
=====================================================

With a plugin subscribed to every hook that always returns None (sync and
async), whatever the client sends reaches the app byte for byte, and whatever
the app answers reaches the client byte for byte: arbitrary JSON values,
MCP requests with arbitrary nested arguments written with odd whitespace,
batches, random bytes; JSON responses and event streams framed with CRLF, LF
or CR, with comments, split across chunks at arbitrary points.

Checked in process at the WSGI level (``WSGIPluginMiddleware`` called with a
constructed environ) and at the ASGI level (``PluginMiddleware`` called with
a constructed scope, receive and send), each in front of a raw app that
records what it got.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcp_plugin_mw as mw
from mcp_plugin_mw.mapping import body as bodies
from mcp_plugin_mw.mapping.jsonrpc import id_key
from tests.wsgi_plugins import Counting

CONFIG = {
    "plugins": [
        {"name": "noop", "kind": "tests.wsgi_plugins.Noop"},
        {"name": "async-noop", "kind": "tests.wsgi_plugins.AsyncNoop"},
    ]
}

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)
ids = st.integers(min_value=0, max_value=2**31) | st.text(max_size=8)
whitespace = st.text(alphabet=" \t\r\n", max_size=3)


@st.composite
def written(draw: st.DrawFn, value: Any) -> bytes:
    """``value`` as JSON text with arbitrary but valid formatting."""
    indent = draw(st.sampled_from([None, 0, 1, 3, "\t", " \r\n"]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : "), (",\n", ":\t")]))
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))
    return (draw(whitespace) + text + draw(whitespace)).encode()


def mcp_request(request_id: Any) -> st.SearchStrategy[dict[str, Any]]:
    arguments = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
    params = st.one_of(
        st.fixed_dictionaries({"name": st.text(max_size=10), "arguments": arguments}).map(lambda p: ("tools/call", p)),
        st.fixed_dictionaries({"name": st.text(max_size=10)}, optional={"arguments": arguments}).map(
            lambda p: ("prompts/get", p)
        ),
        st.fixed_dictionaries({"uri": st.text(max_size=20)}).map(lambda p: ("resources/read", p)),
        st.sampled_from(LISTED).map(lambda method: (method, {})),
    )
    return params.map(lambda mp: {"jsonrpc": "2.0", "id": request_id, "method": mp[0], "params": mp[1]})


# A list method, and where its result keeps its page's entries.
LISTED = ["tools/list", "prompts/list", "resources/list", "resources/templates/list"]
_ENTRIES = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


def result_for(request: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A result the app may send for ``request``: any JSON, or a page of entries for a list method."""
    key = _ENTRIES.get(request["method"])
    if key is None:
        return json_values
    entries = st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=3), max_size=3)
    return st.fixed_dictionaries({key: entries}, optional={"nextCursor": st.text(max_size=6)})


@dataclasses.dataclass
class Exchange:
    """A request body and the response the app gives to it."""

    content_type: str
    body: bytes
    response_type: str
    response_chunks: list[bytes]

    @property
    def response(self) -> bytes:
        return b"".join(self.response_chunks)


@st.composite
def request_bodies(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    """A request body and the MCP requests in it."""
    kind = draw(st.sampled_from(["call", "batch", "value", "bytes"]))
    if kind == "call":
        request = draw(mcp_request(draw(ids)))
        return draw(written(request)), [request]
    if kind == "batch":
        # Unique as clients match ids (5 and "5" are one): a batch reusing one is refused.
        request_ids = draw(st.lists(ids, min_size=1, max_size=3, unique_by=id_key))
        requests: list[Any] = [draw(mcp_request(i)) for i in request_ids]
        others = draw(st.lists(st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "method": st.text()}), max_size=2))
        return draw(written(draw(st.permutations(requests + others)))), requests
    if kind == "value":
        return draw(written(draw(json_values))), []
    # Bytes that look like JSON but do not parse are refused (a lenient parser
    # might read a call in them); only the others must pass untouched.
    return draw(st.binary(max_size=64).filter(lambda raw: bodies.sniff(raw, [], complete=True) is False)), []


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@st.composite
def json_exchanges(draw: st.DrawFn) -> Exchange:
    body, requests = draw(request_bodies())
    replies = [{"jsonrpc": "2.0", "id": r["id"], "result": draw(result_for(r))} for r in requests]
    if not replies:
        # Nothing pending: whatever the app answers passes. (With calls
        # pending, an answer the plugins cannot read is replaced instead.)
        response = draw(st.binary(max_size=32)) if draw(st.booleans()) else draw(written(draw(json_values)))
    else:
        response = draw(written(replies if len(replies) > 1 or draw(st.booleans()) else replies[0]))
    chunks = split(response, draw(st.lists(st.integers(0, 10_000), max_size=4)))
    content_type = draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))
    return Exchange(content_type, body, "application/json", chunks)


@st.composite
def sse_streams(draw: st.DrawFn, requests: list[dict[str, Any]]) -> bytes:
    """An event stream: progress, results for ``requests``, comments; arbitrary line ends."""
    end = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    mixed = draw(st.booleans())

    def line_end() -> bytes:
        return draw(st.sampled_from([b"\r\n", b"\n", b"\r"])) if mixed else end

    # (data, is_json): only the JSON-RPC messages may be pretty-printed.
    data_values = [
        (json.dumps({"jsonrpc": "2.0", "id": r["id"], "result": draw(result_for(r))}), True) for r in requests
    ]
    data_values += [
        (json.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": n}}), True)
        for n in range(draw(st.integers(0, 2)))
    ]
    data_values += [
        (text, False)
        for text in draw(
            st.lists(
                st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=10), max_size=2
            )
        )
    ]
    blocks = draw(st.permutations(data_values))
    out = bytearray()
    if draw(st.booleans()):
        out += b"\xef\xbb\xbf" if draw(st.integers(0, 4)) == 0 else b""
    for data, is_json_text in blocks:
        if draw(st.booleans()):
            out += b": " + draw(st.sampled_from([b"ping", b"", b"keep-alive \xe2\x9c\x93"])) + line_end() + line_end()
        if draw(st.booleans()):
            out += b"event: message" + line_end()
        if draw(st.booleans()):
            out += b"id: " + str(draw(st.integers(0, 99))).encode() + line_end()
        # Pretty-printed JSON spans several data lines, which the parser joins.
        text = json.dumps(json.loads(data), indent=1) if is_json_text and draw(st.booleans()) else data
        for piece in text.split("\n"):
            out += b"data:" + draw(st.sampled_from([b" ", b""])) + piece.encode() + line_end()
        out += line_end()
    if draw(st.booleans()):
        out += b"data: unterminated"  # a last block the server never finished
    return bytes(out)


@st.composite
def sse_exchanges(draw: st.DrawFn) -> Exchange:
    request = draw(mcp_request(draw(ids)))
    body = draw(written(request))
    stream = draw(sse_streams([request]))
    chunks = split(stream, draw(st.lists(st.integers(0, 10_000), max_size=8)))
    return Exchange("application/json", body, "text/event-stream", chunks)


EXCHANGES = {"json": json_exchanges(), "sse": sse_exchanges()}


# ----------------------------------------------------------------------
# WSGI
# ----------------------------------------------------------------------


class TrickleInput(io.RawIOBase):
    """A request stream that returns at most ``step`` bytes per read, as a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = io.BytesIO(data)
        self.step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self.step
        return self.data.read(min(size, self.step))


@pytest.fixture(scope="module")
def wsgi_recorder() -> Iterator[tuple[mw.WSGIPluginMiddleware, dict[str, Any]]]:
    box: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        received = bytearray()
        while len(received) < length:
            chunk = stream.read(length - len(received))
            if not chunk:
                break
            received += chunk
        box["received"] = bytes(received)
        exchange: Exchange = box["exchange"]
        headers = [("Content-Type", exchange.response_type), ("X-App", "yes")]
        if exchange.response_type == "application/json":
            headers.append(("Content-Length", str(len(exchange.response))))
        start_response("200 OK", headers)
        # A generator, as streaming apps give.
        yield from exchange.response_chunks

    middleware = mw.WSGIPluginMiddleware(app, config=CONFIG)
    yield middleware, box
    middleware.manager.close()


def run_wsgi(
    middleware: mw.WSGIPluginMiddleware, box: dict[str, Any], exchange: Exchange, step: int, chunked: bool
) -> tuple[list[tuple[str, list[tuple[str, str]]]], bytes]:
    box.clear()
    box["exchange"] = exchange
    box["received"] = None
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/mcp",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": exchange.content_type,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": TrickleInput(exchange.body, step),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(len(exchange.body))
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return None

    result = middleware(environ, start_response)
    try:
        output = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return started, output


def header_map(headers: Any) -> dict[str, str]:
    return {
        (name.decode("latin-1") if isinstance(name, bytes) else name).lower(): (
            value.decode("latin-1") if isinstance(value, bytes) else value
        )
        for name, value in headers
    }


@pytest.mark.parametrize("kind", ["json", "sse"])
@SETTINGS
@given(data=st.data(), step=st.integers(1, 64), chunked=st.booleans())
def test_wsgi_passes_unmodified_bytes(
    wsgi_recorder: tuple[mw.WSGIPluginMiddleware, dict[str, Any]],
    kind: str,
    data: st.DataObject,
    step: int,
    chunked: bool,
) -> None:
    middleware, box = wsgi_recorder
    exchange = data.draw(EXCHANGES[kind])
    started, output = run_wsgi(middleware, box, exchange, step, chunked)
    assert box["received"] == exchange.body
    assert output == exchange.response
    [(status, headers)] = started
    assert status == "200 OK"
    sent = header_map(headers)
    assert sent["content-type"] == exchange.response_type
    assert sent["x-app"] == "yes"
    if exchange.response_type == "application/json":
        assert sent["content-length"] == str(len(exchange.response))


# ----------------------------------------------------------------------
# ASGI
# ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def asgi_recorder() -> Iterator[tuple[mw.PluginMiddleware, dict[str, Any], asyncio.AbstractEventLoop]]:
    box: dict[str, Any] = {}

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        received = bytearray()
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            received += message.get("body", b"")
            if not message.get("more_body", False):
                break
        box["received"] = bytes(received)
        exchange: Exchange = box["exchange"]
        headers = [(b"content-type", exchange.response_type.encode()), (b"x-app", b"yes")]
        if exchange.response_type == "application/json":
            headers.append((b"content-length", str(len(exchange.response)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in exchange.response_chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    loop = asyncio.new_event_loop()
    middleware = mw.PluginMiddleware(app, config=CONFIG)
    yield middleware, box, loop
    loop.run_until_complete(middleware.manager.aclose())
    loop.close()


async def run_asgi(
    middleware: mw.PluginMiddleware, box: dict[str, Any], exchange: Exchange, request_chunks: list[bytes]
) -> list[dict[str, Any]]:
    box.clear()
    box["exchange"] = exchange
    headers = [(b"content-type", exchange.content_type.encode())]
    headers.append((b"content-length", str(len(exchange.body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in request_chunks
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await asyncio.wait_for(middleware(scope, receive, send), 10)
    return sent


@pytest.mark.parametrize("kind", ["json", "sse"])
@SETTINGS
@given(data=st.data(), cuts=st.lists(st.integers(0, 10_000), max_size=4))
def test_asgi_passes_unmodified_bytes(
    asgi_recorder: tuple[mw.PluginMiddleware, dict[str, Any], asyncio.AbstractEventLoop],
    kind: str,
    data: st.DataObject,
    cuts: list[int],
) -> None:
    middleware, box, loop = asgi_recorder
    exchange = data.draw(EXCHANGES[kind])
    sent = loop.run_until_complete(run_asgi(middleware, box, exchange, split(exchange.body, cuts)))
    assert box["received"] == exchange.body
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    assert all(message["type"] == "http.response.body" for message in sent[1:])
    assert sent[-1].get("more_body", False) is False
    assert not any(message.get("more_body", False) is False for message in sent[1:-1])
    assert b"".join(message.get("body", b"") for message in sent[1:]) == exchange.response
    headers = header_map(sent[0]["headers"])
    assert headers["content-type"] == exchange.response_type
    assert headers["x-app"] == "yes"
    if exchange.response_type == "application/json":
        assert headers["content-length"] == str(len(exchange.response))


# ----------------------------------------------------------------------
# The generators themselves produce what the properties need
# ----------------------------------------------------------------------


@pytest.fixture
def counting() -> Iterator[mw.WSGIPluginMiddleware]:
    box: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        exchange: Exchange = box["exchange"]
        start_response("200 OK", [("Content-Type", exchange.response_type)])
        return exchange.response_chunks

    Counting.calls.clear()
    middleware = mw.WSGIPluginMiddleware(
        app, config={"plugins": [{"name": "count", "kind": "tests.wsgi_plugins.Counting"}]}
    )
    middleware.box = box  # type: ignore[attr-defined]
    yield middleware
    middleware.manager.close()


POST_HOOKS = ("tool_post_invoke", "prompt_post_fetch", "resource_post_fetch")


def test_the_examples_reach_every_hook(counting: mw.WSGIPluginMiddleware) -> None:
    """Guard against a vacuous property: the generated exchanges do run the hooks, both ways, on both kinds."""
    kinds: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(exchange=json_exchanges() | sse_exchanges())
    def run(exchange: Exchange) -> None:
        before = sum(Counting.calls[hook] for hook in POST_HOOKS)
        run_wsgi(counting, counting.box, exchange, step=7, chunked=False)  # type: ignore[attr-defined]
        if sum(Counting.calls[hook] for hook in POST_HOOKS) > before:
            kinds[exchange.response_type] += 1

    run()
    for hook in mw.HookType:
        assert Counting.calls[hook.value] > 0, (hook, Counting.calls)
    assert kinds["application/json"] > 0, kinds
    assert kinds["text/event-stream"] > 0, kinds
