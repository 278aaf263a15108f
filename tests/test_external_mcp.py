"""
transport: mcp — cpex external plugin servers over MCP
======================================================

cpex 0.1.x's own external plugin server runtime, started as a real process
on 127.0.0.1 (and over stdio), hosts a small cpex plugin from
``tests/external_foreign`` and PyPI's PII filter; our ``McpPlugin`` calls
them with the official ``mcp`` SDK client, through ``PluginManager`` and
behind ``PluginMiddleware`` with the SDK client on the other side too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import mcp_plugin_mw as mw
from mcp_plugin_mw.models import Outcome
from tests.external_foreign import need

need("cpex")
need("cpex_pii_filter")
httpx2 = need("httpx2")
mcp = need("mcp")

from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402

from tests.external_foreign.cpex_server import PII, TAGGER, CpexServer  # noqa: E402

BOUND = 30.0
"""Seconds any wait in these tests may take."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CpexServer]:
    running = CpexServer(tmp_path_factory.mktemp("cpex"), [TAGGER, PII]).start()
    try:
        yield running
    finally:
        running.stop()


def remote(server: CpexServer, name: str = "tagger", **extra: Any) -> dict[str, Any]:
    entry = {
        "name": name,
        "kind": "external",
        "transport": "mcp",
        "mcp": {"proto": "STREAMABLEHTTP", "url": server.url},
        "hooks": ["tool_pre_invoke", "tool_post_invoke"],
    }
    return entry | extra


@contextlib.asynccontextmanager
async def started(*entries: dict[str, Any]) -> AsyncIterator[mw.PluginManager]:
    manager = mw.PluginManager({"plugins": list(entries)})
    try:
        async with asyncio.timeout(BOUND):
            await manager.ainitialize()
        yield manager
    finally:
        async with asyncio.timeout(BOUND):
            await manager.aclose()


def tool_pre(text: str) -> mw.ToolPreInvokePayload:
    return mw.ToolPreInvokePayload(name="echo", args={"text": text})


# --------------------------------------------------------------------------
# Through PluginManager
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_hooks_run_remotely_and_state_carries_over(server: CpexServer, mode: str) -> None:
    entry = remote(server, mcp={"proto": "streamablehttp", "url": server.url, "mode": mode})
    async with started(entry) as manager:
        context = mw.GlobalContext(request_id="r1", user="alice")
        pre = await manager.invoke("tool_pre_invoke", tool_pre("hi"), context)
        assert pre.modified_payload == tool_pre("hi [REMOTE]")
        assert pre.metadata == {"tagger": "REMOTE"}
        # The state the remote plugin set comes back, and goes out again with the post hook.
        assert context.plugin_contexts["tagger"].state == {"seen": "hi"}
        assert context.state == {"tagger": True}
        result = {"content": [{"type": "text", "text": "HI"}], "isError": False}
        post = await manager.invoke("tool_post_invoke", mw.ToolPostInvokePayload(name="echo", result=result), context)
        assert post.modified_payload.result["content"][-1] == {"type": "text", "text": "pre saw: hi"}
        status = manager.status()["tagger"]
        assert status.loaded
        assert status.healthy
        assert (status.last_latency or 0) > 0
        plugin = manager.plugins[0]
        assert plugin.remote_config["kind"] == "tests.external_foreign.cpex_plugins.Tagger"


async def test_violations_and_errors(server: CpexServer) -> None:
    async with started(remote(server)) as manager:
        denied = await manager.invoke("tool_pre_invoke", tool_pre("deny"))
        assert denied.violation == mw.PluginViolation(
            reason="Denied",
            description="the word 'deny' is not allowed",
            code="TAGGER_DENY",
            details={"word": "deny"},
            http_status_code=422,
            mcp_error_code=-32001,
            plugin_name="tagger",
        )
        crashed = await manager.invoke("tool_pre_invoke", tool_pre("crash"))
        assert crashed.violation is not None
        assert crashed.violation.code == "PLUGIN_ERROR"
        assert crashed.records[0].outcome is Outcome.ERROR
        assert "tagger crashed" in (crashed.records[0].error or "")
        assert "tagger crashed" in (manager.status()["tagger"].last_error or "")
    async with started(remote(server, mode="permissive")) as manager:
        assert (await manager.invoke("tool_pre_invoke", tool_pre("deny"))).continue_processing


def test_sync_callers(server: CpexServer) -> None:
    with mw.PluginManager({"plugins": [remote(server)]}) as manager:
        assert manager.invoke_sync("tool_pre_invoke", tool_pre("sync")).modified_payload == tool_pre("sync [REMOTE]")


async def test_pypi_plugin_hosted_remotely(server: CpexServer) -> None:
    entry = remote(server, name="PIIFilter", hooks=["tool_pre_invoke"])
    async with started(entry) as manager:
        result = await manager.invoke("tool_pre_invoke", tool_pre("mail bob@example.com"))
        assert result.modified_payload.args == {"text": "mail [REDACTED]"}


async def test_stdio_server(server: CpexServer) -> None:
    entry = remote(server, mcp=server.stdio_entry())
    async with started(entry) as manager:
        assert (await manager.invoke("tool_pre_invoke", tool_pre("x"))).modified_payload == tool_pre("x [REMOTE]")


# --------------------------------------------------------------------------
# Behind the middleware, with the MCP SDK client
# --------------------------------------------------------------------------


def build_app() -> MCPServer:
    app = MCPServer("mcp-transport-e2e")

    @app.tool()
    def echo(text: str) -> str:
        return text

    return app


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_behind_the_middleware(server: CpexServer, mode: str) -> None:
    inner = build_app().streamable_http_app(json_response=False)
    app = mw.PluginMiddleware(inner, config={"plugins": [remote(server)]})
    try:
        async with inner.router.lifespan_context(inner), asyncio.timeout(BOUND):
            transport = httpx2.ASGITransport(app=app)
            async with (
                httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http,
                mcp.Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http), mode=mode) as client,
            ):
                echoed = await client.call_tool("echo", {"text": "hello"})
                texts = [item.text for item in echoed.content]
                # The server got the tagged argument; the post hook, with the pre hook's state, added a line.
                assert texts == ["hello [REMOTE]", "pre saw: hello"]
                with pytest.raises(mcp.MCPError) as caught:
                    await client.call_tool("echo", {"text": "deny"})
                assert caught.value.code == -32001
                assert caught.value.data["plugin_error_code"] == "TAGGER_DENY"
                assert caught.value.data["plugin_name"] == "tagger"
    finally:
        await app.manager.aclose()


# --------------------------------------------------------------------------
# Connection life cycle
# --------------------------------------------------------------------------


async def test_reconnects_after_the_server_restarts(tmp_path: Path) -> None:
    own = CpexServer(tmp_path, [TAGGER]).start()
    try:
        entry = remote(own, reconnect={"initial_delay": 0.05, "max_delay": 0.5})
        async with started(entry) as manager:
            assert (await manager.invoke("tool_pre_invoke", tool_pre("a"))).modified_payload == tool_pre("a [REMOTE]")
            own.stop()
            down = await manager.invoke("tool_pre_invoke", tool_pre("b"))
            assert down.violation is not None
            assert down.violation.code == "PLUGIN_ERROR"
            assert not manager.status()["tagger"].healthy
            own.process = CpexServer(tmp_path, [TAGGER], port=own.port).start().process  # stopped below
            deadline = time.monotonic() + BOUND
            while not manager.status()["tagger"].healthy:
                assert time.monotonic() < deadline, manager.status()["tagger"]
                await asyncio.sleep(0.05)
            assert manager.status()["tagger"].restarts == 1
            back = await manager.invoke("tool_pre_invoke", tool_pre("c"))
            assert back.modified_payload == tool_pre("c [REMOTE]")
    finally:
        own.stop()


async def test_start_errors(server: CpexServer) -> None:
    unknown_hook = mw.PluginManager({"plugins": [remote(server, hooks=["resource_pre_fetch"])]})
    with pytest.raises(RuntimeError, match=r"hooks resource_pre_fetch listed but the remote plugin 'tagger' handles"):
        await unknown_hook.ainitialize()
    unknown_name = mw.PluginManager({"plugins": [remote(server, name="nobody")]})
    with pytest.raises(RuntimeError, match=r"the MCP plugin server has no plugin named 'nobody'"):
        await unknown_name.ainitialize()
    nothing = remote(server, mcp={"proto": "STREAMABLEHTTP", "url": "http://127.0.0.1:9/mcp"}, start_timeout=0.3)
    unreachable = mw.PluginManager({"plugins": [nothing]})
    with pytest.raises(RuntimeError, match=r"cannot reach the MCP plugin server within 0.3s"):
        async with asyncio.timeout(BOUND):
            await unreachable.ainitialize()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mcp": {"proto": "STREAMABLEHTTP"}}, r"plugins\[0\]\.mcp: proto STREAMABLEHTTP needs 'url'"),
        ({"mcp": {"proto": "STDIO"}}, r"plugins\[0\]\.mcp: proto STDIO needs exactly one of"),
        ({"mcp": {"proto": "SSE", "url": "http://x"}}, r"plugins\[0\]\.mcp\.proto: Input should be"),
        ({"hooks": None}, r"plugins\[0\]\.hooks: required for kind external"),
    ],
)
def test_configuration_errors(server: CpexServer, change: dict[str, Any], message: str) -> None:
    with pytest.raises(mw.ConfigError, match=message):
        mw.PluginManager({"plugins": [remote(server) | change]})
