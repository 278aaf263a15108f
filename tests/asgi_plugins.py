"""Plugins for the ASGI middleware tests."""

from __future__ import annotations

import orjson

from mcp_plugin_mw import (
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    Plugin,
    PluginContext,
    PluginResult,
    PluginViolation,
    ToolPreInvokePayload,
)


class Observe(Plugin):
    """Records what it sees in the request's GlobalContext, changes nothing."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> None:
        seen = context.global_context
        context.global_context.metadata["seen"] = {
            "request_id": seen.request_id,
            "user": seen.user,
            "tenant": seen.tenant_id,
            "server": seen.server_id,
            "content_type": seen.content_type,
        }
        Observe.last = dict(context.global_context.metadata["seen"])

    last: dict[str, object] = {}


class HttpRewrite(Plugin):
    """Rewrites JSON request bodies and paths; stamps responses; blocks /admin."""

    def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> PluginResult:
        if payload.path.startswith("/admin"):
            return PluginResult(
                continue_processing=False,
                violation=PluginViolation(
                    reason="Admin", description="admin is closed", code="NO_ADMIN", http_status_code=451
                ),
            )
        if payload.path == "/old":
            return PluginResult(modified_payload=payload.model_copy(update={"path": "/new", "query_string": "moved=1"}))
        if payload.body.startswith(b"{"):
            document = orjson.loads(payload.body)
            document["stamped"] = True
            return PluginResult(modified_payload=payload.model_copy(update={"body": orjson.dumps(document)}))
        return PluginResult()

    def http_post_request(self, payload: HttpPostRequestPayload, context: PluginContext) -> PluginResult:
        if payload.path == "/rate":
            return PluginResult(
                continue_processing=False,
                violation=PluginViolation(
                    reason="Slow down",
                    description="too many",
                    code="RATE_LIMITED",
                    http_status_code=429,
                    details={"retry_after": 7},
                ),
            )
        headers = [*payload.headers, ("x-inspected", "yes")]
        return PluginResult(modified_payload=payload.model_copy(update={"headers": headers}))
