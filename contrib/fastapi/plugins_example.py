"""Example plugins: ``Shout`` upper-cases tool results, ``BlockWord`` refuses a word."""

from __future__ import annotations

import json

import mcp_plugin_mw as mw


class Shout(mw.Plugin):
    """Upper-cases the text items of every ``tools/call`` result."""

    def tool_post_invoke(self, payload: mw.ToolPostInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        result = payload.result
        if not isinstance(result, dict) or not isinstance(result.get("content"), list):
            return mw.PluginResult()
        content = [
            {**item, "text": item["text"].upper()} if isinstance(item, dict) and item.get("type") == "text" else item
            for item in result["content"]
        ]
        return mw.PluginResult(modified_payload=payload.model_copy(update={"result": {**result, "content": content}}))


class BlockWord(mw.Plugin):
    """Blocks tool calls, and HTTP requests under ``http_prefix``, that mention ``word``.

    Config: ``word`` (default ``forbidden``), ``http_prefix`` (default ``/``).
    """

    def __init__(self, config: mw.PluginConfig) -> None:
        super().__init__(config)
        self.word = str(self.config.get("word", "forbidden")).lower()
        self.http_prefix = str(self.config.get("http_prefix", "/"))

    def _violation(self, where: str) -> mw.PluginResult:
        return mw.PluginResult(
            continue_processing=False,
            violation=mw.PluginViolation(
                reason="Blocked word",
                description=f"the word {self.word!r} is not allowed in {where}",
                code="BLOCKED_WORD",
                details={"word": self.word},
            ),
        )

    async def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        if self.word in json.dumps(payload.args).lower():
            return self._violation(f"arguments of tool {payload.name!r}")
        return mw.PluginResult()

    def http_pre_request(self, payload: mw.HttpPreRequestPayload, context: mw.PluginContext) -> mw.PluginResult:
        if payload.path.startswith(self.http_prefix) and self.word.encode() in payload.body.lower():
            return self._violation("the request body")
        return mw.PluginResult()
