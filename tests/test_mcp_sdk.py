"""
End to end with the official MCP SDK
====================================

An ``MCPServer`` app wrapped by ``PluginMiddleware``, driven by the SDK's
``Client``: in process (httpx2's ``ASGITransport`` with the app's lifespan
running) and over uvicorn on 127.0.0.1; with JSON and SSE responses; in the
2026-07-28 (``mode="auto"``) and 2025-11-25 (``mode="legacy"``) protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer

import mcp_plugin_mw as mw

PLUGINS = {
    "plugins": [
        {"name": "mask", "kind": "tests.mcp_plugins.MaskSecret"},
        {"name": "shout", "kind": "tests.mcp_plugins.Shout", "flow": "response"},
        {"name": "polish", "kind": "tests.mcp_plugins.PromptPolish"},
        {"name": "redirect", "kind": "tests.mcp_plugins.ResourceRedirect"},
    ]
}

gate = threading.Event()
"""Released by the streaming test once the client has seen the first event."""


def build_server() -> MCPServer:
    server = MCPServer("e2e")

    @server.tool()
    def echo(text: str) -> str:
        return text

    @server.tool()
    async def slow(steps: int, ctx: Context) -> str:
        for step in range(steps):
            await ctx.report_progress(step + 1, steps, f"step {step + 1}")
        return "done"

    @server.tool()
    async def gated(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "first")
        released = await asyncio.to_thread(gate.wait, 10)
        await ctx.report_progress(2, 2, "second")
        return "released" if released else "not released"

    @server.prompt()
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @server.resource("res://item/{x}")
    def item(x: str) -> str:
        return f"item {x}"

    return server


@contextlib.asynccontextmanager
async def in_process(json_response: bool, config: Any = None) -> AsyncIterator[tuple[str, httpx2.AsyncClient]]:
    inner = build_server().streamable_http_app(json_response=json_response)
    app = mw.PluginMiddleware(inner, config=config or PLUGINS)
    async with inner.router.lifespan_context(inner):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            yield "http://127.0.0.1:8000/mcp", http


@contextlib.contextmanager
def served(json_response: bool, config: Any = None) -> Iterator[str]:
    inner = build_server().streamable_http_app(json_response=json_response)
    app = mw.PluginMiddleware(inner, config=config or PLUGINS)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.asynccontextmanager
async def connect(transport: str, json_response: bool, mode: str) -> AsyncIterator[Client]:
    if transport == "asgi":
        async with (
            in_process(json_response) as (url, http),
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            yield client
    else:
        with served(json_response) as url:
            async with (
                httpx2.AsyncClient(timeout=httpx2.Timeout(10.0)) as http,
                Client(streamable_http_client(url, http_client=http), mode=mode) as client,
            ):
                yield client


def texts(result: Any) -> list[str]:
    return [item.text for item in result.content]


MATRIX = [
    pytest.param(transport, json_response, mode, id=f"{transport}-{'json' if json_response else 'sse'}-{mode}")
    for transport in ("asgi", "uvicorn")
    for json_response in (True, False)
    for mode in ("auto", "legacy")
]


@pytest.mark.parametrize(("transport", "json_response", "mode"), MATRIX)
async def test_tool_arguments_and_result_rewritten(transport: str, json_response: bool, mode: str) -> None:
    async with connect(transport, json_response, mode) as client:
        result = await client.call_tool("echo", {"text": "my secret plan"})
        assert texts(result) == ["MY [MASKED] PLAN"]
        # The post hook saw the state its pre hook left for this request.
        assert result.meta is not None
        assert result.meta["test/original"] == "my secret plan"
        plain = await client.call_tool("echo", {"text": "hello"})
        assert texts(plain) == ["HELLO"]


@pytest.mark.parametrize(("transport", "json_response", "mode"), MATRIX)
async def test_block_reaches_client_and_session_survives(transport: str, json_response: bool, mode: str) -> None:
    async with connect(transport, json_response, mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("echo", {"text": "a forbidden word"})
        error = caught.value
        assert error.code == -32602
        assert error.message == "Plugin Violation: the word 'forbidden' is not allowed"
        assert error.data["plugin_name"] == "mask"
        assert error.data["plugin_error_code"] == "FORBIDDEN_WORD"
        assert error.data["details"] == {"field": "text"}
        after = await client.call_tool("echo", {"text": "still here"})
        assert texts(after) == ["STILL HERE"]


@pytest.mark.parametrize(("transport", "json_response", "mode"), MATRIX)
async def test_prompt_and_resource_hooks_both_ways(transport: str, json_response: bool, mode: str) -> None:
    async with connect(transport, json_response, mode) as client:
        prompt = await client.get_prompt("greet", {"name": "ada lovelace"})
        assert prompt.messages[0].content.text == "Hello, Ada Lovelace! [checked]"
        # The URI changes on the way in: in auto mode the Mcp-Name header must follow.
        resource = await client.read_resource("res://item/private")
        assert resource.contents[0].text == "<<item public>>"
        other = await client.read_resource("res://item/7")
        assert other.contents[0].text == "<<item 7>>"


@pytest.mark.parametrize(("transport", "mode"), [(t, m) for t in ("asgi", "uvicorn") for m in ("auto", "legacy")])
async def test_progress_arrives_before_result(transport: str, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with connect(transport, False, mode) as client:
        result = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
        assert texts(result) == ["done"]
        assert seen == [1, 2, 3]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_first_event_streams_before_the_last_is_produced(mode: str) -> None:
    """The tool waits, after its first progress event, until the client has seen that event."""
    gate.clear()
    firsts: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        firsts.append(message)
        if message == "first":
            gate.set()

    with served(json_response=False) as url:
        async with (
            httpx2.AsyncClient(timeout=httpx2.Timeout(20.0)) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            result = await client.call_tool("gated", {}, progress_callback=on_progress)
    assert texts(result) == ["RELEASED"]
    assert firsts == ["first", "second"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_block_as_tool_result(mode: str) -> None:
    config = {**PLUGINS, "plugin_settings": {"block_tools_as_result": True}}
    async with (
        in_process(True, config) as (url, http),
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        result = await client.call_tool("echo", {"text": "forbidden"})
        assert result.is_error is True
        assert texts(result) == ["Plugin Violation: the word 'forbidden' is not allowed"]
        assert result.meta is not None
        assert result.meta["mcp-plugin-mw/violation"]["plugin_name"] == "mask"


async def test_plugin_error_is_internal_error_without_traceback() -> None:
    config = {"plugins": [{"name": "broken", "kind": "tests.mcp_plugins_broken.Broken"}]}
    async with (
        in_process(True, config) as (url, http),
        Client(streamable_http_client(url, http_client=http), mode="auto") as client,
    ):
        with pytest.raises(MCPError) as caught:
            await client.call_tool("echo", {"text": "x"})
        assert caught.value.code == -32603
        assert caught.value.data["plugin_name"] == "broken"
        assert "Traceback" not in str(caught.value.data)
        assert "kaboom" not in str(caught.value.data)


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18"])
async def test_older_revisions_hand_driven(version: str) -> None:
    """Clients of earlier revisions (initialize, session header, no _meta) get the same hooks."""
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with in_process(json_response=True) as (url, http):
        init = await http.post(
            url,
            headers=headers,
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            },
        )
        assert init.json()["result"]["protocolVersion"] == version
        headers = {**headers, "mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": version}
        ready = await http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ready.status_code == 202
        call = {"name": "echo", "arguments": {"text": "my secret"}}
        answer = await http.post(
            url, headers=headers, json={"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": call}
        )
        result = answer.json()["result"]
        assert answer.json()["id"] == 0
        assert result["content"][0]["text"] == "MY [MASKED]"
        assert "resultType" not in result
        call = {"name": "echo", "arguments": {"text": "forbidden"}}
        blocked = await http.post(
            url, headers=headers, json={"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": call}
        )
        assert blocked.json()["id"] == "b"
        assert blocked.json()["error"]["data"]["plugin_name"] == "mask"
