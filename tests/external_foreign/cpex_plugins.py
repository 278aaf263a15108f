"""
Small cpex 0.1.x plugins, written against cpex's own API
========================================================

Used in process (``kind: cpex``) and hosted by cpex's external MCP server
runtime (``transport: mcp``), so both paths run the same foreign code.
"""

from __future__ import annotations

from typing import Any

from cpex.framework import (
    HttpHeaderPayload,
    Plugin,
    PluginContext,
    PluginError,
    PluginErrorModel,
    PluginResult,
    PluginViolation,
    PluginViolationError,
    hook,
)


class Tagger(Plugin):
    """Tags tool arguments, remembers them in its context state, and reports them on the result."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        text = payload.args.get("text", "")
        if "deny" in text:
            return PluginResult(
                continue_processing=False,
                violation=PluginViolation(
                    reason="Denied",
                    description="the word 'deny' is not allowed",
                    code="TAGGER_DENY",
                    details={"word": "deny"},
                    http_status_code=422,
                    mcp_error_code=-32001,
                ),
            )
        if "raise" in text:
            raise PluginViolationError("raised", PluginViolation(reason="Raised", description="raised", code="RAISED"))
        if "crash" in text:
            raise PluginError(PluginErrorModel(message="tagger crashed", plugin_name=self.name, code="CRASH"))
        context.state["seen"] = text
        context.global_context.state["tagger"] = True
        tag = (self._config.config or {}).get("tag", "tagged")
        args = {**payload.args, "text": f"{text} [{tag}]"}
        return PluginResult(modified_payload=payload.model_copy(update={"args": args}), metadata={"tagger": tag})

    async def tool_post_invoke(self, payload: Any, context: PluginContext, extensions: Any = None) -> PluginResult:
        seen = context.state.get("seen")
        result = payload.result
        if seen is None or not isinstance(result, dict):
            return PluginResult()
        content = [*result.get("content", []), {"type": "text", "text": f"pre saw: {seen}"}]
        return PluginResult(modified_payload=payload.model_copy(update={"result": {**result, "content": content}}))


class Decorated(Plugin):
    """Handles a hook through cpex's ``@hook`` decorator instead of its method name."""

    @hook("prompt_pre_fetch")
    async def polish(self, payload: Any, context: PluginContext) -> PluginResult:
        args = {name: value.upper() for name, value in payload.args.items()}
        return PluginResult(modified_payload=payload.model_copy(update={"args": args}))


class HeaderStamp(Plugin):
    """Adds a request header and rewrites the response status (cpex HTTP hooks see no body)."""

    async def http_pre_request(self, payload: Any, context: PluginContext) -> PluginResult:
        headers = dict(payload.headers.root)
        headers["x-stamp"] = f"{payload.method} {payload.path}"
        return PluginResult(modified_payload=payload.model_copy(update={"headers": HttpHeaderPayload(headers)}))

    async def http_post_request(self, payload: Any, context: PluginContext) -> PluginResult:
        headers = dict(payload.response_headers.root if payload.response_headers else {})
        headers["x-seen-status"] = str(payload.status_code)
        return PluginResult(
            modified_payload=payload.model_copy(update={"response_headers": HttpHeaderPayload(headers)})
        )


class SyncHook(Plugin):
    """Invalid for cpex: hooks must be async."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        return PluginResult()


class NotAPlugin:
    """Not a cpex plugin at all."""


class Noop(Plugin):
    """Lets everything pass; for timing the transport alone."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        return PluginResult()


class Upper(Plugin):
    """Upper-cases the ``text`` argument (the plugin of ``benchmarks/external.py``, in cpex's API)."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        args = {**payload.args, "text": str(payload.args.get("text", "")).upper()}
        return PluginResult(modified_payload=payload.model_copy(update={"args": args}))
