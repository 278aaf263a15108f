"""
Every message a guardrail must see, end to end with the official MCP SDK
========================================================================

An ``MCPServer`` wrapped by ``PluginMiddleware`` and driven by the SDK's
``Client`` in both modes (``legacy``: the 2025-11-25 handshake; ``auto``:
2026-07-28), with JSON and SSE responses. What a server sends outside a
result (progress, log messages, sampling and elicitation requests) and what
a client sends outside a call (notifications, its answers to the server's
requests) reach the plugins; list results are narrowed by ``tool_policy``.
Each test observes the effect where it lands: on the client for what the
server sends, in the server's own records for what the client sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

import httpx2
import pytest
from mcp import Client, MCPError, types
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve, Sample
from pydantic import BaseModel, Field

import mcp_plugin_mw as mw
from tests.test_review import uvicorn_serving

MODES = ["legacy", "auto"]
BOTH = pytest.mark.parametrize(("mode", "json_response"), [(m, j) for m in MODES for j in (False, True)])

received: dict[str, Any] = {}
"""What the server's tools were given by the client, by tool."""


class Contact(BaseModel):
    email: str = Field(description="where to write, e.g. grace@example.com")


# Resolvers: the SDK sends these as requests mid-call in 2025-11-25 and
# embeds them in an input_required result in 2026-07-28.
def sample() -> Sample:
    text = types.TextContent(type="text", text="summarize mail from dave@example.com")
    return Sample(
        [types.SamplingMessage(role="user", content=text)],
        max_tokens=20,
        system_prompt="you may write to erin@example.com",
    )


def elicit() -> Elicit[Contact]:
    return Elicit("Which address? We have frank@example.com on file", Contact)


def build_server() -> MCPServer:
    server = MCPServer("messages")

    @server.tool()
    async def progress_mail(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "writing to alice@example.com")
        return "done"

    @server.tool()
    async def log_mail(ctx: Context) -> str:
        await ctx.info("contact bob@example.com")
        await ctx.info({"to": ["carol@example.com"], "count": 1})
        return "logged"

    @server.tool()
    async def ask_model(reply: Annotated[types.CreateMessageResult, Resolve(sample)]) -> str:
        content = reply.content
        received["ask_model"] = content.text if isinstance(content, types.TextContent) else repr(content)
        return "sampled"

    @server.tool()
    async def ask_user(answer: Annotated[Contact, Resolve(elicit)]) -> str:
        received["ask_user"] = answer.email
        return "asked"

    @server.tool()
    def visible() -> str:
        return "visible"

    @server.tool()
    def secret_admin() -> str:
        return "admin"

    return server


class Seen(mw.Plugin):
    """Records the methods of the messages it sees, class-wide; never has an opinion."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def server_message(self, payload: mw.ServerMessagePayload, context: mw.PluginContext) -> None:
        Seen.seen.append(("server", payload.method))

    def client_message(self, payload: mw.ClientMessagePayload, context: mw.PluginContext) -> None:
        Seen.seen.append(("client", payload.method if payload.method is not None else "response"))


class Describe(mw.Plugin):
    """Rewrites every tool description in a ``tools/list`` result."""

    def tool_post_list(self, payload: mw.ToolListPayload, context: mw.PluginContext) -> mw.PluginResult:
        tools = [{**tool, "description": f"[checked] {tool.get('description') or ''}"} for tool in payload.tools]
        return mw.PluginResult(modified_payload=payload.model_copy(update={"tools": tools}))


PII = {"plugins": [{"name": "pii", "kind": "pii_filter"}]}


@contextlib.asynccontextmanager
async def connect(config: Any, mode: str, json_response: bool, **callbacks: Any) -> AsyncIterator[Client]:
    # Over uvicorn on 127.0.0.1: the server's requests (sampling, elicitation)
    # must reach the client while the call that made them is still open.
    inner = build_server().streamable_http_app(json_response=json_response)
    with uvicorn_serving(mw.PluginMiddleware(inner, config=config)) as url:
        async with (
            httpx2.AsyncClient(timeout=httpx2.Timeout(10.0)) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode, **callbacks) as client,
        ):
            yield client


@BOTH
async def test_an_email_in_a_progress_message_is_masked(mode: str, json_response: bool) -> None:
    messages: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    async with connect(PII, mode, json_response) as client:
        result = await client.call_tool("progress_mail", {}, progress_callback=on_progress)
    assert not result.is_error
    if json_response:
        # A JSON response carries no progress: there is nothing to mask.
        assert messages == []
        return
    assert messages, "no progress reached the client"
    assert all("alice@example.com" not in (m or "") for m in messages), messages
    assert any("writing to" in (m or "") for m in messages), messages


@BOTH
async def test_an_email_in_a_log_message_is_masked(mode: str, json_response: bool) -> None:
    logged: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logged.append(params.data)

    async with connect(PII, mode, json_response, logging_callback=on_log, log_level="info") as client:
        result = await client.call_tool("log_mail", {})
    assert not result.is_error
    if json_response:
        assert logged == []
        return
    assert len(logged) == 2, logged
    text = repr(logged)
    assert "bob@example.com" not in text, logged
    assert "carol@example.com" not in text, logged
    assert logged[0].startswith("contact ")
    assert logged[1]["count"] == 1


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_is_narrowed_by_tool_policy(mode: str) -> None:
    config = {"plugins": [{"name": "policy", "kind": "tool_policy", "config": {"deny_tools": ["secret_*"]}}]}
    async with connect(config, mode, False) as client:
        listed = await client.list_tools()
        names = {tool.name for tool in listed.tools}
        assert "visible" in names, names
        assert "secret_admin" not in names, names
        # Hidden is not the only guard: the call is refused as well.
        with pytest.raises(MCPError) as refused:
            await client.call_tool("secret_admin", {})
        assert "not allowed" in refused.value.message


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_post_list_plugin_rewrites_descriptions(mode: str) -> None:
    config = {"plugins": [{"name": "describe", "kind": f"{__name__}.Describe"}]}
    async with connect(config, mode, False) as client:
        listed = await client.list_tools()
    assert listed.tools
    assert all((tool.description or "").startswith("[checked]") for tool in listed.tools)


@pytest.mark.parametrize("mode", MODES)
async def test_message_hooks_see_progress_and_initialized(mode: str) -> None:
    Seen.seen.clear()
    config = {"plugins": [{"name": "seen", "kind": f"{__name__}.Seen"}]}
    async with connect(config, mode, False) as client:
        await client.call_tool("progress_mail", {}, progress_callback=_ignore_progress)
    assert ("server", "notifications/progress") in Seen.seen, Seen.seen
    # 2026-07-28 has no initialize handshake: its first client message is server/discover.
    first = "notifications/initialized" if mode == "legacy" else "server/discover"
    assert ("client", first) in Seen.seen, Seen.seen
    # A call belongs to the call hooks, subscribed or not.
    assert ("client", "tools/call") not in Seen.seen, Seen.seen


async def _ignore_progress(progress: float, total: float | None, message: str | None) -> None:
    return None


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_is_inspected_both_ways(mode: str) -> None:
    asked: list[types.CreateMessageRequestParams] = []

    async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="write to heidi@example.com"),
            model="test-model",
        )

    received.clear()
    async with connect(PII, mode, False, sampling_callback=sample) as client:
        result = await client.call_tool("ask_model", {})
    assert not result.is_error, result
    assert asked, "the sampling request did not reach the client"
    text = repr([params.model_dump() for params in asked])
    assert "dave@example.com" not in text, text
    assert "erin@example.com" not in text, text
    assert "summarize mail from" in text
    # The server got the client's answer masked.
    assert "heidi@example.com" not in received["ask_model"], received
    assert received["ask_model"].startswith("write to ")


@pytest.mark.parametrize("mode", MODES)
async def test_elicitation_is_inspected_both_ways(mode: str) -> None:
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"email": "ivan@example.com"})

    received.clear()
    async with connect(PII, mode, False, elicitation_callback=elicit) as client:
        result = await client.call_tool("ask_user", {})
    assert not result.is_error, result
    assert asked, "the elicitation request did not reach the client"
    text = repr([params.model_dump() for params in asked])
    assert "frank@example.com" not in text, text
    assert "grace@example.com" not in text, text
    assert "Which address?" in text
    assert "ivan@example.com" not in received["ask_user"], received


async def test_a_compressed_json_reply_is_not_passed_unread_by_server_message() -> None:
    # With only server_message watching, a JSON reply the plugins cannot read
    # (it might hold the server's own messages) is replaced, not passed.
    import gzip

    body = gzip.compress(b'[{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x@example.com"}}]')

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    wrapped = mw.PluginMiddleware(
        app, config={"plugins": [{"name": "seen", "kind": f"{__name__}.Seen", "hooks": ["server_message"]}]}
    )
    request = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=wrapped), base_url="http://127.0.0.1") as http:
        answer = await http.post("/mcp", content=request, headers={"content-type": "application/json"})
    assert answer.status_code == 502
    assert b"x@example.com" not in answer.content
    assert "cannot be inspected" in answer.json()["detail"]
