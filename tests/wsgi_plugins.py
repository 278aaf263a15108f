"""
Plugins for the WSGI middleware tests
=====================================

Importable by class path (``tests.wsgi_plugins.ToolRewrite``) so the tests
load them through configuration as users load theirs. Each one changes
something the client or the app can see, so a test can tell from the bytes
alone that a hook ran and on what.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, ClassVar

import orjson

from mcp_plugin_mw import (
    HttpPostRequestPayload,
    HttpPreRequestPayload,
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


def _texts(result: Any, transform: Any) -> Any:
    """``result`` with every ``{"type": "text", "text": ...}`` item's text transformed."""
    if isinstance(result, dict):
        if result.get("type") == "text" and isinstance(result.get("text"), str):
            return {**result, "text": transform(result["text"])}
        return {key: _texts(value, transform) for key, value in result.items()}
    if isinstance(result, list):
        return [_texts(item, transform) for item in result]
    return result


class ToolRewrite(Plugin):
    """Masks ``secret`` in tool arguments; marks tool results as checked."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        text = payload.args.get("text")
        if isinstance(text, str) and "secret" in text:
            args = {**payload.args, "text": text.replace("secret", "[masked]")}
            return PluginResult(modified_payload=payload.model_copy(update={"args": args}))
        return PluginResult()

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult:
        result = _texts(payload.result, lambda text: text + " [checked]")
        return PluginResult(modified_payload=payload.model_copy(update={"result": result}))


class PromptRewrite(Plugin):
    """Rewrites the ``topic`` argument of prompts and upper-cases their messages."""

    async def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult:
        if payload.args.get("topic") == "weather":
            args = {**payload.args, "topic": "climate"}
            return PluginResult(modified_payload=payload.model_copy(update={"args": args}))
        return PluginResult()

    async def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PluginResult:
        result = _texts(payload.result, str.upper)
        return PluginResult(modified_payload=payload.model_copy(update={"result": result}))


class ResourceRewrite(Plugin):
    """Redirects ``file:///old.txt`` to ``file:///new.txt``; redacts ``contents`` in texts."""

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult:
        if payload.uri == "file:///old.txt":
            return PluginResult(modified_payload=payload.model_copy(update={"uri": "file:///new.txt"}))
        return PluginResult()

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> PluginResult:
        contents = [
            {**item, "text": item["text"].replace("contents", "CONTENTS")} if "text" in item else item
            for item in payload.content["contents"]
        ]
        content = {**payload.content, "contents": contents}
        return PluginResult(modified_payload=payload.model_copy(update={"content": content}))


class Deny(Plugin):
    """Blocks the tool, prompt and resource named ``forbidden`` (or ``file:///forbidden``)."""

    @staticmethod
    def _block(what: str, name: str) -> PluginResult:
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Denied",
                description=f"{what} {name!r} is denied",
                code="DENIED",
                details={"kind": what, "name": name},
            ),
        )

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        return self._block("tool", payload.name) if payload.name == "forbidden" else PluginResult()

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult:
        return self._block("prompt", payload.prompt_id) if payload.prompt_id == "forbidden" else PluginResult()

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult:
        return self._block("resource", payload.uri) if payload.uri == "file:///forbidden" else PluginResult()


class Crash(Plugin):
    """Raises on the tool ``crash`` and on ``/api/crash``; the message must never reach a client."""

    MESSAGE = "internal detail: database password is hunter2"

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> None:
        if payload.name == "crash":
            raise RuntimeError(self.MESSAGE)

    def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> None:
        if payload.path == "/api/crash":
            raise RuntimeError(self.MESSAGE)


class StateCarry(Plugin):
    """Keeps the tool arguments in its state on the pre hook and puts them in the result on the post hook."""

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> None:
        context.state["pre"] = {"name": payload.name, "args": payload.args, "request_id": context.request_id}

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult:
        result = {**payload.result, "_meta": {"test/pre-state": context.state.get("pre")}}
        return PluginResult(modified_payload=payload.model_copy(update={"result": result}))


class HttpRewrite(Plugin):
    """Plain HTTP hooks on ``/api/*``.

    Requests: stamps JSON bodies sent to ``/api/echo``; blocks ``/api/admin``
    (403, the default) and ``/api/teapot`` (the violation's 418). Responses:
    adds a header to every ``/api`` response and a field to ``/api/info``'s.
    """

    def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> PluginResult:
        if payload.path == "/api/admin":
            violation = PluginViolation(reason="Admin", description="admin is closed", code="NO_ADMIN")
            return PluginResult(continue_processing=False, violation=violation)
        if payload.path == "/api/teapot":
            violation = PluginViolation(
                reason="Teapot", description="short and stout", code="TEAPOT", http_status_code=418
            )
            return PluginResult(continue_processing=False, violation=violation)
        if payload.path == "/api/echo" and payload.body.startswith(b"{"):
            document = orjson.loads(payload.body)
            document["stamped"] = "by plugin"
            return PluginResult(modified_payload=payload.model_copy(update={"body": orjson.dumps(document)}))
        return PluginResult()

    def http_post_request(self, payload: HttpPostRequestPayload, context: PluginContext) -> PluginResult:
        if not payload.path.startswith("/api/"):
            return PluginResult()
        update: dict[str, Any] = {"headers": [*payload.headers, ("x-inspected", "yes")]}
        if payload.path == "/api/info":
            document = orjson.loads(payload.body)
            document["inspected"] = True
            update["body"] = orjson.dumps(document)
        return PluginResult(modified_payload=payload.model_copy(update=update))


class Observe(Plugin):
    """Records the GlobalContext of every tool call, by request id; changes nothing."""

    seen: ClassVar[dict[str, dict[str, Any]]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> None:
        glob = context.global_context
        with Observe.lock:
            Observe.seen[glob.request_id] = {"user": glob.user, "tenant": glob.tenant_id, "tool": payload.name}


class Noop(Plugin):
    """Subscribed to every hook; never has an opinion."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        return None

    def tool_post_invoke(self, payload: Any, context: PluginContext) -> None:
        return None

    def prompt_pre_fetch(self, payload: Any, context: PluginContext) -> None:
        return None

    def prompt_post_fetch(self, payload: Any, context: PluginContext) -> None:
        return None

    def resource_pre_fetch(self, payload: Any, context: PluginContext) -> None:
        return None

    def resource_post_fetch(self, payload: Any, context: PluginContext) -> None:
        return None

    def http_pre_request(self, payload: Any, context: PluginContext) -> None:
        return None

    def http_post_request(self, payload: Any, context: PluginContext) -> None:
        return None


class AsyncNoop(Noop):
    """As :class:`Noop`, but async on the MCP hooks, so the background loop runs too."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:  # type: ignore[override]
        return None

    async def tool_post_invoke(self, payload: Any, context: PluginContext) -> None:  # type: ignore[override]
        return None


class Counting(Plugin):
    """Counts the calls of every hook (class-wide); never has an opinion."""

    calls: ClassVar[Counter[str]] = Counter()

    def _count(self, hook: str) -> None:
        with Observe.lock:
            Counting.calls[hook] += 1

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        self._count("tool_pre_invoke")

    def tool_post_list(self, payload: Any, context: PluginContext) -> None:
        self._count("tool_post_list")

    def prompt_post_list(self, payload: Any, context: PluginContext) -> None:
        self._count("prompt_post_list")

    def resource_post_list(self, payload: Any, context: PluginContext) -> None:
        self._count("resource_post_list")

    def server_message(self, payload: Any, context: PluginContext) -> None:
        self._count("server_message")

    def client_message(self, payload: Any, context: PluginContext) -> None:
        self._count("client_message")

    def tool_post_invoke(self, payload: Any, context: PluginContext) -> None:
        self._count("tool_post_invoke")

    def prompt_pre_fetch(self, payload: Any, context: PluginContext) -> None:
        self._count("prompt_pre_fetch")

    def prompt_post_fetch(self, payload: Any, context: PluginContext) -> None:
        self._count("prompt_post_fetch")

    def resource_pre_fetch(self, payload: Any, context: PluginContext) -> None:
        self._count("resource_pre_fetch")

    def resource_post_fetch(self, payload: Any, context: PluginContext) -> None:
        self._count("resource_post_fetch")

    def http_pre_request(self, payload: Any, context: PluginContext) -> None:
        self._count("http_pre_request")

    def http_post_request(self, payload: Any, context: PluginContext) -> None:
        self._count("http_post_request")
