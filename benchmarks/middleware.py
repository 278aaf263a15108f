"""
Middleware overhead: bare app vs the same app behind the middleware
===================================================================

Calls a minimal MCP-shaped JSON-RPC app in process (no sockets, so only the
middleware's own cost shows) with a ``tools/call`` request, side by side:

* the bare app;
* behind the middleware with no plugin for that request (pass-through);
* with one no-op plugin on ``tool_pre_invoke`` and ``tool_post_invoke``;
* with one plugin that rewrites the arguments and the result.

Both ASGI (``PluginMiddleware``) and WSGI (``WSGIPluginMiddleware``).

    python benchmarks/middleware.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from typing import Any

import orjson

import mcp_plugin_mw as mw

REQUEST = orjson.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hello"}}}
)
RESPONSE = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "hello"}]}})


class Noop(mw.Plugin):
    def tool_pre_invoke(self, payload: Any, context: Any) -> None:
        return None

    def tool_post_invoke(self, payload: Any, context: Any) -> None:
        return None

    def prompt_pre_fetch(self, payload: Any, context: Any) -> None:
        return None


class Rewrite(mw.Plugin):
    def tool_pre_invoke(self, payload: Any, context: Any) -> mw.PluginResult:
        return mw.PluginResult(modified_payload=payload.model_copy(update={"args": {"text": "HELLO"}}))

    def tool_post_invoke(self, payload: Any, context: Any) -> mw.PluginResult:
        result = {**payload.result, "content": [{"type": "text", "text": "HELLO"}]}
        return mw.PluginResult(modified_payload=payload.model_copy(update={"result": result}))


CONFIGS: dict[str, Any] = {
    "pass-through (no plugin applies)": {
        "plugins": [{"name": "p", "kind": f"{__name__}.Noop", "hooks": ["prompt_pre_fetch"]}]
    },
    "1 no-op plugin, pre + post": {
        "plugins": [{"name": "p", "kind": f"{__name__}.Noop", "hooks": ["tool_pre_invoke", "tool_post_invoke"]}]
    },
    "1 rewriting plugin, pre + post": {"plugins": [{"name": "p", "kind": f"{__name__}.Rewrite"}]},
}


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(RESPONSE)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": RESPONSE})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(RESPONSE)))])
    return [RESPONSE]


SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/mcp",
    "query_string": b"",
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(REQUEST)).encode())],
    "client": ("127.0.0.1", 50000),
}


def time_asgi(app: Any, requests: int) -> float:
    async def run() -> float:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": REQUEST, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            return None

        start = time.perf_counter()
        for _ in range(requests):
            await app(dict(SCOPE), receive, send)
        return (time.perf_counter() - start) / requests * 1e6

    return asyncio.run(run())


def time_wsgi(app: Any, requests: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/mcp",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(REQUEST)),
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
    }
    start = time.perf_counter()
    for _ in range(requests):
        environ = {**base, "wsgi.input": io.BytesIO(REQUEST)}
        body = app(environ, start_response)
        b"".join(body)
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - start) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    requests, repeats = options.requests, options.repeats
    print(f"{'server':<6} {'setup':<34} {'us/request':>11} {'added us':>9} {'this/bare':>10}")
    for server, timer, bare_app, wrap in (
        ("ASGI", time_asgi, asgi_app, mw.PluginMiddleware),
        ("WSGI", time_wsgi, wsgi_app, mw.WSGIPluginMiddleware),
    ):
        bare = statistics.median(timer(bare_app, requests) for _ in range(repeats))
        print(f"{server:<6} {'bare app':<34} {bare:11.2f} {0:9.2f} {1:9.2f}x")
        for label, config in CONFIGS.items():
            app = wrap(bare_app, config=config)
            micros = statistics.median(timer(app, requests) for _ in range(repeats))
            print(f"{server:<6} {label:<34} {micros:11.2f} {micros - bare:9.2f} {micros / bare:9.2f}x")


if __name__ == "__main__":
    main()
