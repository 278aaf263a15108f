"""
Soak: the official MCP SDK server behind the middleware, good and hostile traffic
================================================================================

Serves an ``MCPServer`` app (stateless, JSON responses) wrapped by
``PluginMiddleware`` with three built-in plugins, from uvicorn in a child
process on 127.0.0.1 (a free port), and sends it ``--requests`` requests over
one pooled ``httpx.AsyncClient`` (plus a raw socket for what httpx cannot
send), ``--concurrency`` at a time:

* ``tool_policy`` denies ``delete_everything``;
* ``deny_list`` blocks the phrase ``project falcon``;
* ``pii_filter`` masks e-mail addresses (``[REDACTED:EMAIL]``).

The mix is drawn from a seeded random generator, request by request, so a run
is the same whatever the concurrency:

* good: ``tools/call echo`` (the text must come back exactly), ``tools/call
  contact`` (a result carrying an e-mail: it must come back masked),
  ``tools/list``;
* hostile: one of three targets (the denied tool, the e-mail tool, the
  deny-listed phrase) under one of many disguises: Content-Type variants,
  the HTTP method in lower case, JSON-RPC method and tool-name spellings,
  id types, batches, BOMs, UTF-16/32 bodies, duplicate keys, malformed JSON,
  chunked and gzipped bodies, path spellings, 2026-07-28 headers that
  disagree with the body.

A hostile request passes when its answer is not a successful result of the
denied tool, carries no raw e-mail address and no deny-listed phrase (for the
phrase target: no successful ``tools/call`` result at all); a JSON-RPC error
or any 4xx is fine. The server's tools count what they do in shared memory
(a ``multiprocessing.Value``) and a log file: the denied tool must never run.

Counted: errors (transport errors, timeouts, 5xx), wrong answers (a good
request answered wrongly, a hostile one that got through), side effects of the
denied tool. Also the server process's RSS at start, middle and end, and
requests per second. Exit status: 0 clean, 1 any error, wrong answer or side
effect, 2 clean but stopped by ``--max-seconds`` before the last request.

    python benchmarks/soak.py [--requests 100000] [--concurrency 16]
        [--max-seconds 1500] [--seed 1]

Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gzip
import json
import logging
import multiprocessing
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

DENIED = "delete_everything"
SENTINEL = "everything-deleted-7c1e"
"""Text only a successful run of the denied tool returns."""
DENY_TERM = "project falcon"
MASK = "[REDACTED:EMAIL]"
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
TOOL_NAMES = {"echo", "contact", DENIED}

PLUGINS: dict[str, Any] = {
    "plugins": [
        {"name": "policy", "kind": "tool_policy", "config": {"deny_tools": [DENIED]}},
        {"name": "banned", "kind": "deny_list", "config": {"terms": [DENY_TERM]}},
        {
            "name": "pii",
            "kind": "pii_filter",
            "config": {
                "strategy": "redact",
                "detect": {"ssn": False, "credit_card": False, "phone": False, "ip_address": False, "iban": False},
            },
        },
    ]
}

ACCEPT = "application/json, text/event-stream"
JSON_HEADERS = [("content-type", "application/json"), ("accept", ACCEPT)]
WORD_TEXT = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu café naïve über 日本 ☃ ünïcødé"
)
WORDS = WORD_TEXT.split()
NAMES = ["ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken"]


# --------------------------------------------------------------------------- server (child process)


JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(/)")


def carries(body: bytes) -> bool:
    """Whether a request body still names the denied tool or holds the phrase, in any encoding or escaping."""
    if body[:2] == b"\x1f\x8b":
        with contextlib.suppress(Exception):
            body = gzip.decompress(body)
    for encoding in ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
        text = body.decode(encoding, errors="ignore")
        text = JSON_ESCAPE.sub(lambda m: m.group(2) or chr(int(m.group(1), 16)), text)
        if DENIED in text or DENY_TERM in text.lower():
            return True
    return False


class Witness:
    """Between the middleware and the SDK app: notes each hostile request that reached the app.

    Logs ``<tag>\t<1 if the body the app got still carries the denied tool or the phrase, else 0>``.
    """

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.log = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open for the process's life

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        tag = None
        if scope["type"] == "http":
            tag = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-soak-hostile"), None)
        if tag is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        pending: list[Any] = []
        for _ in range(1_000_000):  # one message per body chunk
            message = await receive()
            if message["type"] != "http.request":
                pending.append(message)
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        self.log.write(f"{tag}\t{int(carries(body))}\n")
        pending.insert(0, {"type": "http.request", "body": body, "more_body": False})

        async def replay() -> Any:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


def build_app(counter: Any, effects_path: str, reached_path: str, bare: bool) -> Any:
    """The SDK server, its tools recording side effects, behind the middleware (unless ``bare``)."""
    from mcp.server.mcpserver import MCPServer

    import mcp_plugin_mw as mw

    server = MCPServer("soak", log_level="ERROR")

    @server.tool()
    def echo(text: str) -> str:
        return text

    @server.tool()
    def contact(name: str) -> str:
        return f"reach {name} at {name}.{len(name)}@example.com"

    @server.tool()
    def delete_everything(token: str = "") -> str:
        with counter.get_lock():
            counter.value += 1
        with open(effects_path, "a", encoding="utf-8") as log:
            log.write(f"{token!r}\n")
        return SENTINEL

    inner = Witness(server.streamable_http_app(json_response=True, stateless_http=True), reached_path)
    return inner if bare else mw.PluginMiddleware(inner, config=PLUGINS)


def serve(conn: Any, counter: Any, effects_path: str, reached_path: str, bare: bool) -> None:
    """Child process: bind a free port on 127.0.0.1, report it, run uvicorn until SIGTERM."""
    import uvicorn

    logging.basicConfig(level=logging.ERROR)
    for name in ("mcp", "httpx", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.ERROR)
    app = build_app(counter, effects_path, reached_path, bare)
    import mcp_plugin_mw

    print(
        f"server: mcp_plugin_mw from {os.path.dirname(mcp_plugin_mw.__file__)}"
        f"{' (bare: middleware NOT in front)' if bare else ''}",
        file=sys.stderr,
        flush=True,
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    conn.send(sock.getsockname()[1])
    conn.close()
    config = uvicorn.Config(
        app, log_level="error", access_log=False, lifespan="on", http="h11", timeout_keep_alive=60, backlog=1024
    )
    uvicorn.Server(config).run(sockets=[sock])


def rss_of(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- requests


@dataclass
class Spec:
    kind: str  # "good" or "hostile"
    category: str  # good: echo/contact/list; hostile: the disguise
    target: str = ""  # hostile: denied / pii / word
    method: str = "POST"
    path: str = "/mcp"
    headers: list[tuple[str, str]] = field(default_factory=lambda: list(JSON_HEADERS))
    body: bytes = b""
    chunks: list[bytes] | None = None  # sent with Transfer-Encoding: chunked
    raw: bool = False  # send on a raw socket (httpx normalises method and path)
    expect: Any = None  # good: what to compare against


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def message(id_json: str, name_json: str, args_json: str, method_json: str = '"tools/call"') -> str:
    return (
        f'{{"jsonrpc":"2.0","id":{id_json},"method":{method_json},'
        f'"params":{{"name":{name_json},"arguments":{args_json}}}}}'
    )


def target_call(target: str, tag: str, rng: random.Random) -> tuple[str, str]:
    """(name JSON, arguments JSON) of a hostile target."""
    if target == "denied":
        return dumps(DENIED), dumps({"token": tag})
    if target == "pii":
        return '"contact"', dumps({"name": rng.choice(NAMES)})
    return '"echo"', dumps({"text": f"status of {DENY_TERM} today {rng.randrange(1000)}"})


def with_ct(spec_headers: list[tuple[str, str]], *content_types: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in spec_headers if k != "content-type"] + [("content-type", c) for c in content_types]


Disguise = Callable[[str, str, str, random.Random], Spec]
"""(target, name JSON, arguments JSON, rng) -> a hostile request."""


def plain(body: str, headers: list[tuple[str, str]] | None = None, **kw: Any) -> Spec:
    return Spec("hostile", "", body=body.encode("utf-8"), headers=headers or list(JSON_HEADERS), **kw)


def d_ct(*content_types: str) -> Disguise:
    return lambda t, n, a, r: plain(message("1", n, a), with_ct(JSON_HEADERS, *content_types))


def d_id(id_json: str) -> Disguise:
    return lambda t, n, a, r: plain(message(id_json, n, a))


def d_rpc_method(method: str) -> Disguise:
    return lambda t, n, a, r: plain(message("1", n, a, method_json=method))


def d_name(transform: Callable[[str], str]) -> Disguise:
    return lambda t, n, a, r: plain(message("1", transform(n), a))


def d_encoded(encoding: str, content_type: str, bom: bytes = b"") -> Disguise:
    def make(t: str, n: str, a: str, r: random.Random) -> Spec:
        spec = plain(message("1", n, a), with_ct(JSON_HEADERS, content_type))
        spec.body = bom + message("1", n, a).encode(encoding)
        return spec

    return make


def d_raw(method: str = "POST", path: str = "/mcp") -> Disguise:
    return lambda t, n, a, r: plain(message("1", n, a), method=method, path=path, raw=True)


def d_body(make_body: Callable[[str, str], str]) -> Disguise:
    return lambda t, n, a, r: plain(make_body(n, a))


def d_bytes(make_body: Callable[[bytes], bytes]) -> Disguise:
    def make(t: str, n: str, a: str, r: random.Random) -> Spec:
        spec = plain(message("1", n, a))
        spec.body = make_body(spec.body)
        return spec

    return make


def d_chunked(t: str, n: str, a: str, r: random.Random) -> Spec:
    spec = plain(message("1", n, a))
    size = r.randrange(1, 9)
    spec.chunks = [spec.body[i : i + size] for i in range(0, len(spec.body), size)]
    return spec


def d_gzip(t: str, n: str, a: str, r: random.Random) -> Spec:
    spec = plain(message("1", n, a), [*JSON_HEADERS, ("content-encoding", "gzip")])
    spec.body = gzip.compress(spec.body, mtime=0)
    return spec


META_2026 = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def d_2026(header_method: str | None, header_name: str | None) -> Disguise:
    """A 2026-07-28 request; ``None`` means the header matches the body."""

    def make(t: str, n: str, a: str, r: random.Random) -> Spec:
        body = (
            f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{n},"arguments":{a},'
            f'"_meta":{dumps(META_2026)}}}}}'
        )
        headers = [
            *JSON_HEADERS,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", header_method or "tools/call"),
            ("mcp-name", header_name or json.loads(n)),
        ]
        return plain(body, headers)

    return make


def d_batch(shape: str) -> Disguise:
    listing = '{"jsonrpc":"2.0","id":900,"method":"tools/list"}'

    def make(t: str, n: str, a: str, r: random.Random) -> Spec:
        call = message("1", n, a)
        body = {
            "single": f"[{call}]",
            "pair": f"[{listing},{call}]",
            "same-id": f"[{call},{message('1', dumps('echo'), dumps({'text': 'x'}))}]",
            "nested": f"[[{call}]]",
            "2025-03-26": f"[{call}]",
        }[shape]
        headers = JSON_HEADERS + ([("mcp-protocol-version", "2025-03-26")] if shape == "2025-03-26" else [])
        return plain(body, headers)

    return make


def escape_all(name_json: str) -> str:
    """``"delete_everything"`` written entirely as ``\\uXXXX`` escapes."""
    return '"' + "".join(f"\\u{ord(c):04x}" for c in json.loads(name_json)) + '"'


def escape_args(a: str) -> str:
    """The arguments with every letter 'o' written as an escape."""
    return a.replace("o", "\\u006f")


DISGUISES: dict[str, tuple[Disguise, float]] = {
    # baseline: the plain request
    "plain": (d_body(lambda n, a: message("1", n, a)), 2.0),
    # Content-Type
    "ct/application/json-rpc": (d_ct("application/json-rpc"), 1.0),
    "ct/text/plain": (d_ct("text/plain"), 1.0),
    "ct/none": (d_ct(), 1.0),
    "ct/json;charset=utf-8": (d_ct("application/json; charset=utf-8"), 1.0),
    "ct/JSON upper": (d_ct("Application/JSON"), 1.0),
    "ct/+json suffix": (d_ct("application/vnd.api+json"), 1.0),
    "ct/json;charset=latin-1": (d_ct("application/json; charset=latin-1"), 1.0),
    "ct/two headers": (d_ct("text/plain", "application/json"), 1.0),
    "ct/two headers json first": (d_ct("application/json", "text/plain"), 1.0),
    # HTTP method and path spellings (raw socket)
    "http/method post": (d_raw(method="post"), 1.0),
    "http/method Post": (d_raw(method="Post"), 1.0),
    "http/path /mcp/": (d_raw(path="/mcp/"), 1.0),
    "http/path /mcp?x=1": (d_raw(path="/mcp?x=1"), 1.0),
    "http/path //mcp": (d_raw(path="//mcp"), 1.0),
    "http/path /%6dcp": (d_raw(path="/%6dcp"), 1.0),
    "http/path /MCP": (d_raw(path="/MCP"), 1.0),
    # JSON-RPC method spellings
    "rpc/Tools/Call": (d_rpc_method('"Tools/Call"'), 1.0),
    "rpc/TOOLS/CALL": (d_rpc_method('"TOOLS/CALL"'), 1.0),
    "rpc/'tools/call '": (d_rpc_method('"tools/call "'), 1.0),
    "rpc/escaped slash": (d_rpc_method('"tools\\/call"'), 1.0),
    "rpc/all escaped": (d_rpc_method(escape_all('"tools/call"')), 1.0),
    "rpc/method missing jsonrpc": (d_body(lambda n, a: message("1", n, a).replace('"jsonrpc":"2.0",', "")), 1.0),
    "rpc/jsonrpc 1.0": (d_body(lambda n, a: message("1", n, a).replace('"2.0"', '"1.0"', 1)), 1.0),
    # tool-name spellings
    "name/Case": (d_name(lambda n: dumps(json.loads(n).title())), 1.0),
    "name/trailing space": (d_name(lambda n: dumps(json.loads(n) + " ")), 1.0),
    "name/all escaped": (d_name(escape_all), 1.0),
    "name/not a string": (d_name(lambda n: f"[{n}]"), 1.0),
    # ids
    "id/5": (d_id("5"), 1.0),
    'id/"5"': (d_id('"5"'), 1.0),
    "id/0": (d_id("0"), 1.0),
    "id/2**70": (d_id(str(2**70)), 1.0),
    "id/-2**63": (d_id(str(-(2**63))), 1.0),
    "id/5.0": (d_id("5.0"), 1.0),
    "id/1e3": (d_id("1e3"), 1.0),
    "id/long string": (d_id(dumps("x" * 300)), 1.0),
    "id/null": (d_id("null"), 1.0),
    "id/true": (d_id("true"), 1.0),
    "id/object": (d_id('{"a":1}'), 1.0),
    "id/missing (notification)": (d_body(lambda n, a: message("1", n, a).replace('"id":1,', "")), 1.0),
    # batches
    "batch/single": (d_batch("single"), 1.0),
    "batch/with tools/list": (d_batch("pair"), 1.0),
    "batch/same id twice": (d_batch("same-id"), 1.0),
    "batch/nested": (d_batch("nested"), 1.0),
    "batch/2025-03-26 header": (d_batch("2025-03-26"), 1.0),
    # encodings
    "enc/utf-8 BOM": (d_encoded("utf-8", "application/json", b"\xef\xbb\xbf"), 1.0),
    "enc/utf-16 BOM": (d_encoded("utf-16", "application/json"), 1.0),
    "enc/utf-16 charset": (d_encoded("utf-16-le", "application/json; charset=utf-16le"), 1.0),
    "enc/utf-16be no BOM": (d_encoded("utf-16-be", "application/json"), 1.0),
    "enc/utf-32 BOM": (d_encoded("utf-32", "application/json"), 1.0),
    # duplicate keys (the last one wins in most parsers)
    "dup/name target last": (d_body(lambda n, a: message("1", f'"echo","name":{n}', a)), 1.0),
    "dup/name target first": (d_body(lambda n, a: message("1", f'{n},"name":"echo"', a)), 1.0),
    "dup/method": (
        d_body(lambda n, a: message("1", n, a, method_json='"tools/list","method":"tools/call"')),
        1.0,
    ),
    "dup/params": (
        d_body(lambda n, a: message("1", n, a).replace('"params":', '"params":{"name":"echo"},"params":', 1)),
        1.0,
    ),
    "dup/arguments": (
        d_body(lambda n, a: message("1", n, '{"text":"x"},"arguments":' + a)),
        1.0,
    ),
    # malformed JSON
    "bad/truncated": (d_bytes(lambda b: b[:-1]), 1.0),
    "bad/trailing garbage": (d_bytes(lambda b: b + b" xyz"), 1.0),
    "bad/two objects": (d_bytes(lambda b: b + b"\n" + b), 1.0),
    "bad/trailing comma": (d_bytes(lambda b: b[:-1] + b",}"), 1.0),
    "bad/NaN argument": (
        d_body(lambda n, a: message("1", n, a[:-1] + (',"n":NaN}' if a != "{}" else '"n":NaN}'))),
        1.0,
    ),
    "bad/single quotes": (d_bytes(lambda b: b.replace(b'"', b"'")), 1.0),
    "bad/nul byte": (d_bytes(lambda b: b + b"\x00"), 1.0),
    "bad/leading whitespace": (d_bytes(lambda b: b"\r\n\t " * 64 + b), 1.0),
    "bad/args escaped": (d_body(lambda n, a: message("1", n, escape_args(a))), 1.0),
    "bad/args not an object": (d_body(lambda n, a: message("1", n, f"[{a}]")), 1.0),
    "bad/params a list": (
        d_body(lambda n, a: f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[{n},{a}]}}'),
        1.0,
    ),
    # transfer
    "xfer/chunked": (d_chunked, 1.0),
    "xfer/gzip": (d_gzip, 1.0),
    "xfer/300 KB padding": (d_bytes(lambda b: b[:-2] + b',"pad":"' + b"p" * 300_000 + b'"}}'), 0.3),
    "xfer/1.1 MB body": (d_bytes(lambda b: b[:-2] + b',"pad":"' + b"p" * 1_100_000 + b'"}}'), 0.1),
    # 2026-07-28 headers
    "2026/headers match": (d_2026(None, None), 1.0),
    "2026/Mcp-Name echo": (d_2026(None, "echo"), 1.0),
    "2026/Mcp-Method tools/list": (d_2026("tools/list", None), 1.0),
}
TARGETS = ("denied", "pii", "word")


def make_spec(seed: int, index: int, hostile_share: float) -> Spec:
    """Request ``index`` of the run: the same for a given seed, whatever the concurrency."""
    rng = random.Random(seed * 1_000_003 + index)
    if rng.random() < hostile_share:
        names = list(DISGUISES)
        disguise = rng.choices(names, weights=[DISGUISES[k][1] for k in names])[0]
        target = rng.choice(TARGETS)
        name_json, args_json = target_call(target, f"{disguise}/{target}#{index}", rng)
        spec = DISGUISES[disguise][0](target, name_json, args_json, rng)
        spec.category, spec.target = disguise, target
        spec.headers = [*spec.headers, ("x-soak-hostile", f"{disguise}/{target}#{index}")]
        return spec
    draw = rng.random()
    if draw < 0.55:
        words = [rng.choice(WORDS) for _ in range(rng.randrange(1, 12))] + [str(rng.randrange(1000))]
        text = " ".join(words)
        body = dumps(
            {
                "jsonrpc": "2.0",
                "id": index,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}},
            }
        )
        return Spec("good", "echo", body=body.encode("utf-8"), expect=(index, text))
    if draw < 0.85:
        who = rng.choice(NAMES)
        body = dumps(
            {
                "jsonrpc": "2.0",
                "id": str(index),
                "method": "tools/call",
                "params": {"name": "contact", "arguments": {"name": who}},
            }
        )
        return Spec("good", "contact", body=body.encode("utf-8"), expect=(str(index), f"reach {who} at {MASK}"))
    body = dumps({"jsonrpc": "2.0", "id": index, "method": "tools/list"})
    return Spec("good", "tools/list", body=body.encode("utf-8"), expect=(index, None))


# --------------------------------------------------------------------------- checks


def decoded(body: bytes) -> tuple[str, Any]:
    """The body as text (with JSON escapes resolved where it parses) and as JSON (or None)."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text, None
    strings: list[str] = []

    def walk(value: Any, depth: int = 0) -> None:
        if depth > 64:
            return
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                strings.append(str(k))
                walk(v, depth + 1)
        elif isinstance(value, list):
            for v in value:
                walk(v, depth + 1)

    walk(parsed)
    return text + "\n" + "\n".join(strings), parsed


def messages(parsed: Any) -> list[dict[str, Any]]:
    items = parsed if isinstance(parsed, list) else [parsed]
    return [m for m in items if isinstance(m, dict)]


def leak(text: str) -> str | None:
    if SENTINEL in text:
        return "denied tool answered"
    if EMAIL_RE.search(text):
        return "raw e-mail"
    if DENY_TERM in text.lower():
        return "deny-listed phrase echoed"
    return None


def check(spec: Spec, status: int, body: bytes) -> tuple[str, str]:
    """("ok" | "wrong" | "error", why)."""
    if status >= 500:
        return "error", f"HTTP {status}"
    text, parsed = decoded(body)
    found = leak(text)
    if spec.kind == "hostile":
        if found:
            return "wrong", found
        if spec.target in ("denied", "word"):
            for m in messages(parsed):
                result = m.get("result")
                if isinstance(result, dict) and "content" in result and result.get("isError") is not True:
                    return "wrong", "denied tool succeeded" if spec.target == "denied" else "deny-listed call succeeded"
        return "ok", ""
    if found:
        return "wrong", found
    if status != 200 or not isinstance(parsed, dict):
        return "wrong", f"HTTP {status}"
    want_id, want = spec.expect
    if parsed.get("id") != want_id or not isinstance(parsed.get("result"), dict):
        return "wrong", "no result" if "error" in parsed else "wrong id"
    result = parsed["result"]
    if spec.category == "tools/list":
        names = {t.get("name") for t in result.get("tools", []) if isinstance(t, dict)}
        ok = {"echo", "contact"} <= names <= TOOL_NAMES
        return ("ok", "") if ok else ("wrong", f"tools {sorted(map(str, names))}")
    content = result.get("content")
    if result.get("isError") or content != [{"type": "text", "text": want}]:
        return "wrong", "echo differs" if spec.category == "echo" else "not masked as expected"
    return "ok", ""


# --------------------------------------------------------------------------- transport


async def send_raw(port: int, spec: Spec, timeout: float) -> tuple[int, bytes]:
    """One request on its own connection, exactly as written (method and path untouched)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        head = [f"{spec.method} {spec.path} HTTP/1.1", f"host: 127.0.0.1:{port}", "connection: close"]
        head += [f"{k}: {v}" for k, v in spec.headers]
        head.append(f"content-length: {len(spec.body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + spec.body)
        await writer.drain()
        data = b""
        while len(data) < 8_000_000:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    if any(line.lower().replace(" ", "") == "transfer-encoding:chunked" for line in lines[1:]):
        out, rest = b"", body
        for _ in range(100_000):
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    return status, body


async def chunks_of(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def send(client: httpx.AsyncClient, port: int, spec: Spec, timeout: float) -> tuple[int, bytes]:
    if spec.raw:
        return await send_raw(port, spec, timeout)
    content: Any = chunks_of(spec.chunks) if spec.chunks is not None else spec.body
    request = client.build_request(
        spec.method, f"http://127.0.0.1:{port}{spec.path}", headers=spec.headers, content=content
    )
    response = await client.send(request)
    return response.status_code, response.content


# --------------------------------------------------------------------------- run


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    wrong: int = 0
    errors: int = 0
    reached_app: int = 0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    by_target: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class Run:
    total: int
    done: int = 0
    next_index: int = 0
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    rss: dict[str, int | None] = field(default_factory=dict)
    rss_peak: int = 0
    started: float = 0.0
    examples: dict[str, str] = field(default_factory=dict)

    def record(self, spec: Spec, outcome: str, why: str, seconds: float) -> None:
        tally = self.tallies.setdefault((spec.kind, spec.category), Tally())
        tally.sent += 1
        if outcome == "ok":
            tally.ok += 1
        else:
            if outcome == "wrong":
                tally.wrong += 1
            else:
                tally.errors += 1
            tally.reasons[why] += 1
            if spec.target:
                tally.by_target[spec.target] += 1
            key = f"{spec.category}/{spec.target}" if spec.target else spec.category
            self.examples.setdefault(key, f"{outcome}: {why}")
        self.latencies.append(seconds)
        self.done += 1


async def worker(
    run: Run,
    client: httpx.AsyncClient,
    port: int,
    args: argparse.Namespace,
    deadline: float,
    on_middle: Callable[[], None],
) -> None:
    while run.next_index < run.total and time.monotonic() < deadline:
        index = run.next_index
        run.next_index += 1
        spec = make_spec(args.seed, index, args.hostile_share)
        started = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(send(client, port, spec, args.timeout), args.timeout)
            outcome, why = check(spec, status, body)
        except (TimeoutError, httpx.TimeoutException):
            outcome, why = "error", "timeout"
        except (httpx.HTTPError, OSError, ValueError, IndexError) as exc:
            outcome, why = "error", f"transport: {type(exc).__name__}"
        run.record(spec, outcome, why, time.perf_counter() - started)
        if run.done == run.total // 2:
            on_middle()
        if run.done % max(1, run.total // 10) == 0:
            tallies = run.tallies.values()
            print(
                f"  {run.done}/{run.total} done in {time.monotonic() - run.started:.0f} s, "
                f"{sum(t.errors for t in tallies)} errors, "
                f"{sum(t.wrong for t in tallies)} wrong",
                file=sys.stderr,
                flush=True,
            )


async def sample_rss(run: Run, pid: int) -> None:
    for _ in range(1_000_000):
        value = rss_of(pid)
        if value:
            run.rss_peak = max(run.rss_peak, value)
        await asyncio.sleep(1.0)


async def drive(args: argparse.Namespace, port: int, pid: int) -> tuple[Run, float, bool]:
    run = Run(total=args.requests)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(args.timeout)) as client:
        # Warm-up outside the count: the tools answer, imports are done.
        for index in range(min(50, args.requests)):
            spec = make_spec(args.seed + 1, index, 0.0)
            status, body = await send(client, port, spec, args.timeout)
            outcome, why = check(spec, status, body)
            if outcome != "ok" and not args.bare:
                raise SystemExit(f"warm-up request failed: {spec.category}: {why} ({status} {body[:200]!r})")
        run.rss["start"] = rss_of(pid)
        sampler = asyncio.create_task(sample_rss(run, pid))

        def on_middle() -> None:
            run.rss["middle"] = rss_of(pid)

        started = run.started = time.monotonic()
        deadline = started + args.max_seconds
        workers = [
            asyncio.create_task(worker(run, client, port, args, deadline, on_middle)) for _ in range(args.concurrency)
        ]
        await asyncio.gather(*workers)
        elapsed = time.monotonic() - started
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        run.rss["end"] = rss_of(pid)
    return run, elapsed, run.done < run.total


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1048576:.1f} MiB"


def category_of(tag: str) -> str:
    """``"<disguise>/<target>#<index>"`` -> ``"<disguise>"``."""
    return tag.rsplit("#", 1)[0].rsplit("/", 1)[0]


def report(
    run: Run,
    elapsed: float,
    incomplete: bool,
    side_effects: int,
    effect_tokens: list[str],
    reached: list[str],
    args: argparse.Namespace,
) -> int:
    tallies = run.tallies
    passed = [line.split("\t")[0] for line in reached if line.endswith("\t1")]
    for category, count in collections.Counter(map(category_of, passed)).items():
        if ("hostile", category) in tallies:
            tallies[("hostile", category)].reached_app = count
    good = {k[1]: t for k, t in tallies.items() if k[0] == "good"}
    hostile = {k[1]: t for k, t in tallies.items() if k[0] == "hostile"}
    errors = sum(t.errors for t in tallies.values())
    wrong = sum(t.wrong for t in tallies.values())
    print()
    print(
        f"Soak: {run.done} of {run.total} requests, concurrency {args.concurrency}, seed {args.seed}"
        f"{', BARE (no middleware: a control run)' if args.bare else ''}"
        f"{'  (INCOMPLETE: stopped by --max-seconds)' if incomplete else ''}"
    )
    print()
    print("'to app': hostile requests the middleware passed on to the SDK app with the denied tool's name or the")
    print("phrase still in the body; the app then refused them itself (or, where 'wrong' counts them, did not)")
    print()
    print(f"{'category':<34} {'sent':>7} {'ok':>7} {'wrong':>6} {'errors':>6} {'to app':>6}  why")
    print("-" * 100)
    for title, group in (("good", good), ("hostile", hostile)):
        for name in sorted(group):
            t = group[name]
            why = ", ".join(f"{r} x{c}" for r, c in t.reasons.most_common(3))
            if t.by_target:
                why += "  [" + ", ".join(f"{k} {v}" for k, v in sorted(t.by_target.items())) + "]"
            to_app = str(t.reached_app) if title == "hostile" else ""
            print(f"{title + ' ' + name:<34} {t.sent:>7} {t.ok:>7} {t.wrong:>6} {t.errors:>6} {to_app:>6}  {why}")
    print("-" * 100)
    sent_good = sum(t.sent for t in good.values())
    sent_hostile = sum(t.sent for t in hostile.values())
    print(
        f"{'good total':<34} {sent_good:>7} {sum(t.ok for t in good.values()):>7} "
        f"{sum(t.wrong for t in good.values()):>6} {sum(t.errors for t in good.values()):>6}"
    )
    print(
        f"{'hostile total':<34} {sent_hostile:>7} {sum(t.ok for t in hostile.values()):>7} "
        f"{sum(t.wrong for t in hostile.values()):>6} {sum(t.errors for t in hostile.values()):>6} "
        f"{sum(t.reached_app for t in hostile.values()):>6}"
    )
    lat = sorted(run.latencies)
    print()
    summary = [
        ("requests done", f"{run.done} / {run.total}"),
        ("elapsed", f"{elapsed:.1f} s"),
        ("requests/s", f"{run.done / elapsed:.0f}" if elapsed > 0 else "-"),
        (
            "latency p50 / p99 / max",
            (f"{lat[len(lat) // 2] * 1000:.1f} / {lat[int(len(lat) * 0.99)] * 1000:.1f} / {lat[-1] * 1000:.1f} ms")
            if lat
            else "-",
        ),
        ("errors (transport, timeout, 5xx)", str(errors)),
        ("wrong answers", str(wrong)),
        (f"side effects of {DENIED}", str(side_effects)),
        (
            "server RSS start / middle / end",
            f"{mib(run.rss.get('start'))} / {mib(run.rss.get('middle'))} / {mib(run.rss.get('end'))}",
        ),
        ("server RSS peak (1 s samples)", mib(run.rss_peak or None)),
    ]
    for label, value in summary:
        print(f"  {label:<34} {value}")
    through = sorted(k for k, v in run.examples.items() if v.startswith("wrong"))
    if through:
        print()
        print("Got through (category/target: first reason):")
        for key in through:
            print(f"  {key}: {run.examples[key].split(': ', 1)[1]}")
    if effect_tokens:
        ran = collections.Counter(tok.split("#")[0] if "#" in tok else "(no token)" for tok in effect_tokens)
        print()
        print(f"{DENIED} ran for:")
        for key, count in ran.most_common():
            print(f"  {key}: {count}")
    relied = sorted((k for k, t in hostile.items() if t.reached_app), key=lambda k: -hostile[k].reached_app)
    if relied and not args.bare:
        print()
        print("Passed on to the app with the denied tool's name or the phrase in the body ('to app' of 'sent'):")
        for key in relied:
            print(f"  {key}: {hostile[key].reached_app} of {hostile[key].sent}")
    errored = sorted(k for k, v in run.examples.items() if v.startswith("error"))
    if errored:
        print()
        print("Errors (category/target: first reason):")
        for key in errored:
            print(f"  {key}: {run.examples[key].split(': ', 1)[1]}")
    print()
    if errors or wrong or side_effects:
        print("RESULT: FAIL")
        return 1
    if incomplete:
        print("RESULT: INCOMPLETE (clean so far)")
        return 2
    print("RESULT: PASS")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=1500.0, help="stop and report as incomplete after this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hostile-share", type=float, default=0.3, help="share of hostile requests (0..1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument(
        "--bare",
        action="store_true",
        help="control run: serve the SDK app without the middleware (hostile requests get through)",
    )
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or not 0 <= args.hostile_share <= 1:
        parser.error("--requests and --concurrency must be positive, --hostile-share within 0..1")

    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    with tempfile.TemporaryDirectory(prefix="mcp-soak-") as tmp:
        effects_path = os.path.join(tmp, "side-effects.log")
        reached_path = os.path.join(tmp, "reached-app.log")
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=serve, args=(child_conn, counter, effects_path, reached_path, args.bare), daemon=True)
        proc.start()
        try:
            if not parent_conn.poll(60):
                raise SystemExit("server did not report its port within 60 s")
            port = parent_conn.recv()
            for _ in range(600):  # wait until it accepts connections (at most 60 s)
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.1)
            print(
                f"server pid {proc.pid} on 127.0.0.1:{port}; {args.requests} requests, "
                f"concurrency {args.concurrency}, at most {args.max_seconds:.0f} s",
                flush=True,
            )
            assert proc.pid is not None
            run, elapsed, incomplete = asyncio.run(drive(args, port, proc.pid))
        finally:
            proc.terminate()
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        tokens: list[str] = []
        if os.path.exists(effects_path):
            with open(effects_path, encoding="utf-8") as log:
                tokens = [line.strip().strip("'\"") for line in log]
        reached: list[str] = []
        if os.path.exists(reached_path):
            with open(reached_path, encoding="latin-1") as log:
                reached = [line.rstrip("\n") for line in log]
        return report(run, elapsed, incomplete, counter.value, tokens, reached, args)


if __name__ == "__main__":
    sys.exit(main())
