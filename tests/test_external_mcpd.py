"""
kind: mcpd — plugin executables written with the mcpd-plugins SDK
=================================================================

Each test turns a plugin class from ``tests/external_foreign/mcpd_plugins.py``
into an executable in ``tmp_path``; the middleware starts it as mcpd would
(``<exec> --address <socket> --network unix``) and talks gRPC to it. The app
is a small Starlette JSON app behind ``PluginMiddleware``: what the plugin
changes must reach the app (mcpd itself drops it), rejections answer with
the plugin's status, and responses are changed as the plugin says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import mcp_plugin_mw as mw
from tests.external_foreign import need

need("grpc")
need("mcpd_plugins")
httpx2 = need("httpx2")
need("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tests.external_foreign.mcpd_plugins import script  # noqa: E402

BOUND = 20.0
"""Seconds any wait in these tests may take."""


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "received": json.loads(body) if body else None,
            "length": len(body),
            "content_length": request.headers.get("content-length"),
            "rewritten": request.headers.get("x-rewritten"),
            "greeting": request.headers.get("x-greeting"),
            "query": request.url.query,
        }
    )


async def secret(request: Request) -> Response:
    return JSONResponse({"secret": True})


async def text(request: Request) -> Response:
    return Response("plain text, not JSON", media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["POST"]),
        Route("/secret", secret, methods=["GET"]),
        Route("/text", text, methods=["GET"]),
    ]
)


def entry(tmp_path: Path, plugin: str = "Rewriter", **extra: Any) -> dict[str, Any]:
    return {"name": "rw", "kind": "mcpd", "exec": str(script(tmp_path, plugin)), **extra}


@contextlib.asynccontextmanager
async def client(*entries: dict[str, Any]) -> AsyncIterator[tuple[Any, mw.PluginMiddleware]]:
    app = mw.PluginMiddleware(APP, config={"plugins": list(entries)})
    try:
        async with asyncio.timeout(BOUND):
            await app.manager.ainitialize()
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            yield http, app
    finally:
        async with asyncio.timeout(BOUND):
            await app.manager.aclose()


async def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------
# Behind the middleware
# --------------------------------------------------------------------------


async def test_modified_request_reaches_the_app(tmp_path: Path) -> None:
    async with client(entry(tmp_path, config={"greeting": "hello"})) as (http, _):
        response = await http.post("/echo?a=1", json={"text": "hi"})
        assert response.status_code == 200
        seen = response.json()
        # Body and headers as the plugin changed them, with a Content-Length that fits.
        assert seen["received"]["text"] == "HI"
        assert seen["received"]["seen"] == "/echo?a=1"  # request_uri keeps the query string
        assert seen["rewritten"] == "yes"
        assert seen["greeting"] == "hello"  # sent with Configure
        assert seen["content_length"] == str(seen["length"])
        assert seen["query"] == "a=1"


async def test_rejection_blocks_with_the_plugin_status(tmp_path: Path) -> None:
    async with client(entry(tmp_path)) as (http, _):
        response = await http.post("/echo", json={"text": "reject"})
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "7"
        problem = response.json()
        assert problem["code"] == "MCPD_REJECTED"
        assert problem["plugin_name"] == "rw"
        assert problem["detail"] == "slow down"
        assert problem["details"]["body"] == "slow down"


async def test_response_is_modified(tmp_path: Path) -> None:
    async with client(entry(tmp_path)) as (http, app):
        response = await http.post("/echo", json={"n": 1})
        assert response.status_code == 200
        assert response.headers["x-annotated"] == "1"
        data = response.json()
        assert data["annotated"] is True
        assert data["status_seen"] == 200
        assert data["received"] == {"n": 1}
        assert response.headers["content-length"] == str(len(response.content))
        status = app.manager.status()["rw"]
        assert (status.kind, status.loaded, status.healthy, status.restarts) == ("mcpd", True, True, 0)
        assert (status.last_latency or 0) > 0


async def test_response_rejection_answers_with_the_plugin_status(tmp_path: Path) -> None:
    async with client(entry(tmp_path)) as (http, _):
        response = await http.get("/secret")
        assert response.status_code == 451
        assert response.json()["detail"] == "unavailable"


async def test_pass_through_answers_change_nothing(tmp_path: Path) -> None:
    # mcpd blanks the response when a content plugin answers with the defaults; we keep it.
    async with client(entry(tmp_path, "PassThrough")) as (http, _):
        response = await http.post("/echo", content=b'{"text": "as is"}')
        assert response.json()["received"] == {"text": "as is"}
        plain = await http.get("/text")
        assert plain.status_code == 200
        assert plain.text == "plain text, not JSON"


async def test_capabilities_and_flows_decide_where_it_runs(tmp_path: Path) -> None:
    # The plugin announces only the request flow: its response handler (which would fail) never runs.
    async with client(entry(tmp_path, "RequestOnly")) as (http, app):
        assert app.manager.plugins[0].supported_hooks == {mw.HookType.HTTP_PRE_REQUEST}
        response = await http.post("/echo", json={"text": "hi"})
        assert response.status_code == 200
        assert response.json()["received"]["text"] == "HI"
    # Configured flows and our flow narrow the hooks before anything starts.
    only_response = mw.PluginManager({"plugins": [entry(tmp_path, flows=["response"])]})
    assert only_response.plugins[0].hooks == [mw.HookType.HTTP_POST_REQUEST]
    only_request = mw.PluginManager({"plugins": [entry(tmp_path, flow="request")]})
    assert only_request.plugins[0].hooks == [mw.HookType.HTTP_PRE_REQUEST]
    async with client(entry(tmp_path, flows=["response"])) as (http, _):
        response = await http.post("/echo", json={"text": "hi"})
        assert response.json()["received"] == {"text": "hi"}
        assert response.json()["annotated"] is True


async def test_commit_hash_is_checked(tmp_path: Path) -> None:
    async with client(entry(tmp_path, commit_hash="abc123")) as (_, app):
        plugin = app.manager.plugins[0]
        assert plugin.metadata["commit_hash"] == "abc123"
        assert plugin.metadata["name"] == "rewriter"
    manager = mw.PluginManager({"plugins": [entry(tmp_path, commit_hash="deadbeef")]})
    with pytest.raises(RuntimeError, match=r"commit hash mismatch: configured 'deadbeef', plugin reports 'abc123'"):
        async with asyncio.timeout(BOUND):
            await manager.ainitialize()
    assert not manager.plugins[0].status().loaded


async def test_crash_is_reported_and_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fast = {"restart": {"initial_delay": 0.05, "max_delay": 0.5}}
    async with client(entry(tmp_path, required=True, **fast)) as (http, app):
        plugin = app.manager.plugins[0]
        first_pid = plugin._process.process.pid
        crashed = await http.post("/echo", json={"text": "crash"})
        # Required (mode enforce): a failing plugin blocks.
        assert crashed.status_code == 500
        assert crashed.json()["code"] == "PLUGIN_ERROR"
        await wait_for(lambda: plugin.status().restarts == 1 and plugin.status().healthy, "the restart")
        # last_error holds the exit or the failed call, whichever was noticed last.
        assert app.manager.status()["rw"].last_error
        assert any("exited with code 3" in record.getMessage() for record in caplog.records)
        assert plugin._process.process.pid != first_pid
        again = await http.post("/echo", json={"text": "back"})
        assert again.json()["received"]["text"] == "BACK"


async def test_optional_plugin_that_is_down_lets_requests_through(tmp_path: Path) -> None:
    no_restart = {"restart": {"enabled": False}}
    async with client(entry(tmp_path, required=False, **no_restart)) as (http, app):
        await http.post("/echo", json={"text": "crash"})
        await wait_for(lambda: not app.manager.status()["rw"].healthy, "the crash to be noticed")
        response = await http.post("/echo", json={"text": "hi"})
        assert response.status_code == 200
        assert response.json()["received"] == {"text": "hi"}


async def test_shutdown_ends_the_process_and_removes_the_socket(tmp_path: Path) -> None:
    async with client(entry(tmp_path)) as (_, app):
        process = app.manager.plugins[0]._process
        pid, directory = process.process.pid, process.directory
        assert os.path.exists(os.path.join(directory, "plugin.sock"))
    assert process.process.poll() is not None
    assert not os.path.exists(directory)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not app.manager.plugins[0].status().loaded


def test_sync_callers(tmp_path: Path) -> None:
    with mw.PluginManager({"plugins": [entry(tmp_path)]}) as manager:
        payload = mw.HttpPreRequestPayload(method="POST", path="/x", body=b'{"text": "sync"}')
        result = manager.invoke_sync("http_pre_request", payload)
        assert json.loads(result.modified_payload.body)["text"] == "SYNC"


# --------------------------------------------------------------------------
# Configuration and start errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"hooks": ["tool_pre_invoke"]}, r"kind mcpd runs on http_pre_request and http_post_request .*tool_pre_invoke"),
        ({"bogus": 1}, r"plugins\[0\]\.bogus: unknown key"),
        ({"flows": ["sideways"]}, r"plugins\[0\]\.flows\[0\]: Input should be 'request' or 'response'"),
        ({"exec": ""}, r"plugins\[0\]\.exec: String should have at least 1 character"),
    ],
)
def test_configuration_errors(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(mw.ConfigError, match=message):
        mw.PluginManager({"plugins": [{**entry(tmp_path), **extra}]})


async def test_missing_or_silent_executable_fails_the_start(tmp_path: Path) -> None:
    missing = mw.PluginManager({"plugins": [{"name": "x", "kind": "mcpd", "exec": str(tmp_path / "nope")}]})
    with pytest.raises(RuntimeError, match=r"cannot start .*nope"):
        await missing.ainitialize()
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexit 2\n")
    silent.chmod(0o755)
    exits = mw.PluginManager({"plugins": [{"name": "x", "kind": "mcpd", "exec": str(silent)}]})
    with pytest.raises(RuntimeError, match=r"exited with code 2 before listening"):
        async with asyncio.timeout(BOUND):
            await exits.ainitialize()
    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 30\n")
    sleeper.chmod(0o755)
    slow = mw.PluginManager({"plugins": [{"name": "x", "kind": "mcpd", "exec": str(sleeper), "start_timeout": 0.3}]})
    with pytest.raises(RuntimeError, match=r"not ready within 0.3s"):
        async with asyncio.timeout(BOUND):
            await slow.ainitialize()
