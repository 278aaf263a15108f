"""Example MCP plugins: ``Shout`` upper-cases tool results, ``BlockWord`` refuses a word."""

from __future__ import annotations

import json

import mcp_plugin_mw as mw


class Shout(mw.Plugin):
    """Upper-cases the text items of tool results and prompt messages."""

    def tool_post_invoke(self, payload: mw.ToolPostInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        result = payload.result
        if not isinstance(result, dict) or not isinstance(result.get("content"), list):
            return mw.PluginResult()
        content = [_shout(item) for item in result["content"]]
        # structuredContent repeats the text for tools with an output schema.
        changed = {**result, "content": content}
        if isinstance(result.get("structuredContent"), dict):
            changed["structuredContent"] = {
                key: value.upper() if isinstance(value, str) else value
                for key, value in result["structuredContent"].items()
            }
        return mw.PluginResult(modified_payload=payload.model_copy(update={"result": changed}))

    def prompt_post_fetch(self, payload: mw.PromptPosthookPayload, context: mw.PluginContext) -> mw.PluginResult:
        result = payload.result
        if not isinstance(result, dict) or not isinstance(result.get("messages"), list):
            return mw.PluginResult()
        messages = [{**m, "content": _shout(m.get("content"))} for m in result["messages"] if isinstance(m, dict)]
        return mw.PluginResult(modified_payload=payload.model_copy(update={"result": {**result, "messages": messages}}))


def _shout(item: object) -> object:
    if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
        return {**item, "text": item["text"].upper()}
    return item


class BlockWord(mw.Plugin):
    """Blocks tool calls whose arguments mention ``word`` (config, default ``forbidden``)."""

    def __init__(self, config: mw.PluginConfig) -> None:
        super().__init__(config)
        self.word = str(self.config.get("word", "forbidden")).lower()

    async def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        if self.word not in json.dumps(payload.args).lower():
            return mw.PluginResult()
        return mw.PluginResult(
            continue_processing=False,
            violation=mw.PluginViolation(
                reason="Blocked word",
                description=f"the word {self.word!r} is not allowed",
                code="BLOCKED_WORD",
                details={"tool": payload.name},
            ),
        )
