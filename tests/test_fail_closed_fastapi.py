"""
Fail closed, request side: the FastAPI example (``contrib/fastapi``)
===================================================================

The example app, imported as its docstring runs it and served by uvicorn on
127.0.0.1, its ``/mcp`` route wrapped by a recorder that sees each body the
route handler is given. The example's ``block-word`` plugin refuses tool calls
mentioning "forbidden"; each test re-spells such a call (Content-Type,
encoding, duplicate keys, method, chunking) and proves the route never
dispatched it and the client got the middleware's JSON-RPC error.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fail_closed_support import DENIED_WORD, assert_rpc_refusal, chunked, raw_request, uvicorn_on

pytestmark = pytest.mark.timeout(120)

# --------------------------------------------------------------------------
# The FastAPI example (contrib/fastapi), served by uvicorn
# --------------------------------------------------------------------------

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
_EXAMPLE_MODULES = ("app", "plugins_example")


class RouteRecorder:
    """Wraps the example's ``/mcp`` route: records each body the route handler gets."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def dispatched_word(self) -> list[Any]:
        """The calls the route, parsing as it does (``await request.json()``), ran with the word."""
        ran = []
        for body in self.bodies:
            try:
                message = json.loads(body)
            except ValueError:
                continue
            is_call = isinstance(message, dict) and message.get("method") == "tools/call"
            if is_call and DENIED_WORD in json.dumps(message.get("params")).lower():
                ran.append(message)
        return ran


@pytest.fixture(scope="module")
def fastapi_example() -> Iterator[tuple[int, RouteRecorder]]:
    saved_path = list(sys.path)
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n.partition(".")[0] in _EXAMPLE_MODULES}
    sys.path.insert(0, str(CONTRIB / "fastapi"))
    try:
        example = importlib.import_module("app")
        [route] = [r for r in example.app.router.routes if getattr(r, "path", None) == "/mcp"]
        recorder = RouteRecorder(route.app)
        route.app = recorder
        with uvicorn_on(example.app) as port:
            yield port, recorder
    finally:
        for name in [n for n in sys.modules if n.partition(".")[0] in _EXAMPLE_MODULES]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.path[:] = saved_path


def _fastapi_word(id: Any = 1) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "forbidden"}},
        }
    ).encode()


FASTAPI_VARIANTS: dict[str, tuple[str, list[tuple[str, str]], Any]] = {
    "baseline": ("POST", [("content-type", "application/json")], _fastapi_word()),
    "no-content-type": ("POST", [], _fastapi_word()),
    "text-plain": ("POST", [("content-type", "text/plain")], _fastapi_word()),
    "form": ("POST", [("content-type", "application/x-www-form-urlencoded")], _fastapi_word()),
    "json-rpc": ("POST", [("content-type", "application/json-rpc")], _fastapi_word()),
    "plus-json": ("POST", [("content-type", "application/vnd.x+json")], _fastapi_word()),
    "two-content-types": (
        "POST",
        [("content-type", "text/plain"), ("content-type", "application/json")],
        _fastapi_word(),
    ),
    "utf-8-bom": ("POST", [("content-type", "application/json")], b"\xef\xbb\xbf" + _fastapi_word()),
    "utf-16": ("POST", [("content-type", "application/json")], _fastapi_word().decode().encode("utf-16")),
    "utf-16-be-text": ("POST", [("content-type", "text/plain")], _fastapi_word().decode().encode("utf-16-be")),
    "utf-32-le": ("POST", [("content-type", "application/json")], _fastapi_word().decode().encode("utf-32-le")),
    "method-twice": (
        "POST",
        [("content-type", "application/json")],
        _fastapi_word().replace(b'"method":"tools/call"', b'"method":"tools/list"', 1)[:-1]
        + b',"method":"tools/call"}',
    ),
    "leading-whitespace": ("POST", [("content-type", "text/plain")], b"\n\t " + _fastapi_word()),
    "put": ("PUT", [("content-type", "application/json")], _fastapi_word()),
    "lowercase-post": ("post", [("content-type", "application/json")], _fastapi_word()),
    "chunked": ("POST", [("content-type", "text/plain"), ("transfer-encoding", "chunked")], "chunked"),
}


@pytest.mark.parametrize("variant", list(FASTAPI_VARIANTS))
def test_fastapi_example_blocks_the_word_however_sent(fastapi_example: tuple[int, RouteRecorder], variant: str) -> None:
    port, recorder = fastapi_example
    recorder.bodies.clear()
    method, headers, body = FASTAPI_VARIANTS[variant]
    if body == "chunked":
        answer = raw_request(port, method, "/mcp", headers, chunked(_fastapi_word()[:9], _fastapi_word()[9:]))
    else:
        answer = raw_request(port, method, "/mcp", headers, body)
    assert recorder.dispatched_word() == [], "the example's route dispatched the blocked call"
    error = assert_rpc_refusal(answer.status, answer.content_type, answer.body, request_id=1, code=-32602)
    assert error["error"]["data"]["plugin_name"] == "block-word"
    assert b"FORBIDDEN" not in answer.body
