"""
Writing requests as a client may, and sending them in process
==============================================================

Helpers for ``tests/test_block_property.py`` and ``tests/test_fuzz.py``.

* A small JSON *model* that ``json.dumps`` cannot express: objects with
  repeated keys in any order (:class:`Obj`; ``json.loads`` keeps the last),
  literals such as ``NaN`` or ``1e400`` (:class:`Raw`), and a writer
  (:func:`write`) with arbitrary JSON whitespace and ``\\uXXXX`` / ``\\/``
  escapes inside strings and keys.
* Body encodings Python's ``json.loads(bytes)`` detects (:data:`ENCODINGS`).
* Drivers: :func:`run_asgi` calls an ASGI app with a hand-made scope,
  ``receive`` and ``send`` (any method spelling, repeated headers, the body
  in ``more_body`` chunks) and returns the complete response or raises;
  :func:`run_wsgi` calls a WSGI app through werkzeug's test ``Client``
  with the framing the test chooses (``CONTENT_LENGTH``,
  ``wsgi.input_terminated``).

Nothing here raises on generated data: every string is valid Unicode
without lone surrogates, so every encoding succeeds.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import io
import itertools
import json
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

# ----------------------------------------------------------------------
# The JSON model
# ----------------------------------------------------------------------


@dataclasses.dataclass
class Obj:
    """A JSON object as written: ``pairs`` in order, keys may repeat (the last one counts)."""

    pairs: list[tuple[str, Any]]

    def get(self, key: str, default: Any = None) -> Any:
        for name, value in reversed(self.pairs):
            if name == key:
                return value
        return default

    def has(self, key: str) -> bool:
        return any(name == key for name, _ in self.pairs)

    def set(self, key: str, value: Any) -> None:
        """Replace the value that counts (the last), or append the key."""
        for index in range(len(self.pairs) - 1, -1, -1):
            if self.pairs[index][0] == key:
                self.pairs[index] = (key, value)
                return
        self.pairs.append((key, value))

    def delete(self, key: str) -> None:
        self.pairs = [(name, value) for name, value in self.pairs if name != key]

    def copy(self) -> Obj:
        return Obj([(name, copy_model(value)) for name, value in self.pairs])


@dataclasses.dataclass(frozen=True)
class Raw:
    """A literal written as is: ``NaN``, ``Infinity``, ``1e400``, ``18446744073709551619``."""

    text: str


def copy_model(value: Any) -> Any:
    if isinstance(value, Obj):
        return value.copy()
    if isinstance(value, list):
        return [copy_model(item) for item in value]
    return value


def to_model(value: Any) -> Any:
    """A plain JSON value (dicts, lists, scalars) as a model."""
    if isinstance(value, dict):
        return Obj([(key, to_model(item)) for key, item in value.items()])
    if isinstance(value, list):
        return [to_model(item) for item in value]
    return value


@dataclasses.dataclass
class Style:
    """How a document is written: JSON whitespace between tokens, escapes in strings."""

    seed: int = 0
    whitespace: str = ""  # the alphabet between tokens; "" writes compactly
    max_run: int = 2
    escape: float = 0.0  # probability of writing a character as \\uXXXX
    escape_slash: bool = False
    ensure_ascii: bool = False


JSON_WHITESPACE = " \t\r\n"


def _string(text: str, style: Style, rng: random.Random) -> str:
    if not style.escape and not style.escape_slash:
        return json.dumps(text, ensure_ascii=style.ensure_ascii)
    out = ['"']
    for char in text:
        code = ord(char)
        if char == "/" and style.escape_slash:
            out.append("\\/")
        elif char in '"\\' or code < 0x20 or (style.ensure_ascii and code > 0x7E) or rng.random() < style.escape:
            if char == '"':
                out.append('\\"' if rng.random() < 0.5 else "\\u0022")
            elif char == "\\":
                out.append("\\\\")
            elif code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04X}")
            else:
                out.append(f"\\u{code:04x}" if rng.random() < 0.5 else f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def write(value: Any, style: Style | None = None) -> str:
    """``value`` (plain JSON or model) as JSON text in ``style``."""
    style = style or Style()
    rng = random.Random(style.seed)

    def ws() -> str:
        if not style.whitespace:
            return ""
        return "".join(rng.choice(style.whitespace) for _ in range(rng.randint(0, style.max_run)))

    def emit(item: Any) -> str:
        if isinstance(item, Raw):
            return item.text
        if isinstance(item, dict):
            item = to_model(item)
        if isinstance(item, Obj):
            if not item.pairs:
                return "{" + ws() + "}"
            members = [
                ws() + _string(key, style, rng) + ws() + ":" + ws() + emit(member) + ws() for key, member in item.pairs
            ]
            return "{" + ",".join(members) + "}"
        if isinstance(item, list | tuple):
            if not item:
                return "[" + ws() + "]"
            return "[" + ",".join(ws() + emit(member) + ws() for member in item) + "]"
        if isinstance(item, str):
            return _string(item, style, rng)
        if item is True:
            return "true"
        if item is False:
            return "false"
        if item is None:
            return "null"
        if isinstance(item, float):
            return json.dumps(item)  # NaN / Infinity as Python writes them
        return str(int(item))

    return ws() + emit(value) + ws()


def plain(value: Any) -> Any:
    """A model as the plain value ``json.loads`` gives (last key wins); Raw literals parsed."""
    if isinstance(value, Obj):
        result: dict[str, Any] = {}
        for key, member in value.pairs:
            result.pop(key, None)
            result[key] = plain(member)
        return result
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, Raw):
        return json.loads(value.text)
    return value


styles = st.builds(
    Style,
    seed=st.integers(0, 2**32),
    whitespace=st.sampled_from(["", " ", "\n", JSON_WHITESPACE, "\r\n", "\t "]),
    max_run=st.integers(1, 4),
    escape=st.sampled_from([0.0, 0.0, 0.2, 1.0]),
    escape_slash=st.booleans(),
    ensure_ascii=st.booleans(),
)

# ----------------------------------------------------------------------
# Encodings
# ----------------------------------------------------------------------

ENCODINGS: dict[str, tuple[str, bytes]] = {
    "utf-8": ("utf-8", b""),
    "utf-8-bom": ("utf-8", codecs.BOM_UTF8),
    "utf-16-le": ("utf-16-le", b""),
    "utf-16-be": ("utf-16-be", b""),
    "utf-16-le-bom": ("utf-16-le", codecs.BOM_UTF16_LE),
    "utf-16-be-bom": ("utf-16-be", codecs.BOM_UTF16_BE),
    "utf-32-le": ("utf-32-le", b""),
    "utf-32-be": ("utf-32-be", b""),
    "utf-32-le-bom": ("utf-32-le", codecs.BOM_UTF32_LE),
    "utf-32-be-bom": ("utf-32-be", codecs.BOM_UTF32_BE),
}
"""Name -> (codec, byte order mark): every encoding ``json.loads(bytes)`` detects."""


def encode(text: str, encoding: str) -> bytes:
    codec, bom = ENCODINGS[encoding]
    return bom + text.encode(codec)


# ----------------------------------------------------------------------
# Strategies shared by the two test files
# ----------------------------------------------------------------------

HTTP_METHODS = ["POST", "PUT", "PATCH", "GET", "DELETE", "OPTIONS"]
# Every character str.strip() removes (Unicode whitespace), and NUL.
UNICODE_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())

JSONISH_TYPES = [
    "application/json",
    "application/json-rpc",
    "application/jsonrequest",
    "application/jsonl",
    "application/json5",
    "application/json-seq",
    "Application/JSONx",
    "application/x-ndjson",
    "application/vnd.api+json",
    "application/ld+json",
    "application/problem+json",
    "application/x-json",
    "text/json",
    "text/x-json",
    "application/javascript",
]
OTHER_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----x",
    "application/octet-stream",
    "text/html",
    "application/xml",
    "text/event-stream",
    "*/*",
    "",
    "application",
    "json",
    "application/json;",
    ";",
    "application/ json",
    "application/json, text/plain",
    "x-unknown/y",
]
PARAMETERS = [
    "",
    "; charset=utf-8",
    ";charset=UTF-8",
    '; charset="utf-8"',
    "; charset=utf-16",
    "; charset=utf-32",
    "; charset=ascii",
    "; charset=latin-1",
    "; charset=iso-8859-1",
    "; version=2",
    "; profile=mcp; charset=utf-8",
    " ; q=1",
]
UNKNOWN_CHARSETS = ["; charset=x-no-such-charset", "; charset=utf-9"]


@st.composite
def random_case(draw: st.DrawFn, text: str) -> str:
    """``text`` with the case of some letters swapped (shrinks to ``text`` itself)."""
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(char.swapcase() if flip else char for char, flip in zip(text, flips, strict=True))


http_methods = st.sampled_from(HTTP_METHODS).flatmap(random_case)


@st.composite
def content_type_values(draw: st.DrawFn, *, unknown_charsets: bool = True) -> str:
    base = draw(st.sampled_from(JSONISH_TYPES + OTHER_TYPES))
    parameters = PARAMETERS + (UNKNOWN_CHARSETS if unknown_charsets else [])
    value = base + draw(st.sampled_from(parameters))
    return draw(random_case(value)) if draw(st.booleans()) else value


@st.composite
def content_type_headers(draw: st.DrawFn, *, unknown_charsets: bool = True, several: bool = True) -> list[str]:
    """The Content-Type header values of a request: none, one, or (``several``) more."""
    count = draw(st.sampled_from([1, 1, 1, 0, 2] if several else [1, 1, 1, 0]))
    return [draw(content_type_values(unknown_charsets=unknown_charsets)) for _ in range(count)]


@st.composite
def method_spellings(draw: st.DrawFn, method: str = "tools/call") -> str:
    """``method``, or a spelling the lenient app normalises to it."""
    if not draw(st.booleans()):
        return method
    text = draw(random_case(method))
    text = text.replace("/", "/" * draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\0" + text[at:]
    around = st.text(alphabet=UNICODE_SPACE + "\0", max_size=3)
    return draw(around) + text + draw(around)


small_ints = st.integers(min_value=-(2**31), max_value=2**31)
big_ints = st.integers(min_value=2**63, max_value=2**70) | st.integers(min_value=-(2**70), max_value=-(2**63) - 1)
# Strings an MCP client could not confuse with a number: ids made unique by value stay unique.
word_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8)
text_ids = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
request_ids = st.one_of(
    small_ints,
    text_ids,
    big_ints,
    small_ints.map(str),
    big_ints.map(str),
)

json_scalars = (
    st.none()
    | st.booleans()
    | small_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
arguments = st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=8), json_values, max_size=3)


# JSON whitespace before the document: a first message may hold nothing else.
leading_whitespace = st.sampled_from(["", "", "", " ", "    ", "\r\n\r\n", "\t" * 9, " \n" * 40])

# Where a body is cut into messages: often near the start, where sniffing decides.
cut_points = st.lists(st.integers(0, 8) | st.integers(0, 10_000), max_size=4)


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length); empty pieces kept, so chunks may be empty."""
    points = sorted(cut % (len(data) + 1) for cut in cuts)
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# ----------------------------------------------------------------------
# Drivers
# ----------------------------------------------------------------------


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name]


class IncompleteResponse(AssertionError):
    """The middleware returned without a complete HTTP response."""


def check_asgi_messages(sent: list[dict[str, Any]]) -> Response:
    """The response that ``sent`` makes; raises unless it is one complete HTTP response."""
    if not sent or sent[0].get("type") != "http.response.start":
        raise IncompleteResponse(f"no http.response.start first: {sent[:2]!r}")
    start = sent[0]
    if not isinstance(start.get("status"), int) or not 100 <= start["status"] <= 599:
        raise IncompleteResponse(f"bad status {start.get('status')!r}")
    body = bytearray()
    finished = False
    trailers = bool(start.get("trailers"))
    for message in sent[1:]:
        kind = message.get("type")
        if finished and kind != "http.response.trailers":
            raise IncompleteResponse(f"{kind} after the final body message")
        if kind == "http.response.start":
            raise IncompleteResponse("a second http.response.start")
        if kind == "http.response.body":
            chunk = message.get("body", b"")
            if not isinstance(chunk, bytes | bytearray):
                raise IncompleteResponse(f"body of type {type(chunk).__name__}")
            body += chunk
            finished = not message.get("more_body", False)
        elif kind == "http.response.trailers":
            if not trailers:
                raise IncompleteResponse("trailers not announced")
        else:
            raise IncompleteResponse(f"unexpected message {kind!r}")
    if not finished:
        raise IncompleteResponse("the body never ended (no more_body=False)")
    headers = [(bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1")) for k, v in start.get("headers", [])]
    return Response(start["status"], headers, bytes(body), sent)


def asgi_scope(method: str, headers: list[tuple[str, str]], path: str = "/mcp") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1", "replace")) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def run_asgi(
    app: Any,
    method: str,
    headers: list[tuple[str, str]],
    chunks: Sequence[bytes],
    *,
    timeout: float = 10.0,
) -> Response:
    """Call ``app`` with the body in ``chunks`` (the last one ends it); the complete response, or raise."""
    pieces = list(chunks) or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": True} for piece in pieces[:-1]
    ]
    messages.append({"type": "http.request", "body": pieces[-1], "more_body": False})
    sent: list[dict[str, Any]] = []
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        # As servers do: after the body, receive() waits until the client goes.
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    try:
        await asyncio.wait_for(app(asgi_scope(method, headers), receive, send), timeout)
    finally:
        disconnected.set()
    return check_asgi_messages(sent)


WSGI_FRAMINGS = ["length", "terminated", "terminated+length", "terminated+short", "short+trailer", "unframed"]
"""How the WSGI server hands the body over:

* ``length``: ``CONTENT_LENGTH`` is the body's length.
* ``terminated``: no ``CONTENT_LENGTH``; ``wsgi.input_terminated`` (a chunked request).
* ``terminated+length``: both, agreeing.
* ``terminated+short``: both, ``CONTENT_LENGTH`` smaller than the stream (werkzeug then reads the stream).
* ``short+trailer``: ``CONTENT_LENGTH`` covers the body; the stream holds more bytes after it.
* ``unframed``: neither; an app reading the raw stream gets everything.
"""


def wsgi_environ(
    method: str,
    content_types: Sequence[str],
    body: bytes,
    *,
    framing: str = "length",
    short: int = 0,
    trailer: bytes = b"",
    path: str = "/mcp",
    headers: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path=path, method="POST", data=b"")
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    environ["REQUEST_METHOD"] = method
    environ.pop("CONTENT_TYPE", None)
    environ.pop("CONTENT_LENGTH", None)
    environ.pop("HTTP_CONTENT_TYPE", None)
    environ.pop("HTTP_CONTENT_LENGTH", None)
    if content_types:
        # One CONTENT_TYPE in WSGI: several headers arrive joined, as servers join repeated headers.
        environ["CONTENT_TYPE"] = ", ".join(content_types)
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    stream = body
    if framing == "length":
        environ["CONTENT_LENGTH"] = str(len(body))
    elif framing == "terminated":
        environ["wsgi.input_terminated"] = True
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    elif framing == "terminated+length":
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(len(body))
    elif framing == "terminated+short":
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(short % max(len(body), 1))
    elif framing == "short+trailer":
        environ["CONTENT_LENGTH"] = str(len(body))
        stream = body + trailer
    elif framing != "unframed":
        raise ValueError(framing)
    environ["wsgi.input"] = io.BytesIO(stream)
    return environ


def run_wsgi(app: Any, environ: dict[str, Any]) -> Response:
    """Call ``app`` through werkzeug's test client; the complete response (the iterator closed), or raise."""
    from werkzeug.test import Client

    client = Client(app)
    app_iter, status, headers = client.run_wsgi_app(environ, buffered=True)
    body = b"".join(app_iter)
    code = int(status.split(" ", 1)[0])
    return Response(code, [(name.lower(), value) for name, value in headers.items()], body)


Runner = Callable[..., Response]
