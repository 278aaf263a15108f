"""
Hot path at the limit: the middleware and the executor against their targets
============================================================================

One section per row of the target table, each timed side by side with its
reference by ``harness.py`` (interleaved rounds, rotating order, per-round
ratios) and printed as a row with the target beside it and PASS or MISS:

=========  ==================================================================  ===========
section    measure                                                             target
=========  ==================================================================  ===========
asgi       Starlette ``/mcp`` in process, 1 KB ``tools/call`` and 1 KB         <= 1.6x
           result, 5 no-op plugins on ``tool_pre_invoke`` and
           ``tool_post_invoke``, against the bare endpoint
unrelated  the same, one plugin on ``prompt_pre_fetch`` only                   <= 1.2x
large      64 KB and 1 MB results, one no-op ``tool_post_invoke`` plugin       <= 1.5x
           (and 20): added time over one ``orjson.loads`` + ``dumps`` of
           request and response
wsgi       Flask ``wsgi_app`` behind ``WSGIPluginMiddleware``, 1 KB, 5 sync    <= 1.3x
           no-ops per direction, against bare Flask
sse        Starlette event stream of 100 events (99 progress notifications     <= 1.6x
           and the result), 5 no-ops, against bare
executor   5 no-op sync plugins, ``invoke_sync`` against cpex 0.1.4's          >= 30x
           ``invoke_hook`` (cpex time / ours)
hop        ``invoke_sync`` on async plugins (the hop to the background         <= 15 µs
           loop), µs per call, and stable (max-min within half the median)
=========  ==================================================================  ===========

The uvicorn + wrk row is ``benchmarks/wrk.sh``, the ``pii_filter`` rows
``benchmarks/pii.py``.

    python benchmarks/hot_path.py [asgi|unrelated|large|wsgi|sse|executor|hop|all]
        [--rounds 7] [--quick] [--json FILE]

ASGI apps are driven in process by a hand-written ``receive`` and ``send``
(no sockets, no HTTP client), so the ratio is the middleware's cost against
the app's own. ``--quick`` shortens each run (fewer calls per round), not
the number of rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MIN_ROUNDS, acalls_for, acompare, calls_for, compare, per_round

import mcp_plugin_mw as mw

# ---------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------

PROSE = (
    "The quarterly report shows revenue growth across all regions while support tickets fell. "
    "Customers asked about billing cycles, and the release notes mention latency improvements "
    "for search queries and faster exports of large spreadsheets to the archive. "
)


def prose(size: int) -> str:
    return (PROSE * (size // len(PROSE) + 1))[:size]


def document(size: int) -> str:
    """A tool's JSON document as text, about ``size`` bytes once escaped into a result (quotes, newlines)."""
    rows = [
        {"id": index, "title": f"Result {index}", "summary": PROSE[: 60 + index % 60], "score": index / 7}
        for index in range(size // 100 + 1)
    ]
    escaped = len(orjson.dumps(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()))
    return orjson.dumps(rows[: max(1, len(rows) * size // escaped)], option=orjson.OPT_INDENT_2).decode()


def request_bytes(size: int = 1024, request_id: int = 1) -> bytes:
    """A ``tools/call`` of about ``size`` bytes."""
    params: dict[str, Any] = {"name": "search", "arguments": {}}
    head = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    room = size - len(orjson.dumps(head)) - 30
    params["arguments"] = {"query": prose(max(room, 10)), "limit": 10}
    return orjson.dumps(head)


def result_of(request_id: Any, text: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {"content": [{"type": "text", "text": text}], "isError": False},
    }


REQUEST_1K = request_bytes(1024)
TEXT_1K = prose(1024 - len(orjson.dumps(result_of(1, ""))))

# ---------------------------------------------------------------------------
# Plugins and configs
# ---------------------------------------------------------------------------


class Noop(mw.Plugin):
    def tool_pre_invoke(self, payload: Any, context: Any) -> None:
        return None

    def tool_post_invoke(self, payload: Any, context: Any) -> None:
        return None

    def prompt_pre_fetch(self, payload: Any, context: Any) -> None:
        return None

    def server_message(self, payload: Any, context: Any) -> None:
        return None


class AsyncNoop(mw.Plugin):
    async def tool_pre_invoke(self, payload: Any, context: Any) -> None:
        return None


KIND = f"{__name__}.Noop"


def config(count: int, hooks: list[str]) -> dict[str, Any]:
    return {"plugins": [{"name": f"p{index}", "kind": KIND, "hooks": hooks} for index in range(count)]}


PRE_POST = ["tool_pre_invoke", "tool_post_invoke"]

# ---------------------------------------------------------------------------
# ASGI in process
# ---------------------------------------------------------------------------


def scope_for(body: bytes, *, accept: bytes = b"application/json, text/event-stream") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"accept", accept),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class Collect:
    """An ASGI ``send`` that keeps the status and the body (for checking a run)."""

    def __init__(self) -> None:
        self.status = 0
        self.body = bytearray()

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


async def _discard(message: dict[str, Any]) -> None:
    return None


def asgi_caller(app: Any, body: bytes) -> Callable[..., Any]:
    """A coroutine function doing one request to ``app`` with ``body``."""
    scope = scope_for(body)
    request = {"type": "http.request", "body": body, "more_body": False}
    disconnect = {"type": "http.disconnect"}

    async def call(send: Any = _discard) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return disconnect
            sent = True
            return request

        await app({**scope, "headers": list(scope["headers"]), "state": {}}, receive, send)

    return call


async def check_asgi(label: str, call: Callable[..., Any], *, stream: bool = False) -> bytes:
    """One request through ``call``: it must be a 200 carrying the JSON-RPC result."""
    sink = Collect()
    await call(sink)
    body = bytes(sink.body)
    if stream:
        data = [line[5:].strip() for line in body.split(b"\n") if line.startswith(b"data:")]
        last = orjson.loads(data[-1]) if data else {}
    else:
        last = orjson.loads(body) if body else {}
    if sink.status != 200 or "result" not in last:
        raise SystemExit(f"{label}: unexpected response {sink.status} {body[:300]!r}")
    return body


def starlette_app(text: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        message = orjson.loads(await request.body())
        return Response(orjson.dumps(result_of(message["id"], text)), media_type="application/json")

    return Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])


def starlette_sse_app(events: int, text: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> StreamingResponse:
        message = orjson.loads(await request.body())
        request_id = message["id"]

        async def stream() -> Any:
            for step in range(events - 1):
                note = {
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {
                        "progressToken": request_id,
                        "progress": step,
                        "total": events - 1,
                        "message": f"step {step}",
                    },
                }
                yield b"event: message\ndata: " + orjson.dumps(note) + b"\n\n"
            yield b"event: message\ndata: " + orjson.dumps(result_of(request_id, text)) + b"\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])


def bare_server_app() -> Any:
    """The bare 1 KB endpoint, for uvicorn (``--factory hot_path:bare_server_app``; ``benchmarks/wrk.py``)."""
    return starlette_app(TEXT_1K)


def wrapped_server_app() -> Any:
    """The same endpoint behind the middleware with 5 no-ops per direction, for uvicorn."""
    return mw.PluginMiddleware(starlette_app(TEXT_1K), config=config(5, PRE_POST))


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = []


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    return "PASS" if (value >= target if higher_is_better else value <= target) else "MISS"


def row(
    measure: str,
    value: dict[str, float],
    target: float,
    *,
    higher: bool = False,
    unit: str = "x",
    extra: str = "",
    passed: bool | None = None,
) -> None:
    sign = ">=" if higher else "<="
    ok = verdict(value["median"], target, higher) if passed is None else ("PASS" if passed else "MISS")
    line = {
        "measure": measure,
        "median": value["median"],
        "min": value["min"],
        "max": value["max"],
        "target": f"{sign} {target:g}{unit}",
        "verdict": ok,
        "extra": extra,
    }
    ROWS.append(line)
    print(
        f"ROW  {measure:<58} {value['median']:8.2f}{unit:<3} [{value['min']:.2f}-{value['max']:.2f}]"
        f"  target {sign} {target:g}{unit}  {ok}{('  ' + extra) if extra else ''}\n"
    )


def budget(quick: bool, full: float) -> float:
    """Seconds per run of one runner in a round."""
    return full / 4 if quick else full


async def _asgi_pair(
    label: str, wrapped_config: dict[str, Any], options: Any, text: str = TEXT_1K, body: bytes = REQUEST_1K
) -> dict[str, Any]:
    bare_app = starlette_app(text)
    wrapped = mw.PluginMiddleware(starlette_app(text), config=wrapped_config)
    runners = {"bare": asgi_caller(bare_app, body), "wrapped": asgi_caller(wrapped, body)}
    for name, call in runners.items():
        await check_asgi(f"{label} {name}", call)
    calls = await acalls_for(runners, budget(options.quick, 0.4), high=20_000)
    return await acompare(runners, rounds=options.rounds, calls_per_round=calls, baseline="bare", title=label)


def section_asgi(options: Any) -> dict[str, Any]:
    figures = asyncio.run(_asgi_pair("asgi, 1 KB, 5 no-ops pre+post", config(5, PRE_POST), options))
    row("ASGI 1 KB, 5 no-ops per direction vs bare", figures["runners"]["wrapped"]["ratio"], 1.6)
    return figures


def section_unrelated(options: Any) -> dict[str, Any]:
    figures = asyncio.run(
        _asgi_pair("asgi, 1 KB, 1 plugin on prompt_pre_fetch", config(1, ["prompt_pre_fetch"]), options)
    )
    row("ASGI 1 KB, one plugin on prompt_pre_fetch vs bare", figures["runners"]["wrapped"]["ratio"], 1.2)
    return figures


def section_large(options: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size, label in ((64 * 1024, "64 KB"), (1024 * 1024, "1 MB")):
        text = document(size)
        body = REQUEST_1K
        response = orjson.dumps(result_of(1, text))

        async def reference(_send: Any = None, body: bytes = body, response: bytes = response) -> None:
            orjson.dumps(orjson.loads(body))
            orjson.dumps(orjson.loads(response))

        async def run(
            text: str = text, body: bytes = body, label: str = label, response: bytes = response
        ) -> dict[str, Any]:
            runners: dict[str, Any] = {"bare": asgi_caller(starlette_app(text), body)}
            for count in (1, 20):
                app = mw.PluginMiddleware(starlette_app(text), config=config(count, ["tool_post_invoke"]))
                runners[f"{count} post hook(s)"] = asgi_caller(app, body)
            runners["orjson loads+dumps"] = reference
            for name, call in runners.items():
                if name != "orjson loads+dumps":
                    await check_asgi(f"large {label} {name}", call)
            calls = await acalls_for(runners, budget(options.quick, 0.5), high=5_000)
            return await acompare(
                runners,
                rounds=options.rounds,
                calls_per_round=calls,
                baseline="bare",
                title=f"large, {label} result ({len(response)} bytes)",
            )

        figures = asyncio.run(run())
        reference_us = figures["runners"]["orjson loads+dumps"]["us_per_call"]["median"]
        for count in (1, 20):
            name = f"{count} post hook(s)"

            def added_cost(t: dict[str, float], name: str = name) -> float:
                return (t[name] - t["bare"]) / t["orjson loads+dumps"]

            added = per_round(figures, added_cost)
            figures[f"added_over_orjson[{count}]"] = added
            us = figures["runners"][name]["us_per_call"]["median"] - figures["runners"]["bare"]["us_per_call"]["median"]
            row(
                f"ASGI {label} result, {count} post hook(s): added / orjson",
                added,
                1.5,
                extra=f"(+{us:.0f} us vs orjson {reference_us:.0f} us)",
            )
        out[label] = figures
    return out


def flask_app(text: str) -> Any:
    from flask import Flask, Response, request

    app = Flask("hot_path_bench")

    @app.post("/mcp")
    def endpoint() -> Response:
        message = orjson.loads(request.get_data())
        return Response(orjson.dumps(result_of(message["id"], text)), mimetype="application/json")

    return app


def wsgi_caller(app: Any, body: bytes) -> Callable[[], Any]:
    base = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/mcp",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_ACCEPT": "application/json, text/event-stream",
        "HTTP_HOST": "127.0.0.1:8000",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    state: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        state["status"] = status
        return None

    def call() -> bytes:
        result = app({**base, "wsgi.input": io.BytesIO(body)}, start_response)
        try:
            return b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    call.state = state  # type: ignore[attr-defined]
    return call


def section_wsgi(options: Any) -> dict[str, Any]:
    bare = flask_app(TEXT_1K)
    wrapped = flask_app(TEXT_1K)
    runners = {
        "bare": wsgi_caller(bare.wsgi_app, REQUEST_1K),
        "wrapped": wsgi_caller(mw.WSGIPluginMiddleware(wrapped.wsgi_app, config=config(5, PRE_POST)), REQUEST_1K),
    }
    for name, call in runners.items():
        answer = orjson.loads(call())
        if not call.state["status"].startswith("200") or "result" not in answer:  # type: ignore[attr-defined]
            raise SystemExit(f"wsgi {name}: unexpected response {call.state} {answer}")  # type: ignore[attr-defined]
    calls = calls_for(runners, budget(options.quick, 0.4), high=20_000)
    figures = compare(
        runners,
        rounds=options.rounds,
        calls_per_round=calls,
        baseline="bare",
        title="wsgi, Flask, 1 KB, 5 sync no-ops pre+post",
    )
    row("Flask wsgi_app 1 KB, 5 sync no-ops per direction vs bare", figures["runners"]["wrapped"]["ratio"], 1.3)
    return figures


def section_sse(options: Any) -> dict[str, Any]:
    # The third runner adds one no-op plugin on server_message: every event
    # that names a method (the 99 progress notifications) is then parsed.
    watched = config(5, PRE_POST)
    watched["plugins"].append({"name": "messages", "kind": KIND, "hooks": ["server_message"]})

    async def run() -> dict[str, Any]:
        runners = {
            "bare": asgi_caller(starlette_sse_app(100, TEXT_1K), REQUEST_1K),
            "wrapped": asgi_caller(
                mw.PluginMiddleware(starlette_sse_app(100, TEXT_1K), config=config(5, PRE_POST)), REQUEST_1K
            ),
            "wrapped+server_message": asgi_caller(
                mw.PluginMiddleware(starlette_sse_app(100, TEXT_1K), config=watched), REQUEST_1K
            ),
        }
        bodies = [await check_asgi(f"sse {name}", call, stream=True) for name, call in runners.items()]
        if any(body.count(b"\n\n") != 100 for body in bodies):
            raise SystemExit("sse: expected 100 events on every side")
        calls = await acalls_for(runners, budget(options.quick, 0.4), high=5_000)
        return await acompare(
            runners,
            rounds=options.rounds,
            calls_per_round=calls,
            baseline="bare",
            title="sse, 100 events, 5 no-ops pre+post (and a no-op on server_message)",
        )

    figures = asyncio.run(run())
    found = figures["runners"]
    row("SSE 100 events (99 progress + result), 5 no-ops vs bare", found["wrapped"]["ratio"], 1.6)
    per_event = [
        (watched_us - plain_us) / 99
        for watched_us, plain_us in zip(
            found["wrapped+server_message"]["rounds_us"], found["wrapped"]["rounds_us"], strict=True
        )
    ]
    row(
        "SSE 100 events, + a no-op on server_message vs bare",
        found["wrapped+server_message"]["ratio"],
        1.6,
        extra=f"{statistics.median(per_event):.1f} us per progress event on top of the 5 no-ops",
    )
    return figures


ARGS = {"text": "hello world", "count": 3}


def ours_manager(kind: type[mw.Plugin], count: int) -> mw.PluginManager:
    manager = mw.PluginManager({})
    for index in range(count):
        manager.register(kind(mw.PluginConfig(name=f"p{index}", kind=f"{__name__}.{kind.__name__}")))
    return manager


def cpex_manager(count: int, directory: Path) -> Any:
    from cpex.framework import PluginManager

    (directory / "cpex_hot_noop.py").write_text(
        "from cpex.framework import Plugin, PluginResult\n"
        "class Noop(Plugin):\n"
        "    async def tool_pre_invoke(self, payload, context):\n"
        "        return PluginResult(continue_processing=True)\n"
    )
    entries = "".join(
        f"  - name: p{index}\n    kind: cpex_hot_noop.Noop\n    hooks: [tool_pre_invoke]\n"
        f"    mode: sequential\n    priority: {index}\n"
        for index in range(count)
    )
    path = directory / f"cpex_hot_{count}.yaml"
    path.write_text(f"plugins:\n{entries}plugin_dirs: []\n")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    PluginManager.reset()
    return PluginManager(str(path), timeout=30)


def section_executor(options: Any) -> dict[str, Any]:
    try:
        import cpex.framework as cpex
    except ImportError:
        print("executor: cpex is not installed; skipped")
        return {}
    ours = ours_manager(Noop, 5)
    payload = mw.ToolPreInvokePayload(name="echo", args=ARGS)
    cpex_payload = cpex.ToolPreInvokePayload(name="echo", args=ARGS)
    hook = mw.HookType.TOOL_PRE_INVOKE
    ours.invoke_sync(hook, payload)
    with tempfile.TemporaryDirectory() as tmp:

        async def run() -> dict[str, Any]:
            theirs = cpex_manager(5, Path(tmp))
            await theirs.initialize()

            # invoke_sync runs a chain of sync plugins on the calling thread,
            # the event loop's here; the coroutine wrapper is counted against us.
            async def ours_call() -> None:
                ours.invoke_sync(hook, payload, mw.GlobalContext(request_id="r"))

            async def cpex_call() -> None:
                await theirs.invoke_hook("tool_pre_invoke", cpex_payload, cpex.GlobalContext(request_id="r"))

            runners = {"ours invoke_sync": ours_call, "cpex invoke_hook": cpex_call}
            result = await theirs.invoke_hook("tool_pre_invoke", cpex_payload, cpex.GlobalContext(request_id="r"))
            if not result[0].continue_processing:
                raise SystemExit(f"executor: cpex answered {result}")
            calls = await acalls_for(runners, budget(options.quick, 0.4), high=50_000)
            try:
                return await acompare(
                    runners,
                    rounds=options.rounds,
                    calls_per_round=calls,
                    baseline="ours invoke_sync",
                    title="executor, 5 no-op sync plugins",
                )
            finally:
                await theirs.shutdown()

        figures = asyncio.run(run())
    ours.close()
    row(
        "executor, 5 sync no-ops: cpex invoke_hook / ours invoke_sync",
        figures["runners"]["cpex invoke_hook"]["ratio"],
        30,
        higher=True,
    )
    return figures


def section_hop(options: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hook = mw.HookType.TOOL_PRE_INVOKE
    for count in (1, 5):
        sync_manager = ours_manager(Noop, count)
        async_manager = ours_manager(AsyncNoop, count)
        payload = mw.ToolPreInvokePayload(name="echo", args=ARGS)
        runners = {
            "sync plugins": lambda m=sync_manager, p=payload: m.invoke_sync(hook, p, mw.GlobalContext(request_id="r")),
            "async plugins": lambda m=async_manager, p=payload: m.invoke_sync(
                hook, p, mw.GlobalContext(request_id="r")
            ),
        }
        for call in runners.values():
            call()
        calls = calls_for(runners, budget(options.quick, 0.3), high=20_000)
        figures = compare(
            runners,
            rounds=options.rounds,
            calls_per_round=calls,
            baseline="sync plugins",
            title=f"hop, invoke_sync, {count} no-op plugin(s)",
        )
        us = figures["runners"]["async plugins"]["us_per_call"]
        hop = per_round(figures, lambda t: t["async plugins"] - t["sync plugins"])
        stable = (us["max"] - us["min"]) <= 0.5 * us["median"]
        row(
            f"invoke_sync, {count} async no-op(s): us per call",
            us,
            15,
            unit="us",
            extra=f"(hop alone {hop['median']:.1f} us; {'stable' if stable else 'UNSTABLE'})",
            passed=us["median"] <= 15 and stable,
        )
        out[f"{count}"] = {**figures, "hop_us": hop, "stable": stable}
        sync_manager.close()
        async_manager.close()
    return out


SECTIONS: dict[str, Callable[[Any], Any]] = {
    "asgi": section_asgi,
    "unrelated": section_unrelated,
    "large": section_large,
    "wsgi": section_wsgi,
    "sse": section_sse,
    "executor": section_executor,
    "hop": section_hop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", nargs="*", default=["all"], choices=[*SECTIONS, "all"])
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"rounds per comparison (at least {MIN_ROUNDS})")
    parser.add_argument("--quick", action="store_true", help="a quarter of the time per run")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    options = parser.parse_args()
    if options.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}")
    chosen = list(SECTIONS) if "all" in options.section else options.section
    print(f"python {sys.version.split()[0]}, {options.rounds} rounds{', quick' if options.quick else ''}\n")
    results = {name: SECTIONS[name](options) for name in chosen}
    print(f"{'measure':<58} {'median':>11} {'min-max':>13}  {'target':<10} verdict")
    for line in ROWS:
        print(
            f"{line['measure']:<58} {line['median']:11.2f} {line['min']:6.2f}-{line['max']:<6.2f}"
            f"  {line['target']:<10} {line['verdict']} {line['extra']}"
        )
    if options.json:
        Path(options.json).write_text(json.dumps({"rows": ROWS, "sections": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
