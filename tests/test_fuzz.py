"""
Fuzz: mutations of a blocked call, and arbitrary responses
==========================================================

Deterministic (``derandomize=True``, no example database) and bounded in
time (``pytest-timeout``; every ASGI call under ``asyncio.wait_for``).

Request side (DESIGN.md §9, the fail-closed contract): start from one
``tools/call`` of the denied tool and apply each single mutation of
:data:`MUTATIONS` (HTTP method, Content-Type, framing / Content-Length /
chunking, encoding and BOM, batch shape, id type, params shape, method
spelling, repeated keys, escapes and whitespace), then random combinations
of two or three, through ``PluginMiddleware`` and ``WSGIPluginMiddleware``
in front of the lenient app: the denied tool never runs. Every example is
first sent to the bare app, which must run it (else it proves nothing).

Response side: behind the middleware with a response hook active and a
``tools/call`` pending, the app answers with arbitrary bodies (JSON
documents with odd ids, event streams in random chunks, other or several
content types, compressed bodies, random bytes): the middleware never
raises or hangs; the client always gets one complete HTTP response (status,
body, and a Content-Length, if any, that matches the body).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcp_plugin_mw as mw
from tests.fail_closed_plugins import ALLOWED_TOOL, DENIED_TOOL, LenientApp, ScriptedApp
from tests.fail_closed_wire import (
    ENCODINGS,
    WSGI_FRAMINGS,
    Obj,
    Raw,
    Response,
    Style,
    arguments,
    big_ints,
    content_type_headers,
    encode,
    http_methods,
    json_values,
    leading_whitespace,
    method_spellings,
    run_asgi,
    run_wsgi,
    small_ints,
    split,
    styles,
    text_ids,
    write,
    wsgi_environ,
)

pytestmark = pytest.mark.timeout(180)

FUZZ = settings(
    max_examples=250,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)


# ----------------------------------------------------------------------
# The case: one request, as the mutations leave it
# ----------------------------------------------------------------------


def base_call() -> Obj:
    return Obj(
        [
            ("jsonrpc", "2.0"),
            ("id", 1),
            ("method", "tools/call"),
            ("params", Obj([("name", DENIED_TOOL), ("arguments", Obj([("all", True)]))])),
        ]
    )


@dataclasses.dataclass
class Case:
    """A request built from the denied call; each mutation changes one aspect."""

    call: Obj = dataclasses.field(default_factory=base_call)
    # Puts the call into the document: a batch shape.
    wrap: Callable[[Obj], Any] = lambda call: call
    wrap_name: str = "single"
    style: Style = dataclasses.field(default_factory=Style)
    encoding: str = "utf-8"
    http_method: str = "POST"
    content_types: list[str] = dataclasses.field(default_factory=lambda: ["application/json"])
    # ASGI: where the body is cut into http.request messages, and the content-length header sent.
    cuts: list[int] = dataclasses.field(default_factory=list)
    asgi_length: str = "exact"
    chunked_header: bool = False
    # WSGI: how the server frames the body (see WSGI_FRAMINGS).
    framing: str = "length"
    short: int = 0
    trailer: bytes = b""
    # Other request headers (Content-Encoding, MCP headers), on both transports.
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    padding: int = 0
    lead: str = ""
    applied: list[str] = dataclasses.field(default_factory=list)

    def body(self) -> bytes:
        return encode(self.lead + write(self.wrap(self.call), self.style) + " " * self.padding, self.encoding)

    def asgi_headers(self, body: bytes) -> list[tuple[str, str]]:
        headers = [("content-type", value) for value in self.content_types]
        lengths = {
            "exact": [str(len(body))],
            "absent": [],
            "zero": ["0"],
            "smaller": [str(max(len(body) // 2, 0))],
            "larger": [str(len(body) + 100)],
            "garbage": ["abc"],
            "negative": ["-1"],
            "twice": [str(len(body)), "0"],
        }[self.asgi_length]
        headers += [("content-length", value) for value in lengths]
        if self.chunked_header:
            headers.append(("transfer-encoding", "chunked"))
        return headers + self.headers

    def describe(self) -> str:
        return (
            f"mutations={self.applied} method={self.http_method!r} content_types={self.content_types!r} "
            f"encoding={self.encoding} wrap={self.wrap_name} framing={self.framing} asgi_length={self.asgi_length} "
            f"cuts={self.cuts} headers={self.headers} padding={self.padding} body={self.body()[:400]!r}"
        )


Mutation = Callable[[st.DrawFn, Case], None]

# ----------------------------------------------------------------------
# Mutations
# ----------------------------------------------------------------------


def m_http_method(draw: st.DrawFn, case: Case) -> None:
    case.http_method = draw(http_methods | st.sampled_from(["post", "Post", "pOST", "get", "put"]))


def m_content_type(draw: st.DrawFn, case: Case) -> None:
    case.content_types = draw(content_type_headers())


def m_framing(draw: st.DrawFn, case: Case) -> None:
    case.cuts = draw(st.lists(st.integers(0, 8) | st.integers(0, 10_000), min_size=1, max_size=8))
    case.asgi_length = draw(
        st.sampled_from(["exact", "absent", "zero", "smaller", "larger", "garbage", "negative", "twice"])
    )
    case.chunked_header = draw(st.booleans())
    case.framing = draw(st.sampled_from(WSGI_FRAMINGS))
    case.short = draw(st.integers(0, 10_000))
    case.trailer = draw(
        st.sampled_from([b"", b"garbage", b' {"jsonrpc":"2.0","method":"ping"}', b"\r\n0\r\n\r\n", b"\x00" * 3])
    )


def m_encoding(draw: st.DrawFn, case: Case) -> None:
    case.encoding = draw(st.sampled_from([name for name in ENCODINGS if name != "utf-8"]))


def _others(draw: st.DrawFn) -> list[Any]:
    pool = [
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        {"jsonrpc": "2.0", "id": "o1", "method": "tools/list"},
        {"jsonrpc": "2.0", "id": "o2", "method": "tools/call", "params": {"name": ALLOWED_TOOL}},
        {"jsonrpc": "2.0", "id": "o3", "result": {}},
        {"jsonrpc": "2.0", "id": "o4", "error": {"code": -1, "message": "x"}},
        [],
        {},
        5,
        None,
        "tools/call",
    ]
    return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))


def m_batch_shape(draw: st.DrawFn, case: Case) -> None:
    shape = draw(
        st.sampled_from(
            ["single-member", "nested", "deeply-nested", "with-notifications", "with-others", "twice", "nested-among"]
        )
    )
    others = _others(draw)
    at = draw(st.integers(0, len(others)))
    depth = draw(st.integers(3, 6))
    wraps: dict[str, Callable[[Obj], Any]] = {
        "single-member": lambda call: [call],
        "nested": lambda call: [[call]],
        "deeply-nested": lambda call: _nest(call, depth),
        "with-notifications": lambda call: [
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            call,
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
        ],
        "with-others": lambda call: [*others[:at], call, *others[at:]],
        "twice": lambda call: [call, call.copy()],
        "nested-among": lambda call: [*others[:at], [call], *others[at:]],
    }
    case.wrap, case.wrap_name = wraps[shape], shape


def _nest(call: Obj, depth: int) -> Any:
    value: Any = call
    for _ in range(depth):
        value = [value]
    return value


ODD_IDS: list[Any] = [
    0,
    -1,
    2**64 + 3,
    -(2**64) - 3,
    18446744073709551619,
    "18446744073709551619",
    "1",
    "",
    " 1",
    5.0,
    1.5,
    -0.0,
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1E2"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    None,
    True,
    False,
    [],
    [1],
    {},
    {"id": 1},
]


def m_id_type(draw: st.DrawFn, case: Case) -> None:
    choice = draw(st.sampled_from(["odd", "absent", "int", "str", "big", "str-of-int", "text"]))
    if choice == "absent":
        case.call.delete("id")
        return
    value = {
        "odd": st.sampled_from(ODD_IDS),
        "int": small_ints,
        "str": st.text(alphabet="abc-_", max_size=5),
        "big": big_ints,
        "str-of-int": (small_ints | big_ints).map(str),
        "text": text_ids,
    }[choice]
    case.call.set("id", draw(value))


def m_params_shape(draw: st.DrawFn, case: Case) -> None:
    shape = draw(
        st.sampled_from(
            [
                "arguments-absent",
                "arguments-null",
                "arguments-empty",
                "arguments-odd",
                "arguments-random",
                "extra-keys",
                "positional",
                "name-repeated",
                "params-repeated",
                "arguments-first",
            ]
        )
    )
    params: Obj = case.call.get("params")
    if shape == "arguments-absent":
        params.delete("arguments")
    elif shape == "arguments-null":
        params.set("arguments", None)
    elif shape == "arguments-empty":
        params.set("arguments", Obj([]))
    elif shape == "arguments-odd":
        params.set(
            "arguments", draw(st.sampled_from([[], [1, 2], "x", 0, 1.5, True, False, Raw("NaN"), [{"all": True}]]))
        )
    elif shape == "arguments-random":
        params.set("arguments", draw(arguments))
    elif shape == "extra-keys":
        params.pairs.insert(
            draw(st.integers(0, len(params.pairs))),
            draw(
                st.sampled_from(
                    [
                        ("_meta", {"progressToken": 7}),
                        ("task", {"ttl": 1}),
                        ("uri", "file:///x"),
                        ("Name", ALLOWED_TOOL),
                    ]
                )
            ),
        )
    elif shape == "positional":
        case.call.set("params", [DENIED_TOOL, {"all": True}])
    elif shape == "name-repeated":
        params.pairs.insert(0, ("name", draw(st.sampled_from([ALLOWED_TOOL, "", None, 5]))))
    elif shape == "params-repeated":
        index = next(i for i, (key, _) in enumerate(case.call.pairs) if key == "params")
        case.call.pairs.insert(index, ("params", draw(st.sampled_from([Obj([("name", ALLOWED_TOOL)]), None, [], "x"]))))
    elif shape == "arguments-first":
        params.pairs.reverse()


def m_method_spelling(draw: st.DrawFn, case: Case) -> None:
    spelling = draw(
        method_spellings()
        | st.sampled_from(
            [
                "Tools/Call",
                "TOOLS/CALL",
                "tools/call ",
                " tools/call",
                "\ttools/call\n",
                "tools//call",
                "tools///call",
                "\0tools/call",
                "tools/call\0",
                "to\0ols/call",
                "tools/\0/call",
                "\u00a0tools/call\u3000",
                "\u2028tools/call\x1c",
                "\x85TOOLS//CALL\0",
            ]
        )
    )
    case.call.set("method", spelling)


def m_repeated_keys(draw: st.DrawFn, case: Case) -> None:
    decoys: dict[str, st.SearchStrategy[Any]] = {
        "method": st.sampled_from(["tools/list", "ping", "tools/callx", 5, None]),
        "id": st.sampled_from([2, "x", None, [], {}]),
        "params": st.sampled_from([Obj([("name", ALLOWED_TOOL)]), None, "x"]),
        "jsonrpc": st.sampled_from(["1.0", None]),
    }
    pairs: list[tuple[str, Any]] = []
    for key, value in case.call.pairs:
        if key in decoys and draw(st.booleans()):
            pairs.append((key, draw(decoys[key])))
        pairs.append((key, value))
    if len(pairs) == len(case.call.pairs):
        pairs.insert(0, ("method", "tools/list"))
    case.call.pairs = pairs


def reorder(draw: st.DrawFn, obj: Obj) -> None:
    """The keys of ``obj`` in another order; repeated keys keep their order, so the same one counts."""
    keys = list(dict.fromkeys(key for key, _ in obj.pairs))
    obj.pairs = [pair for key in draw(st.permutations(keys)) for pair in obj.pairs if pair[0] == key]


def m_escapes_whitespace(draw: st.DrawFn, case: Case) -> None:
    case.style = draw(styles)
    case.lead = draw(leading_whitespace)
    case.style.escape = draw(st.sampled_from([0.3, 1.0, case.style.escape]))
    reorder(draw, case.call)
    params = case.call.get("params")
    if isinstance(params, Obj):
        reorder(draw, params)


def m_content_encoding(draw: st.DrawFn, case: Case) -> None:
    """A Content-Encoding header over a body that is not compressed at all (the app ignores the header)."""
    values = ["gzip", "GZIP", "br", "deflate", "x-custom", "identity, gzip", "gzip, identity", "compress"]
    for value in draw(st.lists(st.sampled_from(values), min_size=1, max_size=2)):
        case.headers.append(("content-encoding", value))


def m_mcp_headers(draw: st.DrawFn, case: Case) -> None:
    """MCP headers that disagree with the body, or name a revision without batches; the app reads the body."""
    choices = [
        ("mcp-method", "tools/list"),
        ("mcp-method", "tools/call"),
        ("mcp-method", "ping"),
        ("mcp-name", ALLOWED_TOOL),
        ("mcp-name", DENIED_TOOL),
        ("mcp-protocol-version", "2025-03-26"),
        ("mcp-protocol-version", "2025-06-18"),
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-protocol-version", "1999-01-01"),
        ("mcp-protocol-version", "garbage"),
        ("mcp-session-id", "abc"),
        ("accept", "text/event-stream"),
        ("accept", "*/*"),
    ]
    case.headers += draw(st.lists(st.sampled_from(choices), min_size=1, max_size=4))
    if draw(st.booleans()):
        params = case.call.get("params")
        if isinstance(params, Obj):
            version = draw(st.sampled_from(["2025-06-18", "2026-07-28", "garbage"]))
            params.set("_meta", {"io.modelcontextprotocol/protocolVersion": version})


def m_padding(draw: st.DrawFn, case: Case) -> None:
    """Trailing JSON whitespace: bodies across read sizes and past the body limit."""
    case.padding = draw(st.sampled_from([1, 4095, 65_535, 65_536, 65_537, 300_000, 1_048_576, 1_100_000]))


MUTATIONS: dict[str, Mutation] = {
    "content_encoding": m_content_encoding,
    "mcp_headers": m_mcp_headers,
    "padding": m_padding,
    "http_method": m_http_method,
    "content_type": m_content_type,
    "framing": m_framing,
    "encoding": m_encoding,
    "batch_shape": m_batch_shape,
    "id_type": m_id_type,
    "params_shape": m_params_shape,
    "method_spelling": m_method_spelling,
    "repeated_keys": m_repeated_keys,
    "escapes_whitespace": m_escapes_whitespace,
}


@st.composite
def mutated(draw: st.DrawFn, names: list[str]) -> Case:
    case = Case()
    for name in names:
        MUTATIONS[name](draw, case)
        case.applied.append(name)
    return case


@st.composite
def combined(draw: st.DrawFn) -> Case:
    names = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=2, max_size=3, unique=True))
    return draw(mutated(names))


# ----------------------------------------------------------------------
# Sending a case
# ----------------------------------------------------------------------


def send(transport: str, app: Any, case: Case, loop: asyncio.AbstractEventLoop) -> Response:
    body = case.body()
    if transport == "asgi":
        return loop.run_until_complete(run_asgi(app, case.http_method, case.asgi_headers(body), split(body, case.cuts)))
    environ = wsgi_environ(
        case.http_method,
        case.content_types,
        body,
        framing=case.framing,
        short=case.short,
        trailer=case.trailer,
        headers=case.headers,
    )
    return run_wsgi(app, environ)


def check_blocked(
    transport: str, case: Case, lenient: LenientApp, middleware: Any, loop: asyncio.AbstractEventLoop
) -> None:
    bare = lenient if transport == "asgi" else lenient.wsgi
    lenient.reset()
    send(transport, bare, case, loop)
    assert DENIED_TOOL in lenient.executed, f"not executable even without the middleware: {case.describe()}"
    lenient.reset()
    response = send(transport, middleware, case, loop)
    assert DENIED_TOOL not in lenient.executed, (
        f"the denied tool ran behind the middleware (HTTP {response.status}, {response.body[:200]!r}): "
        + case.describe()
    )


TRANSPORTS = ["asgi", "wsgi"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@FUZZ
@given(data=st.data())
def test_single_mutation_stays_blocked(
    transport: str,
    mutation: str,
    data: st.DataObject,
    lenient: LenientApp,
    deny_asgi: mw.PluginMiddleware,
    deny_wsgi: mw.WSGIPluginMiddleware,
    loop: asyncio.AbstractEventLoop,
) -> None:
    case = data.draw(mutated([mutation]), label="case")
    check_blocked(transport, case, lenient, deny_asgi if transport == "asgi" else deny_wsgi, loop)


@pytest.mark.parametrize("transport", TRANSPORTS)
@settings(FUZZ, max_examples=1000)
@given(data=st.data())
def test_combined_mutations_stay_blocked(
    transport: str,
    data: st.DataObject,
    lenient: LenientApp,
    deny_asgi: mw.PluginMiddleware,
    deny_wsgi: mw.WSGIPluginMiddleware,
    loop: asyncio.AbstractEventLoop,
) -> None:
    case = data.draw(combined(), label="case")
    check_blocked(transport, case, lenient, deny_asgi if transport == "asgi" else deny_wsgi, loop)


def test_the_unmutated_call_is_blocked(
    lenient: LenientApp,
    deny_asgi: mw.PluginMiddleware,
    deny_wsgi: mw.WSGIPluginMiddleware,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The starting point: the plain call is executable, and blocked, on both transports."""
    for transport in TRANSPORTS:
        check_blocked(transport, Case(), lenient, deny_asgi if transport == "asgi" else deny_wsgi, loop)


# ----------------------------------------------------------------------
# Response side: arbitrary answers to a pending tools/call
# ----------------------------------------------------------------------

RESPONSE_CONFIGS = {
    "mark": {"plugins": [{"name": "mark", "kind": "tests.fail_closed_plugins.MarkResult"}]},
    "crash": {"plugins": [{"name": "crash", "kind": "tests.fail_closed_plugins.CrashOnResult"}]},
    "async-mark": {
        "plugins": [
            {"name": "mark", "kind": "tests.fail_closed_plugins.AsyncMarkResult"},
            {"name": "deny", "kind": "tests.fail_closed_plugins.DenyDelete"},
        ]
    },
}

# Ids a response may carry: the pending ones in every MCP-equivalent spelling, others, and odd types.
PENDING_IDS: list[Any] = [7, "req-1", 18446744073709551619]


def _id_variants(request_id: Any) -> list[Any]:
    if isinstance(request_id, int):
        return [request_id, str(request_id), float(request_id), Raw(f"{request_id}.0"), Raw(f"{request_id}e0")]
    return [request_id, request_id.upper(), f" {request_id}"]


response_ids = st.one_of(
    st.sampled_from([variant for request_id in PENDING_IDS for variant in _id_variants(request_id)]),
    st.sampled_from(ODD_IDS),
    st.sampled_from([Raw("NaN"), Raw("-Infinity"), float("nan"), float("inf"), [7], {"id": 7}, True]),
    small_ints,
    big_ints,
    text_ids,
    st.floats(),
)


@st.composite
def results(draw: st.DrawFn) -> Any:
    return draw(
        st.one_of(
            st.just({"content": [{"type": "text", "text": "ok"}]}),
            st.fixed_dictionaries(
                {
                    "content": st.lists(
                        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}), max_size=3
                    )
                },
                optional={"isError": st.booleans(), "structuredContent": json_values, "_meta": json_values},
            ),
            st.fixed_dictionaries({"content": json_values}),
            json_values,
            st.sampled_from([Raw("NaN"), Raw("1e400"), Raw("Infinity"), None, [], "text"]),
        )
    )


@st.composite
def rpc_messages(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["result", "result", "error", "notification", "request", "odd"]))
    if kind == "result":
        pairs = [("jsonrpc", "2.0"), ("id", draw(response_ids)), ("result", draw(results()))]
    elif kind == "error":
        error = draw(
            st.sampled_from(
                [{"code": -32000, "message": "boom"}, {"code": "x"}, None, {"code": 1, "message": 2, "data": [1]}]
            )
        )
        pairs = [("jsonrpc", "2.0"), ("id", draw(response_ids)), ("error", error)]
    elif kind == "notification":
        pairs = [
            ("jsonrpc", "2.0"),
            ("method", "notifications/progress"),
            ("params", {"progressToken": 1, "progress": 0.5}),
        ]
    elif kind == "request":
        pairs = [("jsonrpc", "2.0"), ("id", draw(response_ids)), ("method", "sampling/createMessage"), ("params", {})]
    else:
        return draw(json_values)
    if draw(st.integers(0, 5)) == 0:
        pairs.insert(0, (pairs[1][0], draw(json_values)))  # a repeated key
    return Obj(draw(st.permutations(pairs)))


@st.composite
def json_documents(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(rpc_messages())
    return draw(st.lists(rpc_messages() | st.lists(rpc_messages(), max_size=2), max_size=4))


@dataclasses.dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    chunks: list[bytes]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


statuses = st.sampled_from([200, 200, 200, 202, 204, 304, 400, 404, 500, 502])


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> list[bytes]:
    return split(body, draw(st.lists(st.integers(0, 100_000), max_size=8)))


JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "application/json; charset=latin-1",
    "application/json; charset=x-unknown",
    "application/json-rpc",
    "application/vnd.api+json",
]


@st.composite
def json_replies(draw: st.DrawFn) -> Reply:
    text = write(draw(json_documents()), draw(styles))
    body = encode(text, draw(st.sampled_from(["utf-8", "utf-8", "utf-8-bom", "utf-16-le", "utf-32-be-bom"])))
    if draw(st.integers(0, 4)) == 0:
        body = body[: draw(st.integers(0, len(body)))]  # truncated
    headers = [("content-type", draw(st.sampled_from(JSON_TYPES)))]
    if draw(st.booleans()):
        headers.append(("content-length", str(len(body))))
    return Reply(draw(statuses), headers, draw(chunked(body)))


SSE_TYPES = [
    "text/event-stream",
    "text/event-stream; charset=utf-8",
    "Text/Event-Stream",
    "text/event-stream; charset=utf-16",
    "text/event-stream; charset=latin-1",
]


@st.composite
def sse_replies(draw: st.DrawFn) -> Reply:
    out = bytearray()
    if draw(st.integers(0, 5)) == 0:
        out += b"\xef\xbb\xbf"
    for _ in range(draw(st.integers(0, 5))):
        end = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
        kind = draw(st.sampled_from(["rpc", "rpc", "rpc", "comment", "retry", "text", "bytes", "multiline", "fields"]))
        if kind == "comment":
            out += b": " + draw(st.binary(max_size=8)).replace(b"\n", b"").replace(b"\r", b"") + end
        elif kind == "retry":
            out += b"retry: " + str(draw(st.integers(-5, 10_000))).encode() + end
        elif kind == "text":
            out += (
                b"data: "
                + draw(st.text(max_size=20)).encode("utf-8", "surrogatepass").replace(b"\n", b" ").replace(b"\r", b" ")
                + end
            )
        elif kind == "bytes":
            out += b"data:" + draw(st.binary(max_size=20)) + end
        elif kind == "fields":
            out += (
                draw(st.sampled_from([b"event: message", b"event: ping", b"id: 5", b"id", b"event", b"data", b"x: y"]))
                + end
            )
        else:
            text = write(
                draw(json_documents()),
                Style(seed=draw(st.integers(0, 99)), whitespace="\n" if kind == "multiline" else ""),
            )
            for line in text.split("\n"):
                out += b"data:" + draw(st.sampled_from([b" ", b""])) + line.encode("utf-8", "surrogatepass") + end
        if draw(st.integers(0, 3)):
            out += end  # dispatch the event
    if draw(st.booleans()):
        out += b"data: " + write(draw(rpc_messages())).encode("utf-8", "surrogatepass")  # an unterminated last event
    body = bytes(out)
    return Reply(
        draw(st.sampled_from([200, 200, 200, 500])),
        [("content-type", draw(st.sampled_from(SSE_TYPES)))],
        draw(chunked(body)),
    )


OTHER_REPLY_TYPES = [
    None,
    "text/plain",
    "text/html; charset=utf-8",
    "application/octet-stream",
    "application/problem+json",
    "multipart/mixed; boundary=x",
    "",
    "application/json, text/event-stream",
]


@st.composite
def other_replies(draw: st.DrawFn) -> Reply:
    kind = draw(st.sampled_from(["type", "several-types", "gzip", "bytes"]))
    document = write(draw(json_documents())).encode("utf-8", "surrogatepass")
    body = (
        draw(st.sampled_from([document, b"", b"not json", b"\x00\xff\xfe"]))
        if kind != "bytes"
        else draw(st.binary(max_size=64))
    )
    headers: list[tuple[str, str]] = []
    if kind == "several-types":
        headers += [
            ("content-type", "application/json"),
            ("content-type", draw(st.sampled_from(["text/event-stream", "text/plain", "application/json"]))),
        ]
    elif kind == "gzip":
        body = gzip.compress(body, mtime=0) if draw(st.booleans()) else body
        headers += [
            ("content-type", draw(st.sampled_from(["application/json", "text/event-stream"]))),
            ("content-encoding", draw(st.sampled_from(["gzip", "br", "deflate", "identity, gzip"]))),
        ]
    else:
        value = draw(st.sampled_from(OTHER_REPLY_TYPES))
        if value is not None:
            headers.append(("content-type", value))
    if draw(st.booleans()):
        headers.append(("content-length", str(len(body))))
    return Reply(draw(statuses), headers, draw(chunked(body)))


REPLIES = {"json": json_replies(), "sse": sse_replies(), "other": other_replies()}


@st.composite
def pending_requests(draw: st.DrawFn) -> bytes:
    """A tools/call the response hook waits for: alone, or in a batch with more calls."""
    calls = [
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": ALLOWED_TOOL, "arguments": {}}}
        for request_id in PENDING_IDS
    ]
    if draw(st.booleans()):
        return write(draw(st.sampled_from(calls))).encode()
    members = draw(st.lists(st.sampled_from(calls), min_size=1, max_size=3, unique_by=lambda call: str(call["id"])))
    return write(members).encode()


@pytest.fixture(scope="module")
def scripted() -> ScriptedApp:
    return ScriptedApp()


@pytest.fixture(scope="module")
def response_middlewares(
    scripted: ScriptedApp, loop: asyncio.AbstractEventLoop
) -> Iterator[dict[tuple[str, str], Any]]:
    made: dict[tuple[str, str], Any] = {}
    for name, config in RESPONSE_CONFIGS.items():
        made["asgi", name] = mw.PluginMiddleware(scripted, config=config)
        made["wsgi", name] = mw.WSGIPluginMiddleware(scripted.wsgi, config=config)
    yield made
    for (transport, _), middleware in made.items():
        if transport == "asgi":
            loop.run_until_complete(middleware.manager.aclose())
        else:
            middleware.manager.close()


def check_complete(response: Response, reply: Reply) -> None:
    assert 100 <= response.status <= 599
    assert isinstance(response.body, bytes)
    lengths = response.header("content-length")
    assert len(lengths) <= 1, response.headers
    if lengths:
        assert int(lengths[0]) == len(response.body), (lengths, len(response.body), response.body[:200])


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("plugin", sorted(RESPONSE_CONFIGS))
@pytest.mark.parametrize("kind", sorted(REPLIES))
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_any_response_gives_a_complete_reply(
    transport: str,
    plugin: str,
    kind: str,
    data: st.DataObject,
    scripted: ScriptedApp,
    response_middlewares: dict[tuple[str, str], Any],
    loop: asyncio.AbstractEventLoop,
) -> None:
    request = data.draw(pending_requests(), label="request")
    reply = data.draw(REPLIES[kind], label="reply")
    scripted.script = (reply.status, reply.headers, reply.chunks)
    middleware = response_middlewares[transport, plugin]
    headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]
    if transport == "asgi":
        response = loop.run_until_complete(
            run_asgi(middleware, "POST", [*headers, ("content-length", str(len(request)))], [request])
        )
    else:
        response = run_wsgi(middleware, wsgi_environ("POST", ["application/json"], request))
    check_complete(response, reply)


def test_odd_ids_are_generated() -> None:
    """Guard against a vacuous response fuzz: responses do carry the pending ids, equivalent spellings and odd ids."""
    seen: set[str] = set()
    pending = {
        variant for request_id in PENDING_IDS for variant in _id_variants(request_id) if not isinstance(variant, Raw)
    }

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, Obj) and value.has("id"):
            found = value.get("id")
            if isinstance(found, str | int | float) and not isinstance(found, bool) and found in pending:
                seen.add("pending-" + type(found).__name__)
            elif (isinstance(found, Raw) and found.text in ("NaN", "Infinity", "-Infinity")) or (
                isinstance(found, float) and not math.isfinite(found)
            ):
                seen.add("nan")
            elif isinstance(found, list | Obj | dict):
                seen.add("structured")
            elif isinstance(found, bool):
                seen.add("bool")

    @settings(FUZZ, max_examples=100)
    @given(document=json_documents())
    def documents(document: Any) -> None:
        walk(document)

    @settings(FUZZ, max_examples=300)
    @given(request_id=response_ids)
    def ids(request_id: Any) -> None:
        walk(Obj([("id", request_id)]))

    documents()
    assert {"pending-int", "pending-str"} <= seen, seen
    ids()
    assert seen == {"pending-int", "pending-str", "pending-float", "nan", "structured", "bool"}, seen
