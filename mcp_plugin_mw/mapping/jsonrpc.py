"""
MCP JSON-RPC messages and hook payloads
=======================================

Maps the three MCP requests that carry content to hooks, and back:

=================  ======================  =======================
method             request hook            response hook
=================  ======================  =======================
``tools/call``     ``tool_pre_invoke``     ``tool_post_invoke``
``prompts/get``    ``prompt_pre_fetch``    ``prompt_post_fetch``
``resources/read`` ``resource_pre_fetch``  ``resource_post_fetch``
=================  ======================  =======================

Everything else (notifications, client responses, other methods) is left
alone. Messages are plain dicts as decoded by orjson; functions here return
new dicts and never change the ones they are given.
"""

from __future__ import annotations

import dataclasses
import json
import math
import unicodedata
from collections.abc import Container
from typing import Any

import orjson

from ..models import (
    ClientMessagePayload,
    GlobalContext,
    HookType,
    PluginViolation,
    PromptListPayload,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourceListPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ServerMessagePayload,
    ToolListPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)

__all__ = [
    "LIST_HOOKS",
    "MESSAGE_HOOK_TYPES",
    "RESPONSE_HOOK_TYPES",
    "RPC_HOOKS",
    "RPC_HOOK_TYPES",
    "PendingCall",
    "apply_post",
    "apply_pre",
    "blocked_response",
    "decode",
    "encode",
    "error_response",
    "id_key",
    "post_payload",
    "pre_call",
    "refusal",
    "valid_id",
]

RPC_HOOKS: dict[str, tuple[HookType, HookType]] = {
    "tools/call": (HookType.TOOL_PRE_INVOKE, HookType.TOOL_POST_INVOKE),
    "prompts/get": (HookType.PROMPT_PRE_FETCH, HookType.PROMPT_POST_FETCH),
    "resources/read": (HookType.RESOURCE_PRE_FETCH, HookType.RESOURCE_POST_FETCH),
}
"""Method -> (request hook, response hook)."""

LIST_HOOKS: dict[str, HookType] = {
    "tools/list": HookType.TOOL_POST_LIST,
    "prompts/list": HookType.PROMPT_POST_LIST,
    "resources/list": HookType.RESOURCE_POST_LIST,
    "resources/templates/list": HookType.RESOURCE_POST_LIST,
}
"""List method -> the hook that sees each page of its result."""
# Where each list method's result keeps its entries, and the payload field for them.
_LIST_FIELDS = {
    "tools/list": ("tools", "tools"),
    "prompts/list": ("prompts", "prompts"),
    "resources/list": ("resources", "resources"),
    "resources/templates/list": ("resourceTemplates", "resource_templates"),
}
_LIST_PAYLOADS = {
    HookType.TOOL_POST_LIST: ToolListPayload,
    HookType.PROMPT_POST_LIST: PromptListPayload,
    HookType.RESOURCE_POST_LIST: ResourceListPayload,
}

MESSAGE_HOOK_TYPES = frozenset({HookType.SERVER_MESSAGE, HookType.CLIENT_MESSAGE})
"""The hooks on the messages no other hook maps."""
RPC_HOOK_TYPES = frozenset(
    {hook for hooks in RPC_HOOKS.values() for hook in hooks} | set(LIST_HOOKS.values()) | MESSAGE_HOOK_TYPES
)
"""Every hook on JSON-RPC messages: while one is active, JSON bodies are read as JSON-RPC."""
RESPONSE_HOOK_TYPES = frozenset({hooks[1] for hooks in RPC_HOOKS.values()} | set(LIST_HOOKS.values()))
"""The hooks on results: a result on a stream no request of its own asked for must be attributed."""

PROTOCOL_META_KEY = "io.modelcontextprotocol/protocolVersion"
RESULT_TYPE_SINCE = "2026-07-28"
"""The first revision in which every result carries ``resultType``."""

VIOLATION_META_KEY = "mcp-plugin-mw/violation"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

NO_ID: Any = object()
"""What :func:`response_id` returns for a message that is not a successful response."""


@dataclasses.dataclass(slots=True)
class PendingCall:
    """A request whose response the response hook will see.

    ``name`` is the tool or prompt name, or the resource URI, as the app
    received it (after request hooks).
    """

    id: Any
    method: str
    name: str
    post_hook: HookType
    protocol_version: str | None
    context: GlobalContext
    """The context the request hook ran with; the response hook gets it too."""


def decode(body: bytes) -> Any:
    """Decode a JSON body; None if it is not JSON.

    What orjson refuses but Python's :mod:`json` accepts (``NaN``, a byte
    order mark, UTF-16, lone surrogates, ``1e400``) is decoded with
    :mod:`json`: Flask, Django and Starlette apps parse bodies with it, and
    a body the app reads but the plugins never see would slip past them.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    else:
        # orjson turns integers past 64 bits into floats: ids must stay exact.
        if not _has_float_id(value):
            return value
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _has_float_id(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("id"), float)
    return isinstance(value, list) and any(isinstance(m, dict) and isinstance(m.get("id"), float) for m in value)


def encode(value: Any) -> bytes:
    """Encode a JSON value compactly."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # Values only :mod:`json` decodes (lone surrogates, huge integers).
        return json.dumps(value, separators=(",", ":")).encode()


def valid_id(value: Any) -> bool:
    """Whether ``value`` may be a JSON-RPC id: a string, a finite number or null."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int)


def id_key(request_id: Any) -> Any:
    """The key under which a response with ``request_id`` finds its request.

    MCP clients coerce ids (the Python SDK turns ``"5"`` into ``5``), so a
    response must find its request under every spelling a client would take
    for the same id: ``5``, ``"5"``, ``5.0`` and ``"05"`` share one key.
    Keys that merge too much only make the middleware inspect more.
    """
    if isinstance(request_id, str):
        text = request_id.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit():
            return int(text)
        return request_id
    if isinstance(request_id, float) and math.isfinite(request_id) and request_id.is_integer():
        return int(request_id)
    return request_id


def is_request(message: Any) -> bool:
    """A JSON-RPC request (a method and a string, number or null id), not a notification."""
    return (
        isinstance(message, dict)
        and isinstance(message.get("method"), str)
        and "id" in message
        and valid_id(message["id"])
    )


def _normalized(method: str) -> str:
    """How a lenient app may read a method name: case, padding, NULs and doubled slashes ignored.

    Compatibility forms (fullwidth letters, U+FF54 for ``t``) and case
    folding (the long s, U+017F) count too: an app that normalises Unicode
    reads them as ASCII.
    """
    text = method.replace("\0", "").strip().lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).casefold()
    while "//" in text:
        text = text.replace("//", "/")
    return text.strip("/")


def names_mapped_method(message: Any) -> bool:
    """Whether ``message`` names a mapped method, however leniently spelt."""
    method = message.get("method") if isinstance(message, dict) else None
    return isinstance(method, str) and (_hooks_of(method) is not None or _hooks_of(_normalized(method)) is not None)


def _hooks_of(method: str) -> tuple[HookType, ...] | None:
    """The hooks that watch ``method`` spelt exactly so, or None."""
    hooks = RPC_HOOKS.get(method)
    if hooks is not None:
        return hooks
    listed = LIST_HOOKS.get(method)
    return None if listed is None else (listed,)


def refusal(message: Any, active: Container[HookType]) -> dict[str, Any] | None:
    """The error answering a message the app might run as a mapped call unchecked, else None.

    Such a message names a mapped method whose hooks are active but cannot be
    mapped: its method is spelt in a way only a lenient app accepts, it has no
    id or an id JSON-RPC forbids, or its params are not of the method's shape.
    Call it only for messages :func:`pre_call` did not map.
    """
    if not isinstance(message, dict):
        return None
    method = message.get("method")
    if not isinstance(method, str):
        return None
    hooks = _hooks_of(method)
    exact = hooks is not None
    if hooks is None:
        hooks = _hooks_of(_normalized(method))
        if hooks is None:
            return None
    if not any(hook in active for hook in hooks):
        return None
    request_id = message.get("id")
    reply_id = request_id if valid_id(request_id) else None
    if not exact:
        return error_response(reply_id, INVALID_REQUEST, f"Invalid Request: unknown method {method!r}")
    if "id" not in message:
        return error_response(None, INVALID_REQUEST, f"Invalid Request: {method} must be a request with an id")
    if not valid_id(request_id):
        return error_response(None, INVALID_REQUEST, "Invalid Request: the id must be a string or a number")
    if method in LIST_HOOKS:
        return None  # a list request with an id is always mapped: its params do not matter
    return error_response(reply_id, INVALID_PARAMS, f"Invalid params: the params of {method} do not have its shape")


def protocol_version(message: dict[str, Any], header: str | None) -> str | None:
    """The MCP revision a request speaks: its ``_meta``, else the header."""
    params = message.get("params")
    if isinstance(params, dict):
        meta = params.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get(PROTOCOL_META_KEY), str):
            return str(meta[PROTOCOL_META_KEY])
    return header


def pre_call(message: Any, active: Container[HookType]) -> tuple[HookType, HookType, Any] | None:
    """The request hook, response hook and payload for ``message``.

    None when the message is not one of the mapped requests, when neither of
    its hooks is in ``active`` (then no payload is built at all), or when its
    ``params`` are not of the expected shape (the app will answer that).
    """
    if not is_request(message):
        return None
    hooks = RPC_HOOKS.get(message["method"])
    params = message.get("params")
    if hooks is None or not isinstance(params, dict) or (hooks[0] not in active and hooks[1] not in active):
        return None
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    payload: Any
    if hooks[0] is HookType.RESOURCE_PRE_FETCH:
        uri = params.get("uri")
        if not isinstance(uri, str):
            return None
        metadata = {k: v for k, v in params.items() if k != "uri"}
        payload = ResourcePreFetchPayload(uri=uri, metadata=metadata)
    else:
        name = params.get("name")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return None
        if hooks[0] is HookType.TOOL_PRE_INVOKE:
            payload = ToolPreInvokePayload(name=name, args=arguments)
        else:
            payload = PromptPrehookPayload(prompt_id=name, args=arguments)
    return hooks[0], hooks[1], payload


def entity_name(payload: Any) -> str:
    """The tool name, prompt name or resource URI a request payload names."""
    if isinstance(payload, ResourcePreFetchPayload):
        return payload.uri
    if isinstance(payload, PromptPrehookPayload):
        return payload.prompt_id
    return str(payload.name)


def apply_pre(message: dict[str, Any], payload: Any) -> dict[str, Any]:
    """``message`` with its params replaced by what ``payload`` holds."""
    params = dict(message["params"])
    if isinstance(payload, ResourcePreFetchPayload):
        params = {**payload.metadata, "uri": payload.uri}
    else:
        params["name"] = payload.name if isinstance(payload, ToolPreInvokePayload) else payload.prompt_id
        if payload.args or "arguments" in params:
            params["arguments"] = payload.args
    return {**message, "params": params}


def list_call(message: Any, active: Container[HookType]) -> HookType | None:
    """The list hook that will see the result of ``message``, a list request, if it is active."""
    if not is_request(message):
        return None
    hook = LIST_HOOKS.get(message["method"])
    return hook if hook is not None and hook in active else None


def list_payload(method: str, result: Any) -> Any:
    """The list hook's payload for one page of ``method``'s result; None if it does not have the page's shape."""
    key, field = _LIST_FIELDS[method]
    if not isinstance(result, dict):
        return None
    # A page without its entries offers a client nothing to use: an empty page.
    entries = result.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        return None
    return _LIST_PAYLOADS[LIST_HOOKS[method]](**{field: entries})


def apply_list(message: dict[str, Any], method: str, payload: Any) -> dict[str, Any]:
    """``message`` with its page's entries replaced by what ``payload`` holds."""
    key, field = _LIST_FIELDS[method]
    entries = getattr(payload, field)
    if not entries and key not in message["result"]:
        return message
    return {**message, "result": {**message["result"], key: entries}}


def server_payload(message: dict[str, Any]) -> ServerMessagePayload | None:
    """The ``server_message`` payload of a notification or request; None if ``message`` is neither."""
    method, params = message.get("method"), message.get("params", {})
    if not isinstance(method, str) or not isinstance(params, dict):
        return None
    request_id = message.get("id")
    return ServerMessagePayload(method=method, params=params, id=request_id if valid_id(request_id) else None)


def apply_message(message: dict[str, Any], payload: Any) -> dict[str, Any]:
    """``message`` with what a changed ``server_message`` or ``client_message`` payload holds."""
    updated = dict(message)
    if payload.method is not None:
        updated["method"] = payload.method
    if payload.params is not None and (payload.params or "params" in message):
        updated["params"] = payload.params
    if isinstance(payload, ClientMessagePayload) and "result" in message:
        updated["result"] = payload.result
    return updated


def client_payload(message: Any) -> ClientMessagePayload | None:
    """The ``client_message`` payload of a message no other hook maps; None if it is no JSON-RPC message."""
    if not isinstance(message, dict):
        return None
    request_id = message.get("id")
    reply_id = request_id if valid_id(request_id) else None
    method = message.get("method")
    if isinstance(method, str):
        params = message.get("params")
        return ClientMessagePayload(method=method, params=params if isinstance(params, dict) else None, id=reply_id)
    if "result" in message:
        return ClientMessagePayload(result=message["result"], id=reply_id)
    return None


def post_payload(pending: PendingCall, result: Any) -> Any:
    """The response hook's payload for a successful ``result``; None for a list page of the wrong shape."""
    if pending.method in LIST_HOOKS:
        return list_payload(pending.method, result)
    if pending.post_hook is HookType.TOOL_POST_INVOKE:
        return ToolPostInvokePayload(name=pending.name, result=result)
    if pending.post_hook is HookType.PROMPT_POST_FETCH:
        return PromptPosthookPayload(prompt_id=pending.name, result=result)
    return ResourcePostFetchPayload(uri=pending.name, content=result)


def post_result(payload: Any) -> Any:
    """The ``result`` a response hook's payload carries."""
    if isinstance(payload, ResourcePostFetchPayload):
        return payload.content
    return payload.result


def apply_post(message: dict[str, Any], pending: PendingCall, payload: Any) -> dict[str, Any]:
    """``message`` with its result replaced by what ``payload`` holds."""
    if pending.method in LIST_HOOKS:
        return apply_list(message, pending.method, payload)
    return {**message, "result": post_result(payload)}


def response_id(message: Any) -> Any:
    """The id of a successful JSON-RPC response, or a sentinel if it is none."""
    if isinstance(message, dict) and "result" in message and "method" not in message:
        return message.get("id", NO_ID)
    return NO_ID


def error_response(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def violation_data(violation: PluginViolation) -> dict[str, Any]:
    """The ``data`` member describing a violation (as ContextForge sends it)."""
    return {
        "plugin_name": violation.plugin_name,
        "plugin_error_code": violation.code,
        "description": violation.description or violation.reason,
        "details": violation.details,
    }


def blocked_response(
    request_id: Any,
    method: str,
    violation: PluginViolation,
    *,
    as_result: bool,
    protocol: str | None,
) -> dict[str, Any]:
    """The answer to a request that a plugin blocked.

    A JSON-RPC error by default; with ``as_result``, a ``tools/call`` is
    answered with an ``isError`` tool result instead (plugin failures always
    stay errors).
    """
    text = f"Plugin Violation: {violation.description or violation.reason}"
    failed = violation.code in ("PLUGIN_ERROR", "PLUGIN_TIMEOUT")
    if as_result and method == "tools/call" and not failed:
        result: dict[str, Any] = {
            "content": [{"type": "text", "text": text}],
            "isError": True,
            # _meta rather than structuredContent: a tool's outputSchema
            # would make clients reject a structuredContent of our shape.
            "_meta": {VIOLATION_META_KEY: violation_data(violation)},
        }
        if protocol is not None and protocol >= RESULT_TYPE_SINCE:
            result["resultType"] = "complete"
        return {"jsonrpc": "2.0", "id": request_id, "result": result}
    default = INTERNAL_ERROR if failed else INVALID_PARAMS
    code = violation.mcp_error_code if violation.mcp_error_code is not None else default
    return error_response(request_id, code, text, violation_data(violation))
