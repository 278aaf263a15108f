"""
Everything server for the MCP conformance suite
===============================================

An official-SDK ``MCPServer`` over Streamable HTTP that offers every tool,
prompt, resource and behaviour the server scenarios of
``@modelcontextprotocol/conformance`` exercise, under the names the suite
looks for: content of each kind, logging and progress notifications,
sampling and elicitation requests back to the client, completion, resource
subscriptions, list-changed notifications, the SEP-2322 input-required
(multi-round-trip) flows of the 2026-07-28 wire, and an SSE stream that the
server closes mid-call and resumes from an in-memory event store when the
client reconnects with ``Last-Event-ID`` (SEP-1699).

:func:`build_app` returns a fresh ASGI app each call (a session manager runs
only once), so a test can serve it bare and wrapped in ``PluginMiddleware``.
To run it by hand::

    python -m tests.conformance.everything_server --port 3001 [--wrap]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
from typing import Annotated, Any, Literal

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.server.mcpserver.tools import Tool
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    JSONRPCMessage,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

import mcp_plugin_mw
from tests.conformance import noop_plugins

__all__ = ["PATH", "MemoryEventStore", "build_app", "build_server"]

log = logging.getLogger(__name__)

PATH = "/mcp"
"""Where the app serves MCP."""

RETRY_MS = 100
"""The SSE ``retry:`` the server announces, so a closed stream is resumed quickly."""

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
"""A 1x1 PNG, base64."""

WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
"""A WAV file with one sample, base64."""


class MemoryEventStore(EventStore):
    """Every SSE event of the app's lifetime, in order; ids are positions (``"1"``, ``"2"``, ...).

    ``replay_events_after`` resends the later events of the stream that the
    given id belongs to; priming events (no message) only hold a place.
    """

    def __init__(self) -> None:
        self._events: list[tuple[str, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        self._events.append((stream_id, message))
        return str(len(self._events))

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        if not last_event_id.isdigit() or not 1 <= int(last_event_id) <= len(self._events):
            return None
        position = int(last_event_id)
        stream_id = self._events[position - 1][0]
        for index, (stream, message) in enumerate(self._events[position:], start=position + 1):
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, str(index)))
        return stream_id


# Schemas the elicitation tools ask the client to fill in.


class UserResponse(BaseModel):
    response: str = Field(description="User's response")


class DefaultsForm(BaseModel):
    """SEP-1034: a default for every primitive type."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: Literal["active", "inactive", "pending"] = Field(default="active", description="User status")
    verified: bool = Field(default=True, description="Verification status")


def _options(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"const": value, "title": title} for value, title in pairs]


class EnumsForm(BaseModel):
    """SEP-1330: each way an enum can be spelled (the field names are the suite's)."""

    untitledSingle: str = Field(
        description="Simple enum without titles", json_schema_extra={"enum": ["active", "inactive", "pending"]}
    )
    titledSingle: str = Field(
        description="Enum with titled options (oneOf)",
        json_schema_extra={
            "oneOf": _options(("low", "Low Priority"), ("medium", "Medium Priority"), ("high", "High Priority"))
        },
    )
    untitledMulti: list[str] = Field(
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(
        description="Multi-select with titled options",
        json_schema_extra={
            "items": {"anyOf": _options(("feature", "New Feature"), ("bug", "Bug Fix"), ("docs", "Documentation"))}
        },
    )
    legacyEnum: str = Field(
        description="Legacy enum with enumNames",
        json_schema_extra={
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    )


SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}
"""The input schema of ``json_schema_2020_12_tool``: the 2020-12 keywords the suite checks survive ``tools/list``."""


def _form(message: str, **properties: str) -> ElicitRequest:
    """A form elicitation asking for the given required properties (name -> JSON type)."""
    schema = {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in properties.items()},
        "required": list(properties),
    }
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(prompt: str, max_tokens: int) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=max_tokens))


def _field(answer: Any, name: str) -> Any:
    """``name`` from an accepted elicitation answer, else None."""
    if isinstance(answer, ElicitResult) and answer.content:
        return answer.content.get(name)
    return None


def _text(content: str) -> TextContent:
    return TextContent(type="text", text=content)


def _embedded(uri: str, text: str, mime_type: str = "text/plain") -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime_type, text=text))


def _json_schema_tool() -> Tool:
    def json_schema_2020_12_tool() -> str:
        """Declares a JSON Schema 2020-12 input schema (SEP-1613)."""
        return "json_schema_2020_12_tool"

    tool = Tool.from_function(json_schema_2020_12_tool)
    tool.parameters = SCHEMA_2020_12
    return tool


def _add_content_tools(server: MCPServer) -> None:
    @server.tool()
    def test_simple_text() -> str:
        """Answers with one text block."""
        return "This is a simple text response for testing."

    @server.tool()
    def test_image_content() -> list[ImageContent]:
        """Answers with one PNG image block."""
        return [ImageContent(type="image", data=PNG, mime_type="image/png")]

    @server.tool()
    def test_audio_content() -> list[AudioContent]:
        """Answers with one WAV audio block."""
        return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]

    @server.tool()
    def test_embedded_resource() -> list[EmbeddedResource]:
        """Answers with one embedded text resource."""
        return [_embedded("test://embedded-resource", "This is an embedded resource content.")]

    @server.tool()
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        """Answers with text, an image and an embedded resource."""
        return [
            _text("Multiple content types test:"),
            ImageContent(type="image", data=PNG, mime_type="image/png"),
            _embedded("test://mixed-content-resource", json.dumps({"test": "data", "value": 123}), "application/json"),
        ]

    @server.tool()
    def test_error_handling() -> str:
        """Always fails, so the result is an error result."""
        raise RuntimeError("This tool intentionally returns an error for testing")

    @server.tool()
    def test_x_mcp_header(
        region: Annotated[
            str,
            Field(
                description="Sent again as the Mcp-Param-Region header", json_schema_extra={"x-mcp-header": "Region"}
            ),
        ] = "<none>",
    ) -> str:
        """Has an argument mirrored into a header (SEP-2243)."""
        return f"region={region}"


def _add_notifying_tools(server: MCPServer) -> None:
    @server.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Sends three log notifications while it runs."""
        for line in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(line)
            await asyncio.sleep(0.05)
        return "Tool with logging executed successfully"

    @server.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Sends progress 0, 50 and 100 of 100, and answers with the progress token."""
        for step in (0, 50, 100):
            await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
            await asyncio.sleep(0.05)
        meta = ctx.request_context.meta
        return str(meta.get("progress_token") if meta else 0)

    @server.tool()
    async def test_reconnection(ctx: Context) -> str:
        """Closes its SSE stream mid-call; the rest arrives after the client resumes (SEP-1699)."""
        await ctx.info("Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        await ctx.info("After reconnect")
        return "Reconnection test completed"

    def _dynamic_tool() -> str:
        """Exists only for a moment inside test_trigger_tool_change."""
        return "dynamic"

    def _dynamic_prompt() -> str:
        """Exists only for a moment inside test_trigger_prompt_change."""
        return "dynamic"

    @server.tool()
    async def test_trigger_tool_change(ctx: Context) -> str:
        """Changes the tool list and says so to subscriptions/listen streams (SEP-2575)."""
        server.add_tool(_dynamic_tool, name="test_dynamic_tool")
        server.remove_tool("test_dynamic_tool")
        await ctx.notify_tools_changed()
        return "tool list changed"

    @server.tool()
    async def test_trigger_prompt_change(ctx: Context) -> str:
        """Changes the prompt list and says so to subscriptions/listen streams (SEP-2575)."""
        server.add_prompt(Prompt.from_function(_dynamic_prompt, name="test_dynamic_prompt", description="dynamic"))
        server.remove_prompt("test_dynamic_prompt")
        await ctx.notify_prompts_changed()
        return "prompt list changed"


def _add_client_request_tools(server: MCPServer) -> None:
    @server.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's model to complete ``prompt``."""
        try:
            # Tied to this request, so it travels on this call's stream rather than the standalone GET stream.
            result = await ctx.session.create_message(
                messages=[SamplingMessage(role="user", content=_text(prompt))],
                max_tokens=100,
                related_request_id=ctx.request_id,
            )
        except Exception as exc:
            return f"Sampling not supported or error: {exc}"
        return f"LLM response: {result.content.text if result.content.type == 'text' else 'No response'}"

    async def elicit(ctx: Context, message: str, schema: type[BaseModel], label: str) -> str:
        try:
            result = await ctx.elicit(message=message, schema=schema)
        except Exception as exc:
            return f"Elicitation not supported or error: {exc}"
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"{label}: action={result.action}, content={content}"

    @server.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Asks the user for one free-text answer."""
        return await elicit(ctx, message, UserResponse, "User response")

    @server.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """Asks for a form whose every field has a default (SEP-1034)."""
        return await elicit(ctx, "Please provide user information", DefaultsForm, "Elicitation result")

    @server.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """Asks for a form with every enum spelling (SEP-1330)."""
        message = "Please select values using different enum schema types"
        return await elicit(ctx, message, EnumsForm, "Elicitation completed")

    @server.tool()
    async def test_missing_capability(ctx: Context) -> str:
        """Fails with a JSON-RPC error unless the client declared sampling."""
        capabilities = ctx.session.client_capabilities
        if capabilities is None or capabilities.sampling is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This tool requires the client 'sampling' capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return "Client declared sampling capability; proceeding."


def _add_input_required_tools(server: MCPServer) -> None:
    """SEP-2322: tools that answer with ``InputRequiredResult`` until the client sends the inputs back."""

    @server.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        """One elicitation round."""
        answers = ctx.input_responses or {}
        if "user_name" in answers:
            return f"Hello, {_field(answers['user_name'], 'name') or 'stranger'}!"
        return InputRequiredResult(input_requests={"user_name": _form("What is your name?", name="string")})

    @server.tool()
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        """One sampling round."""
        answers = ctx.input_responses or {}
        if "capital_question" in answers:
            answer = answers["capital_question"]
            ok = isinstance(answer, CreateMessageResult) and answer.content.type == "text"
            return f"Model said: {answer.content.text if ok else '?'}"
        return InputRequiredResult(
            input_requests={"capital_question": _sample("What is the capital of France?", max_tokens=100)}
        )

    @server.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        """One roots/list round."""
        answers = ctx.input_responses or {}
        if "client_roots" in answers:
            answer = answers["client_roots"]
            return f"Client exposed {len(answer.roots) if isinstance(answer, ListRootsResult) else 0} root(s)."
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})

    @server.tool()
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        """The request state must come back unchanged with the answer."""
        if "confirm" in (ctx.input_responses or {}) and ctx.request_state == "request-state-nonce":
            return "state-ok: confirmation received"
        return InputRequiredResult(
            input_requests={"confirm": _form("Please confirm", ok="boolean")}, request_state="request-state-nonce"
        )

    @server.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        """An elicitation, a sampling and a roots request in one round."""
        wanted = {"user_name", "greeting", "client_roots"}
        if wanted <= (ctx.input_responses or {}).keys():
            return "All inputs received."
        return InputRequiredResult(
            input_requests={
                "user_name": _form("What is your name?", name="string"),
                "greeting": _sample("Generate a greeting", max_tokens=50),
                "client_roots": ListRootsRequest(),
            },
            request_state="multiple-inputs",
        )

    @server.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        """Three rounds; the request state carries what earlier rounds learnt."""
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        answers = ctx.input_responses or {}
        if state["round"] == 1 and "step1" in answers:
            return InputRequiredResult(
                input_requests={"step2": _form("Step 2: What is your favorite color?", color="string")},
                request_state=json.dumps({"round": 2, "name": _field(answers["step1"], "name")}),
            )
        if state["round"] == 2 and "step2" in answers:
            return f"{state.get('name')} likes {_field(answers['step2'], 'color')}."
        # The first round, or an answer missing or out of order: start over.
        return InputRequiredResult(
            input_requests={"step1": _form("Step 1: What is your name?", name="string")},
            request_state=json.dumps({"round": 1}),
        )

    @server.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        """The SDK's sealed request state must reject an altered echo before this runs again."""
        if ctx.request_state is None:
            return InputRequiredResult(
                input_requests={"confirm": _form("Please confirm", ok="boolean")}, request_state="round-1"
            )
        return f"state-ok: {ctx.request_state}"

    @server.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> InputRequiredResult:
        """Asks only for what the client declared it can answer."""
        capabilities = ctx.client_capabilities
        wanted: dict[str, InputRequest] = {}
        if capabilities is None or capabilities.sampling is not None:
            wanted["sample"] = _sample("Say hello", max_tokens=50)
        if capabilities is None or capabilities.elicitation is not None:
            wanted["ask"] = _form("What is your name?", name="string")
        return InputRequiredResult(input_requests=wanted, request_state="capability-gated")


def _add_resources(server: MCPServer) -> None:
    @server.resource("test://static-text")
    def static_text_resource() -> str:
        """Static text."""
        return "This is the content of the static text resource."

    @server.resource("test://static-binary")
    def static_binary_resource() -> bytes:
        """Static binary (the PNG)."""
        return base64.b64decode(PNG)

    @server.resource("test://template/{id}/data")
    def template_resource(id: str) -> str:
        """A template: the id is substituted into the data."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource("test://watched-resource")
    def watched_resource() -> str:
        """A resource clients subscribe to."""
        return "Watched resource content"


def _add_prompts(server: MCPServer) -> None:
    @server.prompt()
    def test_simple_prompt() -> list[UserMessage]:
        """No arguments."""
        return [UserMessage(role="user", content=_text("This is a simple prompt for testing."))]

    @server.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        """Two required arguments."""
        return [UserMessage(role="user", content=_text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]

    @server.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        """Embeds the resource named by its argument."""
        return [
            UserMessage(role="user", content=_embedded(resourceUri, "Embedded resource content for testing.")),
            UserMessage(role="user", content=_text("Please process the embedded resource above.")),
        ]

    @server.prompt()
    def test_prompt_with_image() -> list[UserMessage]:
        """Contains an image."""
        return [
            UserMessage(role="user", content=ImageContent(type="image", data=PNG, mime_type="image/png")),
            UserMessage(role="user", content=_text("Please analyze the image above.")),
        ]

    @server.prompt()
    async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        """An input-required round from prompts/get (SEP-2322 outside tools)."""
        answers = ctx.input_responses or {}
        if "user_context" in answers:
            context = _field(answers["user_context"], "context") or "?"
            return [UserMessage(role="user", content=_text(f"Use the following context: {context}"))]
        return InputRequiredResult(
            input_requests={"user_context": _form("What context should the prompt use?", context="string")}
        )


def _add_handlers(server: MCPServer, subscriptions: set[str]) -> None:
    """logging/setLevel, resources/(un)subscribe and completion/complete."""

    async def set_level(ctx: ServerRequestContext, params: SetLevelRequestParams) -> EmptyResult:
        log.info("log level set to %s", params.level)
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        subscriptions.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        subscriptions.discard(str(params.uri))
        return EmptyResult()

    # MCPServer has no public registration for these three; its low-level server does.
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        return Completion(values=[], total=0, has_more=False)


def build_server() -> MCPServer:
    """A new server with everything registered."""
    server = MCPServer(name="mcp-plugin-mw-conformance-server", version="0.1.0", tools=[_json_schema_tool()])
    _add_content_tools(server)
    _add_notifying_tools(server)
    _add_client_request_tools(server)
    _add_input_required_tools(server)
    _add_resources(server)
    _add_prompts(server)
    _add_handlers(server, subscriptions=set())
    return server


def build_app() -> ASGIApp:
    """A new Streamable HTTP app (with its own event store) serving :func:`build_server` at :data:`PATH`."""
    return build_server().streamable_http_app(
        streamable_http_path=PATH, event_store=MemoryEventStore(), retry_interval=RETRY_MS
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the app (bare, or wrapped with ``--wrap``) until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument(
        "--wrap", action="store_true", help="wrap in PluginMiddleware with a no-op plugin on every hook"
    )
    args = parser.parse_args(argv)
    app = build_app()
    if args.wrap:
        app = mcp_plugin_mw.PluginMiddleware(app, config=noop_plugins.config())
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
