"""
Plugins hosted out of process by the external-plugin tests
==========================================================

Ordinary plugins, loaded by ``mcp-plugin-mw serve-plugin tests.external.sample.X``
in a child process; nothing in them knows they run remotely.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp_plugin_mw import (
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    Plugin,
    PluginContext,
    PluginError,
    PluginResult,
    PluginViolation,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)


class Upper(Plugin):
    """Upper-cases the ``text`` argument of tool calls; blocks text containing ``config['deny']``."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        text = str(payload.args.get("text", ""))
        deny = self.config.get("deny")
        if deny and deny in text:
            return PluginResult(
                continue_processing=False,
                violation=PluginViolation(
                    reason="Denied word",
                    description=f"the word {deny!r} is not allowed",
                    code="DENIED",
                    details={"word": deny},
                    http_status_code=422,
                    mcp_error_code=-32001,
                ),
            )
        return PluginResult(
            modified_payload=payload.model_copy(update={"args": {**payload.args, "text": text.upper()}})
        )


class Mirror(Plugin):
    """Handles all eight hooks: changes every payload recognisably and carries state from pre to post."""

    async def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        await asyncio.sleep(0)
        context.state["pre"] = payload.name
        shared = context.global_context
        seen = {
            "user": shared.user,
            "tenant": shared.tenant_id,
            "server": shared.server_id,
            "request": shared.request_id,
        }
        return PluginResult(
            modified_payload=payload.model_copy(update={"args": {**payload.args, "mirrored": True}}),
            metadata={"seen": seen, "shared_state": shared.state.get("note")},
        )

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult:
        return PluginResult(
            modified_payload=payload.model_copy(
                update={"result": {"was": payload.result, "pre": context.state.get("pre")}}
            )
        )

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult:
        return PluginResult(modified_payload=payload.model_copy(update={"args": {**payload.args, "mirrored": "yes"}}))

    def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PluginResult:
        return PluginResult(modified_payload=payload.model_copy(update={"result": {"was": payload.result}}))

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult:
        return PluginResult(modified_payload=payload.model_copy(update={"uri": payload.uri + "#mirrored"}))

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> PluginResult:
        return PluginResult(modified_payload=payload.model_copy(update={"content": [payload.content]}))

    def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> PluginResult:
        headers = [*payload.headers, ("x-mirrored", payload.client or "")]
        return PluginResult(
            modified_payload=payload.model_copy(update={"body": payload.body[::-1], "headers": headers})
        )

    def http_post_request(self, payload: HttpPostRequestPayload, context: PluginContext) -> PluginResult:
        update: dict[str, Any] = {"body": payload.body[::-1], "status_code": payload.status_code + 1}
        return PluginResult(modified_payload=payload.model_copy(update=update))


class Passive(Plugin):
    """Returns the payload it got, unchanged, or None: neither counts as a change."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        if payload.args.get("echo"):
            return PluginResult(modified_payload=payload.model_copy())
        return None


class Failing(Plugin):
    """Fails every call: with a coded PluginError, or any other exception."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        if payload.args.get("plain"):
            raise ValueError("plain failure")
        raise PluginError("it broke", code="BROKE")


class NeverReady(Plugin):
    """Its initialize fails, so serve-plugin never answers /health."""

    def initialize(self) -> None:
        raise RuntimeError("cannot initialize")

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> None:
        return None
