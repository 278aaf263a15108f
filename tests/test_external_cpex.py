"""
kind: cpex — unmodified cpex 0.1.x plugins in process
=====================================================

PyPI's ``cpex-pii-filter`` and ``cpex-secrets-detection`` behind
``PluginMiddleware`` on an ``MCPServer`` app, driven by the official MCP SDK
client; plus small cpex plugins from ``tests/external_foreign`` for state
carried from pre to post hook, ``@hook`` methods, raised violations and
errors, HTTP hooks, our modes and conditions, and load errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import mcp_plugin_mw as mw
from mcp_plugin_mw.models import Outcome
from tests.external_foreign import need

need("cpex")
need("cpex_pii_filter")
need("cpex_secrets_detection")
httpx2 = need("httpx2")
mcp = need("mcp")

from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"

GUARDS = {
    "plugins": [
        {
            "name": "secrets",
            "kind": "cpex",
            "plugin": "cpex_secrets_detection.secrets_detection.SecretsDetectionPlugin",
            "priority": 10,
            "config": {"block_on_detection": True},
        },
        {
            "name": "pii",
            "kind": "cpex_pii_filter.pii_filter.PIIFilterPlugin",  # a cpex class path works as kind too
            "priority": 20,
            "config": {"default_mask_strategy": "redact", "redaction_text": "[REDACTED]"},
        },
    ]
}


def build_server() -> MCPServer:
    server = MCPServer("cpex-e2e")

    @server.tool()
    def echo(text: str) -> str:
        return text

    @server.tool()
    def contact() -> str:
        return "write to alice@example.com"

    @server.prompt()
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @server.resource("res://keys")
    def keys() -> str:
        return f"aws_access_key_id = {AWS_KEY}"

    @server.resource("res://plain")
    def plain() -> str:
        return "nothing to see"

    return server


@contextlib.asynccontextmanager
async def sdk_client(config: Any, mode: str = "auto") -> AsyncIterator[Any]:
    inner = build_server().streamable_http_app(json_response=False)
    app = mw.PluginMiddleware(inner, config=config)
    try:
        async with inner.router.lifespan_context(inner):
            transport = httpx2.ASGITransport(app=app)
            async with (
                httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http,
                mcp.Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http), mode=mode) as client,
            ):
                yield client
    finally:
        await app.manager.aclose()


def text_of(result: Any) -> str:
    return " | ".join(item.text for item in result.content if getattr(item, "text", None) is not None)


# --------------------------------------------------------------------------
# PyPI plugins behind the middleware, seen from the SDK client
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_pii_masks_tool_arguments_and_results(mode: str) -> None:
    async with sdk_client(GUARDS, mode) as client:
        echoed = await client.call_tool("echo", {"text": "mail bob@example.com, SSN 123-45-6789"})
        assert not echoed.is_error
        # The server echoed what reached it: the arguments were masked on the way in.
        assert text_of(echoed) == "mail [REDACTED], SSN [REDACTED]"
        result = await client.call_tool("contact", {})
        assert text_of(result) == "write to [REDACTED]"
        assert result.structured_content == {"result": "write to [REDACTED]"}


async def test_pii_masks_prompt_arguments_and_results() -> None:
    async with sdk_client(GUARDS) as client:
        prompt = await client.get_prompt("greet", {"name": "bob@example.com"})
        assert prompt.messages[0].content.text == "Hello, [REDACTED]!"
    # Only the post hook: the server's own text is masked in the result.
    post_only = {"plugins": [{**GUARDS["plugins"][1], "hooks": ["prompt_post_fetch"]}]}
    async with sdk_client(post_only) as client:
        prompt = await client.get_prompt("greet", {"name": "bob@example.com"})
        assert prompt.messages[0].role == "user"
        assert prompt.messages[0].content.type == "text"
        assert prompt.messages[0].content.text == "Hello, [REDACTED]!"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_secret_in_arguments_is_blocked_with_the_plugin_code(mode: str) -> None:
    async with sdk_client(GUARDS, mode) as client:
        with pytest.raises(mcp.MCPError) as caught:
            await client.call_tool("echo", {"text": f"my key is {AWS_KEY}"})
        error = caught.value
        assert error.code == -32602
        assert error.message == "Plugin Violation: Potential secrets detected in tool arguments"
        assert error.data["plugin_name"] == "secrets"
        assert error.data["plugin_error_code"] == "SECRETS_DETECTED"
        assert error.data["details"] == {"count": 1, "examples": [{"type": "aws_access_key_id"}]}
        # The session is still usable after the block.
        assert text_of(await client.call_tool("echo", {"text": "fine"})) == "fine"


async def test_secret_in_resource_content_is_blocked_item_by_item() -> None:
    async with sdk_client(GUARDS) as client:
        plain = await client.read_resource("res://plain")
        assert plain.contents[0].text == "nothing to see"
        with pytest.raises(mcp.MCPError) as caught:
            await client.read_resource("res://keys")
        assert caught.value.data["plugin_error_code"] == "SECRETS_DETECTED"
        assert caught.value.data["description"] == "Potential secrets detected in resource content"


async def test_secret_redaction_in_resource_content() -> None:
    config = {
        "plugins": [
            {
                "name": "secrets",
                "kind": "cpex",
                "plugin": "cpex_secrets_detection.secrets_detection.SecretsDetectionPlugin",
                "hooks": ["resource_post_fetch"],
                "config": {"block_on_detection": False, "redact": True, "redaction_text": "***"},
            }
        ]
    }
    async with sdk_client(config) as client:
        read = await client.read_resource("res://keys")
        assert read.contents[0].text == "aws_access_key_id = ***"
        assert read.contents[0].uri == "res://keys"
        assert read.contents[0].mime_type == "text/plain"


async def test_permissive_mode_and_conditions_are_ours() -> None:
    config = {
        "plugins": [
            {**GUARDS["plugins"][0], "mode": "permissive"},
            {**GUARDS["plugins"][1], "conditions": [{"tools": ["contact"]}]},
        ]
    }
    async with sdk_client(config) as client:
        # Permissive: the secrets violation is logged, not obeyed.
        assert text_of(await client.call_tool("echo", {"text": AWS_KEY})) == AWS_KEY
        # The PII plugin only applies to "contact".
        assert text_of(await client.call_tool("echo", {"text": "bob@example.com"})) == "bob@example.com"
        assert text_of(await client.call_tool("contact", {})) == "write to [REDACTED]"


# --------------------------------------------------------------------------
# Conversions, through PluginManager
# --------------------------------------------------------------------------


def tagger(**extra: Any) -> dict[str, Any]:
    return {"name": "tagger", "kind": "cpex", "plugin": "tests.external_foreign.cpex_plugins.Tagger", **extra}


async def test_context_state_carries_from_pre_to_post() -> None:
    async with mw.PluginManager({"plugins": [tagger(config={"tag": "T"})]}) as manager:
        context = mw.GlobalContext(request_id="r1")
        pre = await manager.invoke("tool_pre_invoke", mw.ToolPreInvokePayload(name="t", args={"text": "hi"}), context)
        assert pre.modified_payload == mw.ToolPreInvokePayload(name="t", args={"text": "hi [T]"})
        assert pre.metadata == {"tagger": "T"}
        assert context.plugin_contexts["tagger"].state == {"seen": "hi"}
        assert context.state == {"tagger": True}
        post = await manager.invoke(
            "tool_post_invoke", mw.ToolPostInvokePayload(name="t", result={"content": [], "isError": False}), context
        )
        assert post.modified_payload.result == {"content": [{"type": "text", "text": "pre saw: hi"}], "isError": False}
        # Another request has its own state.
        other = await manager.invoke(
            "tool_post_invoke", mw.ToolPostInvokePayload(name="t", result={"content": []}), mw.GlobalContext("r2")
        )
        assert other.modified_payload is None


def test_sync_callers_run_cpex_plugins_on_the_background_loop() -> None:
    with mw.PluginManager({"plugins": [tagger()]}) as manager:
        result = manager.invoke_sync("tool_pre_invoke", mw.ToolPreInvokePayload(name="t", args={"text": "x"}))
        assert result.modified_payload.args == {"text": "x [tagged]"}


async def test_violation_fields_are_kept() -> None:
    async with mw.PluginManager({"plugins": [tagger()]}) as manager:
        result = await manager.invoke("tool_pre_invoke", mw.ToolPreInvokePayload(name="t", args={"text": "deny"}))
        assert not result.continue_processing
        assert result.violation == mw.PluginViolation(
            reason="Denied",
            description="the word 'deny' is not allowed",
            code="TAGGER_DENY",
            details={"word": "deny"},
            http_status_code=422,
            mcp_error_code=-32001,
            plugin_name="tagger",
        )


async def test_raised_violation_blocks_and_plugin_error_follows_our_mode() -> None:
    config = {"plugins": [tagger(), tagger(name="lenient", mode="enforce_ignore_error", priority=200)]}
    async with mw.PluginManager(config) as manager:
        raised = await manager.invoke("tool_pre_invoke", mw.ToolPreInvokePayload(name="t", args={"text": "raise"}))
        assert raised.violation is not None
        assert (raised.violation.code, raised.violation.plugin_name) == ("RAISED", "tagger")
        crashed = await manager.invoke("tool_pre_invoke", mw.ToolPreInvokePayload(name="t", args={"text": "crash"}))
        assert crashed.violation is not None
        assert crashed.violation.code == "PLUGIN_ERROR"
        assert crashed.records[0].outcome is Outcome.ERROR
        assert "tagger crashed" in (crashed.records[0].error or "")
    async with mw.PluginManager({"plugins": [tagger(mode="enforce_ignore_error")]}) as manager:
        crashed = await manager.invoke("tool_pre_invoke", mw.ToolPreInvokePayload(name="t", args={"text": "crash"}))
        assert crashed.continue_processing


async def test_hook_decorator_methods_are_found() -> None:
    config = {"plugins": [{"name": "d", "kind": "tests.external_foreign.cpex_plugins.Decorated"}]}
    async with mw.PluginManager(config) as manager:
        assert manager.plugins[0].hooks == [mw.HookType.PROMPT_PRE_FETCH]
        result = await manager.invoke("prompt_pre_fetch", mw.PromptPrehookPayload(prompt_id="p", args={"a": "b"}))
        assert result.modified_payload == mw.PromptPrehookPayload(prompt_id="p", args={"a": "B"})


@pytest.mark.filterwarnings("ignore:HttpPreRequestPayload.headers is deprecated:DeprecationWarning")
async def test_http_hooks_map_headers_and_status_both_ways() -> None:
    config = {"plugins": [{"name": "stamp", "kind": "tests.external_foreign.cpex_plugins.HeaderStamp"}]}
    async with mw.PluginManager(config) as manager:
        pre = mw.HttpPreRequestPayload(
            method="POST",
            path="/x",
            headers=[("accept", "a"), ("cookie", "1"), ("cookie", "2")],
            client="127.0.0.1:5000",
            body=b"{}",
        )
        result = await manager.invoke("http_pre_request", pre)
        changed = result.modified_payload
        # Untouched repeated headers keep their fields; the body is not cpex's to see and stays.
        assert changed.headers == [("accept", "a"), ("cookie", "1"), ("cookie", "2"), ("x-stamp", "POST /x")]
        assert changed.body == b"{}"
        post = mw.HttpPostRequestPayload(method="GET", path="/x", status_code=201, headers=[("a", "b")], body=b"ok")
        result = await manager.invoke("http_post_request", post)
        assert result.modified_payload.headers == [("a", "b"), ("x-seen-status", "201")]
        assert result.modified_payload.body == b"ok"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "cpex"}, "kind 'cpex' needs 'plugin: package.module.ClassName'"),
        (
            {"kind": "cpex", "plugin": "tests.external_foreign.cpex_plugins.NotAPlugin"},
            "is not a cpex plugin class",
        ),
        ({"kind": "cpex", "plugin": "tests.external_foreign.cpex_plugins.Missing"}, "has no attribute 'Missing'"),
        (
            {"kind": "tests.external_foreign.cpex_plugins.Tagger", "hooks": ["resource_pre_fetch"]},
            "hooks resource_pre_fetch listed but Tagger does not handle it",
        ),
        ({"kind": "tests.external_foreign.cpex_plugins.SyncHook"}, "SyncHook.tool_pre_invoke must be 'async def'"),
    ],
)
def test_load_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(mw.ConfigError, match=r"plugins\[0\] \(bad\): .*" + message.replace("(", r"\(")):
        mw.PluginManager({"plugins": [{"name": "bad", **entry}]})


def test_plugin_key_is_only_for_kind_cpex() -> None:
    with pytest.raises(mw.ConfigError, match=r"plugins\[0\]: 'plugin' is only for kind cpex"):
        mw.PluginManager({"plugins": [{"name": "x", "kind": "tests.sample_plugins.Upper", "plugin": "a.B"}]})


def test_status_reports_in_process_plugins_healthy() -> None:
    manager = mw.PluginManager(GUARDS)
    try:
        status = manager.status()
        assert list(status) == ["secrets", "pii"]
        assert all(item.loaded and item.healthy for item in status.values())
    finally:
        manager.close()
