"""
Out-of-process plugins: wire format and base class
==================================================

Protocol 1 (``docs/external-protocol.rst``) carries a hook call as JSON. This
module turns the Python objects a hook sees into that JSON and back, in both
directions, so that the client transports and the ``serve-plugin`` host share
one definition:

* payloads: every field as is, except the ``body`` bytes of the two HTTP
  payloads, which travel base64-encoded as ``body_b64``;
* contexts: the plugin's own ``state`` and ``metadata`` plus a read-only copy
  of the shared ``global_context``; the plugin's ``state`` and ``metadata``
  come back with the reply and replace the local ones, so state set on a pre
  hook reaches the post hook even though the server keeps nothing;
* results and violations: their fields by name.

:class:`RemotePlugin` is the base of every out-of-process plugin: it defines
all eight hook methods as ``async`` forwards to one abstract
:meth:`RemotePlugin.call`, and keeps the health figures that
:meth:`RemotePlugin.status` reports. Which hooks run comes from the
configuration's ``hooks:``, which is therefore required.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import logging
from time import perf_counter
from typing import Any, ClassVar, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from ..models import (
    PAYLOAD_TYPES,
    GlobalContext,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    Payload,
    PluginConfig,
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
from ..plugin import Plugin, PluginStatus

__all__ = [
    "TOKEN_ENV",
    "ExternalOptions",
    "ProtocolError",
    "RemotePlugin",
    "apply_context",
    "decode_call",
    "decode_context",
    "decode_payload",
    "decode_reply",
    "decode_result",
    "decode_violation",
    "dumps",
    "encode_call",
    "encode_context",
    "encode_error",
    "encode_payload",
    "encode_reply",
    "encode_result",
    "encode_violation",
    "error_from_reply",
]

_HTTP_PAYLOADS = (HttpPreRequestPayload, HttpPostRequestPayload)

TOKEN_ENV = "MCP_PLUGIN_MW_SERVE_TOKEN"
"""Hands a plugin server the bearer token that every ``POST /call`` must carry."""


class ProtocolError(PluginError):
    """A peer sent something that is not protocol 1."""

    def __init__(self, message: str, *, plugin_name: str | None = None) -> None:
        super().__init__(message, plugin_name=plugin_name, code="PROTOCOL_ERROR")


def dumps(value: Any) -> bytes:
    """JSON bytes for the wire.

    State and metadata set by in-process plugins may hold values JSON cannot
    express; they are sent as their ``str()`` rather than failing the call.
    """
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


def _loads(body: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not JSON ({exc}): {_excerpt(body)}") from None


def _excerpt(body: bytes | str, limit: int = 120) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ProtocolError(f"{where} must be {names}, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------


def encode_payload(payload: Payload) -> dict[str, Any]:
    """The JSON object for ``payload``: its fields, with HTTP bodies as ``body_b64``."""
    fields = type(payload).model_fields
    if isinstance(payload, _HTTP_PAYLOADS):
        data = {name: getattr(payload, name) for name in fields if name != "body"}
        data["body_b64"] = base64.b64encode(payload.body).decode("ascii")
        return data
    return {name: getattr(payload, name) for name in fields}


def decode_payload(hook: HookType, data: Any) -> Payload:
    """The payload ``hook`` receives, built from its JSON object.

    :raises ProtocolError: if ``data`` does not have the payload's shape.
    """
    cls = PAYLOAD_TYPES[hook]
    _expect(data, dict, "payload")
    if cls in _HTTP_PAYLOADS:
        data = dict(data)
        encoded = _expect(data.pop("body_b64", ""), str, "payload.body_b64")
        try:
            data["body"] = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ProtocolError(f"payload.body_b64 is not base64: {exc}") from None
    try:
        payload: Payload = cls.model_validate(data)  # type: ignore[assignment]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<payload>'}: {e['msg']}" for e in exc.errors())
        raise ProtocolError(f"payload is not a valid {cls.__name__}: {problems}") from None
    return payload


# --------------------------------------------------------------------------
# Contexts
# --------------------------------------------------------------------------


def encode_context(context: PluginContext) -> dict[str, Any]:
    """The JSON object for a plugin's context (other plugins' contexts stay home)."""
    shared = context.global_context
    return {
        "state": context.state,
        "metadata": context.metadata,
        "global_context": {
            "request_id": shared.request_id,
            "user": shared.user,
            "tenant_id": shared.tenant_id,
            "server_id": shared.server_id,
            "content_type": shared.content_type,
            "state": shared.state,
            "metadata": shared.metadata,
        },
    }


def decode_context(data: Any) -> PluginContext:
    """A fresh :class:`PluginContext` from its JSON object (server side)."""
    data = _expect({} if data is None else data, dict, "context")
    shared = _expect(data.get("global_context") or {}, dict, "context.global_context")
    optional = (str, type(None))
    global_context = GlobalContext(
        request_id=str(shared.get("request_id") or ""),
        user=_expect(shared.get("user"), optional, "context.global_context.user"),
        tenant_id=_expect(shared.get("tenant_id"), optional, "context.global_context.tenant_id"),
        server_id=_expect(shared.get("server_id"), optional, "context.global_context.server_id"),
        content_type=_expect(shared.get("content_type"), optional, "context.global_context.content_type"),
        state=_expect(shared.get("state") or {}, dict, "context.global_context.state"),
        metadata=_expect(shared.get("metadata") or {}, dict, "context.global_context.metadata"),
    )
    return PluginContext(
        global_context,
        state=_expect(data.get("state") or {}, dict, "context.state"),
        metadata=_expect(data.get("metadata") or {}, dict, "context.metadata"),
    )


def apply_context(context: PluginContext, data: Any) -> None:
    """Take over the ``state`` and ``metadata`` a reply sends back (client side).

    They replace the local ones in place: the executor keeps this
    ``PluginContext`` for the matching post hook. The global context is
    read-only to remote plugins, so it is never written.
    """
    if data is None:
        return
    _expect(data, dict, "context")
    for name in ("state", "metadata"):
        if name in data:
            value = _expect(data[name], dict, f"context.{name}")
            target: dict[str, Any] = getattr(context, name)
            if value != target:
                target.clear()
                target.update(value)


# --------------------------------------------------------------------------
# Results and violations
# --------------------------------------------------------------------------


def encode_violation(violation: PluginViolation | None) -> dict[str, Any] | None:
    """The JSON object for a violation (``plugin_name`` is the client's to fill)."""
    if violation is None:
        return None
    return {
        "reason": violation.reason,
        "description": violation.description,
        "code": violation.code,
        "details": violation.details,
        "http_status_code": violation.http_status_code,
        "mcp_error_code": violation.mcp_error_code,
    }


def decode_violation(data: Any) -> PluginViolation | None:
    """A :class:`PluginViolation` from its JSON object, or None for null."""
    if data is None:
        return None
    _expect(data, dict, "violation")
    optional_int = (int, type(None))
    return PluginViolation(
        reason=_expect(data.get("reason", "Blocked"), str, "violation.reason"),
        description=_expect(data.get("description", ""), str, "violation.description"),
        code=_expect(data.get("code", "BLOCKED"), str, "violation.code"),
        details=_expect(data.get("details") or {}, dict, "violation.details"),
        http_status_code=_expect(data.get("http_status_code"), optional_int, "violation.http_status_code"),
        mcp_error_code=_expect(data.get("mcp_error_code"), optional_int, "violation.mcp_error_code"),
    )


def encode_result(result: PluginResult | None, payload: Payload) -> dict[str, Any] | None:
    """The JSON object for what a hook returned on ``payload`` (server side).

    :raises TypeError: if the hook returned something else than a
        ``PluginResult`` or a changed payload of another type.
    """
    if result is None:
        return None
    if not isinstance(result, PluginResult):
        raise TypeError(f"hook returned {type(result).__name__}, expected PluginResult or None")
    changed = result.modified_payload
    if changed is not None and changed is not payload and type(changed) is not type(payload):
        raise TypeError(f"modified_payload is {type(changed).__name__}, expected {type(payload).__name__}")
    return {
        "continue_processing": result.continue_processing,
        "modified_payload": None if changed is None or changed is payload else encode_payload(changed),
        "violation": encode_violation(result.violation),
        "metadata": result.metadata,
    }


def decode_result(hook: HookType, data: Any, payload: Payload) -> PluginResult | None:
    """A :class:`PluginResult` from its JSON object (client side).

    A ``modified_payload`` equal to ``payload`` counts as no change, so the
    middleware forwards the original bytes.
    """
    if data is None:
        return None
    _expect(data, dict, "result")
    changed = data.get("modified_payload")
    modified = None if changed is None else decode_payload(hook, changed)
    return PluginResult(
        continue_processing=_expect(data.get("continue_processing", True), bool, "result.continue_processing"),
        modified_payload=None if modified == payload else modified,
        violation=decode_violation(data.get("violation")),
        metadata=_expect(data.get("metadata") or {}, dict, "result.metadata"),
    )


# --------------------------------------------------------------------------
# Envelopes: POST /call bodies
# --------------------------------------------------------------------------


def encode_call(hook: HookType, payload: Payload, context: PluginContext) -> bytes:
    """The body of ``POST /call``."""
    return dumps(
        {"method": hook.value, "params": {"payload": encode_payload(payload), "context": encode_context(context)}}
    )


def decode_call(body: bytes) -> tuple[HookType, Payload, PluginContext]:
    """Hook, payload and context from a ``POST /call`` body (server side)."""
    message = _expect(_loads(body, "request body"), dict, "request")
    method = message.get("method")
    try:
        hook = HookType(method)
    except ValueError:
        raise ProtocolError(f"unknown method {method!r} (one of: {', '.join(HookType)})") from None
    params = _expect(message.get("params"), dict, "params")
    return hook, decode_payload(hook, params.get("payload")), decode_context(params.get("context"))


def encode_reply(result: PluginResult | None, payload: Payload, context: PluginContext) -> bytes:
    """The body of a successful ``POST /call`` answer (server side)."""
    return dumps(
        {"result": encode_result(result, payload), "context": {"state": context.state, "metadata": context.metadata}}
    )


def encode_error(code: str, message: str) -> bytes:
    """The body of a failed ``POST /call`` answer."""
    return dumps({"error": {"code": code, "message": message}})


def decode_reply(hook: HookType, body: bytes, payload: Payload, context: PluginContext) -> PluginResult | None:
    """The result in a 200 answer to ``POST /call``; updates ``context`` (client side).

    :raises PluginError: carrying the plugin's code and message if the answer
        holds an ``error``.
    :raises ProtocolError: if the answer is not protocol 1.
    """
    reply = _expect(_loads(body, "response body"), dict, "response")
    if "error" in reply:
        raise error_from_reply(reply)
    if "result" not in reply:
        raise ProtocolError(f"response has neither 'result' nor 'error': {_excerpt(body)}")
    result = decode_result(hook, reply["result"], payload)
    apply_context(context, reply.get("context"))
    return result


def error_from_reply(reply: Any) -> PluginError:
    """The :class:`PluginError` an ``{"error": {code, message}}`` answer stands for."""
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, dict):
        return ProtocolError(f"'error' must be an object, got {_excerpt(orjson.dumps(error))}")
    code = error.get("code")
    return PluginError(str(error.get("message", "")), code=code if isinstance(code, str) else "PLUGIN_ERROR")


# --------------------------------------------------------------------------
# Options and the base class
# --------------------------------------------------------------------------


class ExternalOptions(BaseModel):
    """Base for the models that validate a kind's or transport's own keys.

    The keys sit at the top level of the plugin's entry, next to ``name`` and
    ``hooks``; errors name them there (``plugins[2].url: ...``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


_O = TypeVar("_O", bound=ExternalOptions)


class RemotePlugin(Plugin, abc.ABC):
    """A plugin that runs elsewhere; subclasses implement :meth:`call`.

    Every hook method forwards to :meth:`call` and is ``async``, so the
    executor applies the plugin's timeout to the whole round trip; an
    exception from :meth:`call` is a plugin error that the plugin's mode
    handles. Subclasses report their health with :meth:`record_health`.
    """

    options_model: ClassVar[type[ExternalOptions]]
    """Validates the kind's own keys when the configuration loads."""

    requires_hooks: ClassVar[bool] = True
    """Whether the configuration must list ``hooks`` (every hook method exists here)."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.logger = logging.getLogger(f"mcp_plugin_mw.external.{config.name}")
        """Where the plugin's own output and events are logged."""
        self._loaded = False
        self._healthy = False
        self._restarts = 0
        self._last_error: str | None = None
        self._last_latency: float | None = None

    def parse_options(self, model: type[_O]) -> _O:
        """This plugin's keys, validated by ``model``."""
        return model.model_validate(self.plugin_config.external or {})

    @abc.abstractmethod
    async def call(self, hook: HookType, payload: Payload, context: PluginContext) -> PluginResult | None:
        """Run ``hook`` remotely and return its result.

        :raises PluginError: (or any exception) when the call fails.
        """

    def status(self) -> PluginStatus:
        """Loaded (started), healthy, restarts, last error and last call latency."""
        return PluginStatus(
            name=self.name,
            kind=self.plugin_config.kind,
            loaded=self._loaded,
            healthy=self._loaded and self._healthy,
            restarts=self._restarts,
            last_error=self._last_error,
            last_latency=self._last_latency,
        )

    def record_health(self, healthy: bool, error: str | None = None) -> None:
        """Note the outcome of a health check; an error also becomes ``last_error``."""
        self._healthy = healthy
        if error is not None:
            self._last_error = error

    async def _forward(self, hook: HookType, payload: Payload, context: PluginContext) -> PluginResult | None:
        start = perf_counter()
        try:
            result = await self.call(hook, payload, context)
        except asyncio.CancelledError:
            # Almost always the executor's timeout; the executor reports it.
            self._last_error = f"{hook.value}: cancelled after {perf_counter() - start:.3g}s"
            raise
        except PluginError as exc:
            self._last_error = f"{hook.value}: {exc.message}"
            self._last_latency = perf_counter() - start
            raise
        except Exception as exc:
            self._last_error = f"{hook.value}: {type(exc).__name__}: {exc}"
            raise
        self._last_latency = perf_counter() - start
        return result

    async def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.TOOL_PRE_INVOKE, payload, context)

    async def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.TOOL_POST_INVOKE, payload, context)

    async def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.PROMPT_PRE_FETCH, payload, context)

    async def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.PROMPT_POST_FETCH, payload, context)

    async def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.RESOURCE_PRE_FETCH, payload, context)

    async def resource_post_fetch(
        self, payload: ResourcePostFetchPayload, context: PluginContext
    ) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.RESOURCE_POST_FETCH, payload, context)

    async def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.HTTP_PRE_REQUEST, payload, context)

    async def http_post_request(self, payload: HttpPostRequestPayload, context: PluginContext) -> PluginResult | None:
        """Forwarded to :meth:`call`."""
        return await self._forward(HookType.HTTP_POST_REQUEST, payload, context)
