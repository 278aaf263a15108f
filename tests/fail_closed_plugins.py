"""
Plugins and a lenient app for the fail-closed tests
===================================================

Used by ``tests/test_block_property.py`` and ``tests/test_fuzz.py``; loaded
by class path (``tests.fail_closed_plugins.DenyDelete``) as users load theirs.

The *lenient app* stands for the widest reading of a request body that a
real app may use (DESIGN.md §9): it ``json.loads`` the raw body whatever the
HTTP method and Content-Type, flattens (nested) batches, normalises the
method with ``.replace("\\0", "").strip().lower()`` and collapsed ``//``,
takes ``params.name`` (or the first positional param) and "executes" the
tool, whatever the id (or none). It records every tool it executed, so a
test can tell whether a denied tool got through.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from http import HTTPStatus
from typing import Any

import pytest

import mcp_plugin_mw as mw
from mcp_plugin_mw import (
    HookType,
    Plugin,
    PluginContext,
    PluginResult,
    PluginViolation,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)

DENIED_TOOL = "delete_everything"
ALLOWED_TOOL = "echo"


# ----------------------------------------------------------------------
# Plugins
# ----------------------------------------------------------------------


class DenyDelete(Plugin):
    """Blocks the tool ``delete_everything`` on ``tool_pre_invoke``; lets every other tool pass."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        if payload.name == DENIED_TOOL:
            return PluginResult(
                continue_processing=False,
                violation=PluginViolation(
                    reason="Denied",
                    description=f"tool {payload.name!r} is denied",
                    code="DENIED",
                    details={"tool": payload.name},
                ),
            )
        return PluginResult()


def _noop(self: Any, payload: Any, context: PluginContext) -> None:
    return None


async def _async_noop(self: Any, payload: Any, context: PluginContext) -> None:
    return None


# One method per hook the package knows, so hooks added later are covered too.
NoopEverywhere = type(
    "NoopEverywhere",
    (Plugin,),
    {
        "__doc__": "Subscribed to every hook (sync); never has an opinion.",
        "__module__": __name__,
        **{hook.value: _noop for hook in HookType},
    },
)
AsyncNoopEverywhere = type(
    "AsyncNoopEverywhere",
    (Plugin,),
    {
        "__doc__": "Subscribed to every hook (async); never has an opinion.",
        "__module__": __name__,
        **{hook.value: _async_noop for hook in HookType},
    },
)


class MarkResult(Plugin):
    """A response hook that changes every tool result, so the middleware must re-encode what it read."""

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult:
        result = payload.result
        marked = {**result, "_meta": {"test/marked": True}} if isinstance(result, dict) else {"marked": result}
        return PluginResult(modified_payload=payload.model_copy(update={"result": marked}))


class CrashOnResult(Plugin):
    """A response hook that always raises."""

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> None:
        raise RuntimeError("response hook failed")


class AsyncMarkResult(Plugin):
    """As :class:`MarkResult`, async, and yielding to the loop first."""

    async def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult:
        await asyncio.sleep(0)
        return MarkResult.tool_post_invoke(self, payload, context)  # type: ignore[arg-type]


# ----------------------------------------------------------------------
# The lenient app
# ----------------------------------------------------------------------


def normalise_method(method: str) -> str:
    """The method as a lenient app compares it."""
    method = method.replace("\0", "").strip().lower()
    return re.sub(r"/{2,}", "/", method)


def _messages(document: Any, depth: int = 0) -> Iterator[Any]:
    """Every message of ``document``, nested batches flattened."""
    if isinstance(document, list) and depth < 64:
        for member in document:
            yield from _messages(member, depth + 1)
    else:
        yield document


def lenient_calls(document: Any) -> list[tuple[Any, str]]:
    """``(id or None, tool name)`` of every ``tools/call`` the lenient app executes in ``document``."""
    calls: list[tuple[Any, str]] = []
    for message in _messages(document):
        if not isinstance(message, dict):
            continue
        method = message.get("method")
        if not isinstance(method, str) or normalise_method(method) != "tools/call":
            continue
        params = message.get("params")
        if isinstance(params, dict):
            name = params.get("name")
        elif isinstance(params, list) and params:
            name = params[0]
        else:
            continue
        if isinstance(name, str):
            calls.append((message.get("id"), name))
    return calls


def lenient_parse(body: bytes) -> Any:
    """``json.loads`` as the app does it; raises what it raises."""
    return json.loads(body)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Status"


class LenientApp:
    """Executes whatever it can read as a ``tools/call``; ``executed`` lists the tool names, in order."""

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.received: list[bytes] = []
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.executed.clear()
            self.received.clear()

    def handle(self, body: bytes) -> tuple[int, bytes]:
        with self.lock:
            self.received.append(body)
        try:
            document = lenient_parse(body)
        except Exception:
            return 400, b'{"error": "not JSON"}'
        calls = lenient_calls(document)
        replies = []
        for request_id, name in calls:
            with self.lock:
                self.executed.append(name)
            replies.append(
                {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": name}]}}
            )
        if not replies:
            return 202, b""
        try:
            return 200, json.dumps(replies if len(replies) > 1 else replies[0]).encode()
        except ValueError:
            return 200, b"{}"

    # ASGI ------------------------------------------------------------

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_asgi_body(receive)
        if body is None:
            return
        status, out = self.handle(body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out, "more_body": False})

    # WSGI ------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        # As werkzeug reads: the whole stream when the server terminates it,
        # else CONTENT_LENGTH bytes; without either, whatever the stream holds
        # (``safe_fallback=False``), the widest reading an app may use.
        from werkzeug.wsgi import get_input_stream

        body = get_input_stream(environ, safe_fallback=False).read()
        status, out = self.handle(body)
        start_response(_status_line(status), [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
        return [out]


async def read_asgi_body(receive: Any) -> bytes | None:
    """The whole request body an ASGI app receives; None when the client went away."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


class ScriptedApp:
    """Answers every request with the response the test put in ``script``; records the request body."""

    def __init__(self) -> None:
        self.script: Any = None
        self.received: bytes | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_asgi_body(receive)
        if body is None:
            return
        self.received = body
        status, headers, chunks = self.script
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
            }
        )
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        from werkzeug.wsgi import get_input_stream

        self.received = get_input_stream(environ).read()
        status, headers, chunks = self.script
        start_response(_status_line(status), list(headers))
        # A generator, as streaming apps give.
        yield from chunks


__all__ = [
    "ALLOWED_TOOL",
    "DENIED_TOOL",
    "AsyncMarkResult",
    "AsyncNoopEverywhere",
    "CrashOnResult",
    "DenyDelete",
    "LenientApp",
    "MarkResult",
    "NoopEverywhere",
    "ScriptedApp",
    "lenient_calls",
    "lenient_parse",
    "normalise_method",
]


# ----------------------------------------------------------------------
# Fixtures shared by the property and fuzz tests (import them by name)
# ----------------------------------------------------------------------

DENY_CONFIG = {"plugins": [{"name": "deny", "kind": "tests.fail_closed_plugins.DenyDelete"}]}


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for a module's in-process ASGI calls."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def lenient() -> LenientApp:
    return LenientApp()


def asgi_behind(app: Any, config: Any, loop: asyncio.AbstractEventLoop) -> Iterator[mw.PluginMiddleware]:
    """``app`` behind PluginMiddleware with ``config``; its manager closed afterwards."""
    middleware = mw.PluginMiddleware(app, config=config)
    yield middleware
    loop.run_until_complete(middleware.manager.aclose())


def wsgi_behind(app: Any, config: Any) -> Iterator[mw.WSGIPluginMiddleware]:
    """``app`` behind WSGIPluginMiddleware with ``config``; its manager closed afterwards."""
    middleware = mw.WSGIPluginMiddleware(app, config=config)
    yield middleware
    middleware.manager.close()


@pytest.fixture(scope="module")
def deny_asgi(lenient: LenientApp, loop: asyncio.AbstractEventLoop) -> Iterator[mw.PluginMiddleware]:
    yield from asgi_behind(lenient, DENY_CONFIG, loop)


@pytest.fixture(scope="module")
def deny_wsgi(lenient: LenientApp) -> Iterator[mw.WSGIPluginMiddleware]:
    yield from wsgi_behind(lenient.wsgi, DENY_CONFIG)
