"""
Plugins for the end-to-end tests with the official MCP SDK
==========================================================

Each one changes something a client can see, so a test can tell from the
client's side alone that the hook ran, in which direction, and on what.
"""

from __future__ import annotations

from typing import Any

from mcp_plugin_mw import (
    Plugin,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)


class MaskSecret(Plugin):
    """Rewrites the word ``secret`` in tool arguments; blocks ``forbidden``."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        text = payload.args.get("text")
        if not isinstance(text, str):
            return PluginResult()
        context.state["original"] = text
        if "forbidden" in text:
            return PluginResult(
                continue_processing=False,
                violation=PluginViolation(
                    reason="Forbidden word",
                    description="the word 'forbidden' is not allowed",
                    code="FORBIDDEN_WORD",
                    details={"field": "text"},
                ),
            )
        if "secret" in text:
            args = {**payload.args, "text": text.replace("secret", "[masked]")}
            return PluginResult(modified_payload=payload.model_copy(update={"args": args}))
        return PluginResult()

    async def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult:
        # State set on the pre hook of the same request comes back here.
        original = context.state.get("original")
        if original is None:
            return PluginResult()
        result = dict(payload.result)
        result["_meta"] = {**(result.get("_meta") or {}), "test/original": original}
        return PluginResult(modified_payload=payload.model_copy(update={"result": result}))


class Shout(Plugin):
    """Upper-cases the text items of tool results."""

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult:
        result = payload.result
        if payload.name == "slow" or not isinstance(result, dict) or result.get("isError"):
            return PluginResult()
        content = [
            {**item, "text": item["text"].upper()} if item.get("type") == "text" else item
            for item in result.get("content", [])
        ]
        return PluginResult(modified_payload=payload.model_copy(update={"result": {**result, "content": content}}))


class PromptPolish(Plugin):
    """Title-cases the ``name`` argument of prompts and signs their messages."""

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult:
        name = payload.args.get("name")
        if not isinstance(name, str):
            return PluginResult()
        return PluginResult(
            modified_payload=payload.model_copy(update={"args": {**payload.args, "name": name.title()}})
        )

    def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PluginResult:
        messages: list[dict[str, Any]] = []
        for message in payload.result["messages"]:
            content = dict(message["content"])
            content["text"] = content["text"] + " [checked]"
            messages.append({**message, "content": content})
        return PluginResult(
            modified_payload=payload.model_copy(update={"result": {**payload.result, "messages": messages}})
        )


class ResourceRedirect(Plugin):
    """Sends reads of ``res://item/private`` to ``res://item/public``; marks fetched text."""

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult:
        if payload.uri == "res://item/private":
            return PluginResult(modified_payload=payload.model_copy(update={"uri": "res://item/public"}))
        return PluginResult()

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> PluginResult:
        contents = [{**item, "text": f"<<{item['text']}>>"} for item in payload.content["contents"]]
        return PluginResult(
            modified_payload=payload.model_copy(update={"content": {**payload.content, "contents": contents}})
        )
