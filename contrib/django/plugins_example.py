"""Example plugins for plain HTTP: ``BlockWord`` refuses a word, ``Shout`` upper-cases JSON replies."""

from __future__ import annotations

import json

import mcp_plugin_mw as mw


class BlockWord(mw.Plugin):
    """Blocks requests whose body mentions ``word`` (config, default ``forbidden``)."""

    def __init__(self, config: mw.PluginConfig) -> None:
        super().__init__(config)
        self.word = str(self.config.get("word", "forbidden")).lower()

    def http_pre_request(self, payload: mw.HttpPreRequestPayload, context: mw.PluginContext) -> mw.PluginResult:
        if self.word.encode() not in payload.body.lower():
            return mw.PluginResult()
        return mw.PluginResult(
            continue_processing=False,
            violation=mw.PluginViolation(
                reason="Blocked word",
                description=f"the word {self.word!r} is not allowed",
                code="BLOCKED_WORD",
                details={"word": self.word},
            ),
        )


class Shout(mw.Plugin):
    """Upper-cases the ``text`` field of JSON object responses."""

    def http_post_request(self, payload: mw.HttpPostRequestPayload, context: mw.PluginContext) -> mw.PluginResult:
        content_type = dict(payload.headers).get("content-type", "")
        if not content_type.startswith("application/json"):
            return mw.PluginResult()
        document = json.loads(payload.body or b"null")
        if not isinstance(document, dict) or not isinstance(document.get("text"), str):
            return mw.PluginResult()
        body = json.dumps({**document, "text": document["text"].upper()}).encode()
        return mw.PluginResult(modified_payload=payload.model_copy(update={"body": body}))
