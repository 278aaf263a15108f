"""
Property: a denied tool never runs, however the client writes the call
======================================================================

DESIGN.md §9 and the fail-closed contract: the middleware never decides from
a narrower reading of the request than the app may use. Against a *lenient
app* (``tests.fail_closed_plugins.LenientApp``: ``json.loads`` of the raw
body whatever the HTTP method or Content-Type, nested batches flattened, the
method compared after ``.replace("\\0", "").strip().lower()`` and collapsing
``//``), a plugin that denies the tool ``delete_everything`` must either
block every call of it or have the request refused: the app never executes
it. Generated: HTTP method in any case, Content-Type absent / JSON-ish /
not JSON / with parameters / in any case / several, UTF-8/16/32 with and
without BOM, key order, repeated keys (the last counts), whitespace and
escapes, method spellings the lenient app accepts, alone or in a batch among
other messages, ids of every valid type. Each example is first sent to the
bare app, which must execute the denied tool (else the example proves
nothing).

Second property: with only plugins that change nothing (sync and async, on
every hook), valid traffic passes byte for byte both ways: any HTTP method
and Content-Type, any encoding, requests with unique ids, and JSON or
event-stream responses answering them, split in arbitrary chunks.

Driven in process: ``PluginMiddleware`` with a hand-made ASGI scope and
``receive``/``send``; ``WSGIPluginMiddleware`` through werkzeug's test
``Client``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mcp_plugin_mw as mw
from tests.fail_closed_plugins import ALLOWED_TOOL, DENIED_TOOL, LenientApp, ScriptedApp, asgi_behind, wsgi_behind
from tests.fail_closed_wire import (
    ENCODINGS,
    JSONISH_TYPES,
    OTHER_TYPES,
    Obj,
    Raw,
    Style,
    arguments,
    content_type_headers,
    cut_points,
    encode,
    http_methods,
    json_values,
    leading_whitespace,
    method_spellings,
    random_case,
    request_ids,
    run_asgi,
    run_wsgi,
    small_ints,
    split,
    styles,
    word_ids,
    write,
    wsgi_environ,
)

pytestmark = pytest.mark.timeout(300)

NOOP_CONFIG = {
    "plugins": [
        {"name": "noop", "kind": "tests.fail_closed_plugins.NoopEverywhere"},
        {"name": "async-noop", "kind": "tests.fail_closed_plugins.AsyncNoopEverywhere"},
    ]
}

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# ----------------------------------------------------------------------
# Strategies: the denied call, written every way the lenient app reads it
# ----------------------------------------------------------------------

METHOD_DECOYS = ["tools/list", "ping", "tools/callx", "tool/call", 5, None, ["tools/call"]]


@st.composite
def with_decoys(draw: st.DrawFn, pairs: list[tuple[str, Any]], decoys: dict[str, st.SearchStrategy[Any]]) -> Obj:
    """``pairs`` in any order, some keys first given other values (``json.loads`` keeps the last)."""
    ordered = draw(st.permutations(pairs))
    out: list[tuple[str, Any]] = []
    for key, value in ordered:
        if key in decoys and draw(st.integers(0, 3)) == 3:
            # The decoy goes anywhere before the value that counts.
            at = draw(st.integers(0, len(out)))
            out.insert(at, (key, draw(decoys[key])))
        out.append((key, value))
    return Obj(out)


@st.composite
def denied_calls(draw: st.DrawFn) -> Obj:
    """A ``tools/call`` of the denied tool that the lenient app executes."""
    params_pairs: list[tuple[str, Any]] = [("name", DENIED_TOOL)]
    shape = draw(st.sampled_from(["args", "none", "null", "empty", "meta"]))
    if shape == "args":
        params_pairs.append(("arguments", draw(arguments)))
    elif shape == "null":
        params_pairs.append(("arguments", None))
    elif shape == "empty":
        params_pairs.append(("arguments", {}))
    elif shape == "meta":
        params_pairs += [("arguments", {"all": True}), ("_meta", {"progressToken": draw(small_ints)})]
    params = draw(
        with_decoys(
            params_pairs,
            {"name": st.sampled_from([ALLOWED_TOOL, "", "safe"]), "arguments": st.just({"x": 1})},
        )
    )
    pairs: list[tuple[str, Any]] = [
        ("id", draw(request_ids)),
        ("method", draw(method_spellings())),
        ("params", params),
    ]
    if draw(st.integers(0, 4)) != 4:
        pairs.append(("jsonrpc", "2.0"))
    return draw(
        with_decoys(
            pairs,
            {
                "method": st.sampled_from(METHOD_DECOYS),
                "params": st.just(Obj([("name", ALLOWED_TOOL)])),
                "id": request_ids,
            },
        )
    )


def other_messages(request_id: Any) -> st.SearchStrategy[Any]:
    """Messages a batch may carry besides the denied call."""
    return st.sampled_from(
        [
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": ALLOWED_TOOL, "arguments": {}},
            },
            {"jsonrpc": "2.0", "id": request_id, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": request_id, "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
            {"jsonrpc": "2.0", "id": request_id, "result": {}},
            {"jsonrpc": "2.0", "id": request_id, "method": "prompts/get", "params": {"name": "p"}},
            {"jsonrpc": "2.0", "id": request_id, "method": "resources/read", "params": {"uri": "file:///a"}},
        ]
    )


@st.composite
def denied_documents(draw: st.DrawFn) -> Any:
    call = draw(denied_calls())
    if not draw(st.booleans()):
        return call
    others = [draw(other_messages(f"other-{n}")) for n in range(draw(st.integers(0, 3)))]
    return draw(st.permutations([call, *others]))


@dataclasses.dataclass
class Sent:
    """One request as the client sends it."""

    method: str
    content_types: list[str]
    encoding: str
    body: bytes
    cuts: list[int]

    def headers(self) -> list[tuple[str, str]]:
        headers = [("content-type", value) for value in self.content_types]
        return [*headers, ("content-length", str(len(self.body)))]


@st.composite
def denied_requests(draw: st.DrawFn) -> Sent:
    document = draw(denied_documents())
    encoding = draw(st.sampled_from(list(ENCODINGS)))
    body = encode(draw(leading_whitespace) + write(document, draw(styles)), encoding)
    return Sent(
        method=draw(http_methods),
        content_types=draw(content_type_headers()),
        encoding=encoding,
        body=body,
        cuts=draw(cut_points),
    )


# ----------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------


def send_asgi(app: Any, loop: asyncio.AbstractEventLoop, sent: Sent) -> Any:
    return loop.run_until_complete(run_asgi(app, sent.method, sent.headers(), split(sent.body, sent.cuts)))


def send_wsgi(app: Any, sent: Sent) -> Any:
    return run_wsgi(app, wsgi_environ(sent.method, sent.content_types, sent.body))


# ----------------------------------------------------------------------
# Property 1: the denied tool never runs
# ----------------------------------------------------------------------


# Found by this property: the body sniffed in a first message of whitespace only, read as the declared charset.
LEADING_SPACES = b'    {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything"}}'


@SETTINGS
@given(sent=denied_requests())
@example(sent=Sent("POST", ["application/json; charset=utf-16"], "utf-8", LEADING_SPACES, [4]))
@example(
    sent=Sent(
        "POST",
        ["application/json; charset=utf-32"],
        "utf-16-le-bom",
        b"\xff\xfe" + LEADING_SPACES.decode().encode("utf-16-le"),
        [4],
    )
)
def test_asgi_denied_tool_never_runs(
    lenient: LenientApp, deny_asgi: mw.PluginMiddleware, loop: asyncio.AbstractEventLoop, sent: Sent
) -> None:
    lenient.reset()
    send_asgi(lenient, loop, sent)
    assert DENIED_TOOL in lenient.executed, "the example does not reach the denied tool even without the middleware"
    lenient.reset()
    response = send_asgi(deny_asgi, loop, sent)
    assert DENIED_TOOL not in lenient.executed, (response.status, response.body[:300])


@SETTINGS
@given(sent=denied_requests())
def test_wsgi_denied_tool_never_runs(lenient: LenientApp, deny_wsgi: mw.WSGIPluginMiddleware, sent: Sent) -> None:
    lenient.reset()
    send_wsgi(lenient.wsgi, sent)
    assert DENIED_TOOL in lenient.executed, "the example does not reach the denied tool even without the middleware"
    lenient.reset()
    response = send_wsgi(deny_wsgi, sent)
    assert DENIED_TOOL not in lenient.executed, (response.status, response.body[:300])


# ----------------------------------------------------------------------
# Property 2: plugins that change nothing change no byte
# ----------------------------------------------------------------------

MAPPED = ["tools/call", "prompts/get", "resources/read"]


def _id_key(value: Any) -> Any:
    """Ids the way an MCP client matches them: 5 and "5" are one request."""
    return str(value)


unique_ids = st.lists(
    st.one_of(small_ints, word_ids, st.integers(2**64, 2**70), small_ints.map(str)),
    min_size=1,
    max_size=4,
    unique_by=_id_key,
)


@st.composite
def valid_request(draw: st.DrawFn, request_id: Any) -> Obj:
    method = draw(st.sampled_from([*MAPPED, "tools/list", "ping"]))
    params: dict[str, Any] | None
    if method == "tools/call":
        params = {"name": draw(st.sampled_from([ALLOWED_TOOL, "search", DENIED_TOOL])), "arguments": draw(arguments)}
    elif method == "prompts/get":
        params = {"name": "greet", "arguments": {"who": draw(st.text(max_size=5, alphabet="abc"))}}
    elif method == "resources/read":
        params = {"uri": "file:///" + draw(word_ids)}
    else:
        params = None
    pairs: list[tuple[str, Any]] = [("jsonrpc", "2.0"), ("id", request_id), ("method", method)]
    if params is not None:
        pairs.append(("params", Obj([(key, value) for key, value in params.items()])))
    return Obj(draw(st.permutations(pairs)))


@dataclasses.dataclass
class Exchange:
    sent: Sent
    status: int
    response_headers: list[tuple[str, str]]
    response_chunks: list[bytes]

    @property
    def response(self) -> bytes:
        return b"".join(self.response_chunks)


def _result(draw: st.DrawFn, method: str) -> Any:
    if method == "tools/call":
        return {"content": [{"type": "text", "text": draw(st.text(max_size=10))}], "isError": draw(st.booleans())}
    if method == "prompts/get":
        return {"messages": [{"role": "user", "content": {"type": "text", "text": draw(st.text(max_size=10))}}]}
    if method == "resources/read":
        return {"contents": [{"uri": "file:///a", "text": draw(st.text(max_size=10))}]}
    return draw(st.dictionaries(st.text(max_size=5), json_values, max_size=2))


def _sse(draw: st.DrawFn, datas: list[str]) -> bytes:
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = []
    if draw(st.booleans()):
        out.append(": stream opened" + end + end)
    for data in datas:
        if draw(st.booleans()):
            out.append("event: message" + end)
        if draw(st.booleans()):
            out.append(f"id: {draw(st.integers(0, 99))}" + end)
        out.append("".join("data:" + draw(st.sampled_from(["", " "])) + line + end for line in data.split("\n")))
        out.append(end)
    return "".join(out).encode()


# The charset label that names each encoding exactly (with a BOM, the label without byte order).
CHARSET_LABELS = {
    "utf-8": "utf-8",
    "utf-8-bom": "utf-8",
    "utf-16-le": "utf-16le",
    "utf-16-be": "utf-16be",
    "utf-16-le-bom": "utf-16",
    "utf-16-be-bom": "utf-16",
    "utf-32-le": "utf-32le",
    "utf-32-be": "utf-32be",
    "utf-32-le-bom": "utf-32",
    "utf-32-be-bom": "utf-32",
}


@st.composite
def labelled_content_types(draw: st.DrawFn, encoding: str) -> list[str]:
    """None or one Content-Type whose charset, if any, names the body's encoding family."""
    if draw(st.integers(0, 4)) == 4:
        return []
    base = draw(st.sampled_from(JSONISH_TYPES + OTHER_TYPES))
    family = CHARSET_LABELS[encoding]
    parameter = draw(st.sampled_from(["", "; version=2", f"; charset={family}", f'; charset="{family.upper()}"']))
    value = base + parameter
    return [draw(random_case(value)) if draw(st.booleans()) else value]


@st.composite
def valid_exchanges(draw: st.DrawFn) -> Exchange:
    ids = draw(unique_ids)
    requests = [draw(valid_request(request_id)) for request_id in ids]
    notifications = [
        Obj([("jsonrpc", "2.0"), ("method", "notifications/initialized")]) for _ in range(draw(st.integers(0, 1)))
    ]
    if len(requests) == 1 and not notifications and draw(st.booleans()):
        document: Any = requests[0]
    else:
        document = draw(st.permutations([*requests, *notifications]))
    encoding = draw(st.sampled_from(list(ENCODINGS)))
    body = encode(draw(leading_whitespace) + write(document, draw(styles)), encoding)
    sent = Sent(
        method=draw(http_methods),
        content_types=draw(labelled_content_types(encoding)),
        encoding=encoding,
        body=body,
        cuts=draw(cut_points),
    )
    replies = [
        {"jsonrpc": "2.0", "id": request.get("id"), "result": _result(draw, request.get("method"))}
        for request in requests
    ]
    reply_style = draw(styles)
    if draw(st.booleans()):
        payload: Any = replies if isinstance(document, list) else replies[0]
        response = write(payload, reply_style).encode()
        headers = [
            ("content-type", draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))),
            ("content-length", str(len(response))),
        ]
    else:
        datas = [write(reply, Style(seed=reply_style.seed, escape=reply_style.escape)) for reply in replies]
        datas += [
            '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}'
        ] * draw(st.integers(0, 1))
        response = _sse(draw, draw(st.permutations(datas)))
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
    chunks = [chunk for chunk in split(response, draw(st.lists(st.integers(0, 10_000), max_size=5))) if chunk]
    return Exchange(sent, 200, headers, chunks)


@pytest.fixture(scope="module")
def scripted() -> ScriptedApp:
    return ScriptedApp()


@pytest.fixture(scope="module")
def noop_asgi(scripted: ScriptedApp, loop: asyncio.AbstractEventLoop) -> Iterator[mw.PluginMiddleware]:
    yield from asgi_behind(scripted, NOOP_CONFIG, loop)


@pytest.fixture(scope="module")
def noop_wsgi(scripted: ScriptedApp) -> Iterator[mw.WSGIPluginMiddleware]:
    yield from wsgi_behind(scripted.wsgi, NOOP_CONFIG)


def _header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


@SETTINGS
@given(exchange=valid_exchanges())
def test_asgi_noop_plugins_pass_bytes(
    scripted: ScriptedApp, noop_asgi: mw.PluginMiddleware, loop: asyncio.AbstractEventLoop, exchange: Exchange
) -> None:
    scripted.script = (exchange.status, exchange.response_headers, exchange.response_chunks)
    scripted.received = None
    response = send_asgi(noop_asgi, loop, exchange.sent)
    assert scripted.received == exchange.sent.body
    assert response.status == exchange.status
    assert response.body == exchange.response
    assert response.header("content-type") == _header(exchange.response_headers, "content-type")


@SETTINGS
@given(exchange=valid_exchanges(), terminated=st.booleans())
def test_wsgi_noop_plugins_pass_bytes(
    scripted: ScriptedApp, noop_wsgi: mw.WSGIPluginMiddleware, exchange: Exchange, terminated: bool
) -> None:
    scripted.script = (exchange.status, exchange.response_headers, exchange.response_chunks)
    scripted.received = None
    sent = exchange.sent
    environ = wsgi_environ(sent.method, sent.content_types, sent.body, framing="terminated" if terminated else "length")
    response = run_wsgi(noop_wsgi, environ)
    assert scripted.received == sent.body
    assert response.status == exchange.status
    assert response.body == exchange.response
    assert response.header("content-type") == _header(exchange.response_headers, "content-type")


# ----------------------------------------------------------------------
# The generators produce what the properties claim
# ----------------------------------------------------------------------


def test_generated_denied_calls_cover_the_axes() -> None:
    """Guard against a vacuous property: the generated requests do vary along every axis."""
    seen: dict[str, set[Any]] = {"encoding": set(), "method": set(), "batch": set(), "spelling": set(), "ctype": set()}

    @settings(max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(sent=denied_requests())
    def run(sent: Sent) -> None:
        seen["encoding"].add(sent.encoding)
        seen["method"].add(sent.method.upper())
        seen["ctype"].add(len(sent.content_types))
        document = json.loads(sent.body)
        seen["batch"].add(isinstance(document, list))
        text = sent.body.decode(ENCODINGS[sent.encoding][0]).lstrip("\ufeff")
        seen["spelling"].add("tools/call" in text or "tools\\/call" in text)

    run()
    assert seen["encoding"] == set(ENCODINGS), seen
    assert seen["method"] == {"POST", "PUT", "PATCH", "GET", "DELETE", "OPTIONS"}, seen
    assert seen["batch"] == {True, False}, seen
    assert seen["ctype"] == {0, 1, 2}, seen
    assert seen["spelling"] == {True, False}, seen


def test_writer_round_trips() -> None:
    """The writer's output is what ``json.loads`` reads, repeated keys and literals included."""
    document = Obj([("a", 1), ("a", 2), ("b", [Raw("NaN"), "x/\u00e9\U0001f600\0"]), ("c", Obj([]))])
    for escape in (0.0, 0.5, 1.0):
        style = Style(seed=3, whitespace=" \t\r\n", max_run=3, escape=escape, escape_slash=True, ensure_ascii=True)
        loaded = json.loads(write(document, style))
        assert loaded["a"] == 2
        assert loaded["b"][1] == "x/\u00e9\U0001f600\0"
        assert loaded["c"] == {}
