"""
The request side of an exchange
===============================

:class:`RequestSide` decides what the app may receive: whether the body must
be read, the request hooks on it, and the middleware's own answer when a
plugin blocks or a message must be refused. The rule (DESIGN §9): while an MCP
hook is active, any body the app could parse as JSON is inspected as JSON-RPC,
whatever the HTTP method and Content-Type say; a message that names a mapped
method but cannot be mapped is refused, never passed on unchecked.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any

from ..models import (
    ClientMessagePayload,
    GlobalContext,
    HookType,
    HttpPreRequestPayload,
    PluginSettings,
    PluginViolation,
)
from . import body as bodies
from . import jsonrpc
from .http import HTTP_HOOK_TYPES, header, is_identity, problem, replace_header, rpc_reply, violation_problem
from .state import Calls, Forward, Reply, Request, Steps, failure

__all__ = ["BodyMode", "RequestSide", "passes_unread"]


class BodyMode(enum.Enum):
    """How much of a request body the middleware reads before the app runs."""

    NONE = "none"
    """No plugin can see it: the app reads it itself."""
    SNIFF = "sniff"
    """Enough to tell whether it may be JSON; the rest only if it may."""
    FULL = "full"
    """All of it (an ``http_pre_request`` hook sees every body)."""


class RequestSide:
    """The request hooks of one exchange.

    :param settings: the manager's ``plugin_settings``.
    :param active: the hooks that have plugins.
    :param request: the request line and headers.
    :param context: the context the hooks run with.
    :param calls: where the mapped calls are left for the response side.
    """

    def __init__(
        self,
        settings: PluginSettings,
        active: frozenset[HookType],
        request: Request,
        context: GlobalContext,
        calls: Calls,
    ) -> None:
        self.settings = settings
        self.active = active
        self.request = request
        self.context = context
        self.calls = calls
        self.rpc = not active.isdisjoint(jsonrpc.RPC_HOOK_TYPES)
        # The JSON-RPC requests of the body, to answer a block by an HTTP hook
        # in JSON-RPC: (id, method, protocol) and whether they came as a batch.
        self.rpc_requests: list[tuple[Any, str, str | None]] = []
        self.rpc_batch = False
        # Whether the body held JSON-RPC messages (read as such): only then may
        # the response hold the server's own messages for ``server_message``.
        self.rpc_seen = False
        self._declared: list[str] | None = None
        self._declared_read = False

    def body_mode(self) -> BodyMode:
        """How much of the body must be read before the app runs."""
        if HookType.HTTP_PRE_REQUEST in self.active:
            return BodyMode.FULL
        return BodyMode.SNIFF if self.rpc else BodyMode.NONE

    def declared_charsets(self) -> list[str] | None:
        """The codecs the Content-Type headers declare; None if one is unknown."""
        if not self._declared_read:
            values = [value for name, value in self.request.headers if name == "content-type"]
            self._declared = bodies.charsets(values)
            self._declared_read = True
        return self._declared

    def refuse_early(self, content_length: int | None) -> Reply | None:
        """A reply for a body that must be read but cannot be, else None."""
        if content_length == 0:
            return None
        encoding = header(self.request.headers, "content-encoding")
        if not is_identity(encoding):
            # Plugins cannot read a compressed body; passing it unread would
            # let any client skip them by compressing.
            return Reply(*problem(415, f"request bodies with Content-Encoding {encoding!r} are not accepted here"))
        if self.rpc and self.declared_charsets() is None:
            # The app may decode it with a charset the plugins cannot.
            return Reply(*problem(415, "the request's charset cannot be decoded by the plugins"))
        full = self.body_mode() is BodyMode.FULL
        if full and content_length is not None and content_length > self.settings.max_body_bytes:
            return self.too_large()
        return None

    def sniff(self, prefix: bytes, *, complete: bool) -> bool | None:
        """Whether the body so far may be JSON (the rest must be read); None: read more."""
        return bodies.sniff(prefix, self.declared_charsets() or [], complete=complete)

    def too_large(self) -> Reply:
        """The reply for a body over ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        return Reply(*problem(413, f"request body exceeds the limit of {limit} bytes", max_body_bytes=limit))

    def on_request(self, body: bytes) -> Steps:
        """Run the request hooks on ``body``; returns a :class:`Forward` or a :class:`Reply`."""
        request = self.request
        forward = Forward(headers=request.headers)
        if HookType.HTTP_PRE_REQUEST in self.active:
            payload = HttpPreRequestPayload(
                method=request.method,
                path=request.path,
                query_string=request.query_string,
                headers=request.headers,
                client=request.client,
                body=body,
            )
            result = yield HookType.HTTP_PRE_REQUEST, payload, self.context
            if not result.continue_processing:
                return self.block_http(result.violation, body)
            changed = result.modified_payload
            if changed is not None:
                body = changed.body
                forward = Forward(
                    headers=list(changed.headers),
                    body=body,
                    path=changed.path if changed.path != request.path else None,
                    query_string=changed.query_string if changed.query_string != request.query_string else None,
                )
                self.context.content_type = header(forward.headers, "content-type")
        if not self.rpc or not body or not self.sniff(body, complete=True):
            return forward
        verdict = yield from self._on_rpc_request(body, forward)
        return verdict

    def _read(self, body: bytes) -> Any:
        """The body's JSON, or the :class:`Reply` refusing it."""
        reading = bodies.read(body, self.declared_charsets() or [])
        if reading.refusal is None:
            return reading.value
        status, reason = reading.refusal
        if status == 400:
            error = jsonrpc.error_response(None, jsonrpc.PARSE_ERROR, f"Parse error: {reason}")
            return Reply(*rpc_reply(error, status=400))
        return Reply(*problem(status, reason))

    def _on_rpc_request(self, body: bytes, forward: Forward) -> Steps:
        if self._names_no_watched_method(body):
            return forward
        decoded = self._read(body)
        if isinstance(decoded, Reply):
            return decoded
        batch = isinstance(decoded, list)
        messages = decoded if batch else [decoded]
        self.rpc_seen = True
        active, calls = self.active, self.calls
        version_header = header(forward.headers, "mcp-protocol-version")
        keys = [jsonrpc.id_key(m["id"]) if jsonrpc.is_request(m) else None for m in messages]
        calls.seen.update(key for key, m in zip(keys, messages, strict=True) if jsonrpc.is_request(m))
        if HookType.HTTP_POST_REQUEST in active:
            self.rpc_batch = batch
            self.rpc_requests = _rpc_requests(messages, version_header)
        kept: list[Any] = []
        changed = False
        renamed: str | None = None
        reused = _reused(keys, messages) if batch else set()
        watch_messages = HookType.CLIENT_MESSAGE in active
        for key, message in zip(keys, messages, strict=True):
            if isinstance(message, list) and _holds_call(message):
                # Not JSON-RPC, but an app that flattens batches would run it.
                changed = True
                detail = "Invalid Request: a batch may not contain a batch"
                calls.injected.append(jsonrpc.error_response(None, jsonrpc.INVALID_REQUEST, detail))
                continue
            mapped = jsonrpc.pre_call(message, active)
            if mapped is None:
                refused = jsonrpc.refusal(message, active)
                if refused is not None:
                    changed = True
                    calls.injected.append(refused)
                    continue
                # The mapped calls are their own hooks' even when none of
                # those is subscribed: client_message sees every other message.
                if watch_messages and not (isinstance(message, dict) and message.get("method") in jsonrpc.RPC_HOOKS):
                    outcome = yield from self._on_client_message(message, batch, version_header)
                    if outcome is None:
                        changed = True
                        continue  # dropped, or answered by the middleware
                    if outcome is not message:
                        message, changed = outcome, True
                        key = jsonrpc.id_key(message["id"]) if jsonrpc.is_request(message) else None
                listed = jsonrpc.list_call(message, active)
                if listed is not None:
                    if key in reused:
                        changed = True
                        detail = f"Invalid Request: id {message['id']!r} is used by more than one request in this batch"
                        calls.injected.append(jsonrpc.error_response(message["id"], jsonrpc.INVALID_REQUEST, detail))
                        continue
                    protocol = jsonrpc.protocol_version(message, version_header)
                    calls.pending[key] = jsonrpc.PendingCall(
                        message["id"], message["method"], message["method"], listed, protocol, self.context
                    )
                kept.append(message)
                continue
            if key in reused:
                # Responses are matched to requests by id: with two requests
                # under one id, a response could reach the client unchecked.
                changed = True
                detail = f"Invalid Request: id {message['id']!r} is used by more than one request in this batch"
                calls.injected.append(jsonrpc.error_response(message["id"], jsonrpc.INVALID_REQUEST, detail))
                continue
            pre_hook, post_hook, payload = mapped
            protocol = jsonrpc.protocol_version(message, version_header)
            # Each member of a batch is its own exchange for the plugins: state
            # one member's pre hook leaves must reach only that member's post hook.
            context = dataclasses.replace(self.context, plugin_contexts={}) if batch else self.context
            if watch_messages and isinstance(message["params"].get("inputResponses"), dict):
                answered = yield from self._on_input_responses(message, context, protocol)
                if answered is None:
                    changed = True
                    continue
                if answered is not message:
                    message, changed = answered, True
            if pre_hook in active:
                result = yield pre_hook, payload, context
                if not result.continue_processing:
                    changed = True
                    calls.injected.append(self.blocked(message["id"], message["method"], result.violation, protocol))
                    continue
                if result.modified_payload is not None:
                    before = jsonrpc.entity_name(payload)
                    payload = result.modified_payload
                    message = jsonrpc.apply_pre(message, payload)
                    changed = True
                    if jsonrpc.entity_name(payload) != before:
                        renamed = jsonrpc.entity_name(payload)
            if post_hook in active:
                calls.pending[key] = jsonrpc.PendingCall(
                    message["id"], message["method"], jsonrpc.entity_name(payload), post_hook, protocol, context
                )
            kept.append(message)
        if not kept and calls.injected:
            replies = calls.take_injected()
            return Reply(*rpc_reply(replies if batch else replies[0]))
        if not kept and changed:
            # Only notifications and responses, all dropped: accepted, as the
            # server would have, and the app never sees them.
            return Reply(202, [("content-length", "0")], b"")
        if not changed:
            return forward
        if renamed is not None and not batch and header(forward.headers, "mcp-name") is not None:
            forward.headers = replace_header(forward.headers, "mcp-name", renamed)
        forward.body = jsonrpc.encode(kept if batch else kept[0])
        return forward

    def _on_client_message(self, message: Any, batch: bool, version_header: str | None) -> Steps:
        """Run ``client_message`` on one message: the message to forward (maybe changed), or None.

        None when a plugin blocked it: a request is answered with the block
        (left in :attr:`Calls.injected`), a notification or a response is
        dropped.
        """
        payload = jsonrpc.client_payload(message)
        if payload is None:
            return message
        context = dataclasses.replace(self.context, plugin_contexts={}) if batch else self.context
        result = yield HookType.CLIENT_MESSAGE, payload, context
        if not result.continue_processing:
            if jsonrpc.is_request(message):
                protocol = jsonrpc.protocol_version(message, version_header)
                self.calls.injected.append(self.blocked(message["id"], message["method"], result.violation, protocol))
            return None
        if result.modified_payload is None:
            return message
        return jsonrpc.apply_message(message, result.modified_payload)

    def _on_input_responses(self, message: dict[str, Any], context: GlobalContext, protocol: str | None) -> Steps:
        """Run ``client_message`` on each of a retried call's ``inputResponses`` (MCP 2026-07-28).

        They are the client's answers to the server's sampling and elicitation
        requests, as responses are in 2025-11-25. Returns the message
        (changed, maybe), or None when a plugin blocked one: then the call is
        answered with the block.
        """
        responses = message["params"]["inputResponses"]
        updated: dict[str, Any] = {}
        for key, response in responses.items():
            result = yield HookType.CLIENT_MESSAGE, ClientMessagePayload(result=response, id=key), context
            if not result.continue_processing:
                self.calls.injected.append(self.blocked(message["id"], message["method"], result.violation, protocol))
                return None
            changed = result.modified_payload
            updated[key] = response if changed is None else changed.result
        if all(updated[key] is responses[key] for key in responses):
            return message
        return {**message, "params": {**message["params"], "inputResponses": updated}}

    def _names_no_watched_method(self, body: bytes) -> bool:
        if HookType.HTTP_POST_REQUEST in self.active:
            return False  # its block is answered in JSON-RPC: the requests must be known
        if not self.active.isdisjoint(jsonrpc.MESSAGE_HOOK_TYPES):
            return False  # every message is watched
        declared = self.declared_charsets()
        return declared is not None and _names_no_watched_method(_shortcut(self.active)[2], declared, body)

    def blocked(
        self, request_id: Any, method: str, violation: PluginViolation | None, protocol: str | None
    ) -> dict[str, Any]:
        """The JSON-RPC answer to a request a plugin blocked."""
        assert violation is not None  # the executor always sets one on a block
        as_result = self.settings.block_tools_as_result
        return jsonrpc.blocked_response(request_id, method, violation, as_result=as_result, protocol=protocol)

    def block_http(self, violation: PluginViolation | None, request_body: bytes | None = None) -> Reply:
        """The answer to a block by an HTTP hook.

        A JSON-RPC request is answered in JSON-RPC, with its id, so that an
        MCP client sees the violation rather than a bare HTTP error.
        """
        assert violation is not None
        self.calls.pending.clear()
        if request_body is not None and self.rpc_requests == [] and request_body:
            self._remember_requests(request_body)
        if self.rpc_requests:
            replies = [
                self.blocked(request_id, method, violation, protocol)
                for request_id, method, protocol in self.rpc_requests
            ]
            return Reply(*rpc_reply(replies if self.rpc_batch else replies[0]))
        return Reply(*violation_problem(violation))

    def failed(self, body: bytes, error: BaseException) -> Reply:
        """The answer to a request the plugins or the mapping failed on.

        JSON-RPC requests get a -32603 error each, with their ids; anything
        else a 500 problem. The app never sees the request.
        """
        self.calls.pending.clear()
        self.calls.injected.clear()
        detail = f"Internal error: the request could not be processed ({failure(error)})"
        if not self.rpc_requests and body:
            self._remember_requests(body)
        if self.rpc_requests:
            errors = [jsonrpc.error_response(rid, jsonrpc.INTERNAL_ERROR, detail) for rid, _, _ in self.rpc_requests]
            return Reply(*rpc_reply(errors if self.rpc_batch else errors[0]))
        return Reply(*problem(500, detail))

    def _remember_requests(self, body: bytes) -> None:
        if self.sniff(body, complete=True) is not True:
            return
        reading = bodies.read(body, self.declared_charsets() or [])
        if reading.refusal is not None:
            return
        self.rpc_batch = isinstance(reading.value, list)
        messages = reading.value if self.rpc_batch else [reading.value]
        self.rpc_requests = _rpc_requests(messages, header(self.request.headers, "mcp-protocol-version"))


def passes_unread(
    active: frozenset[HookType], method: str, content_types: list[str], encoding: str | None, body: bytes
) -> bool:
    """Whether a whole request body provably needs neither a hook nor a refusal.

    The shortcut of both middlewares for most MCP traffic (``initialize``,
    ``tools/list``, notifications): the same verdict as running
    :meth:`RequestSide.on_request` and finding nothing to do, without the
    exchange. False whenever an HTTP hook is configured, and for a ``GET``
    while a response hook is (its stream may resume an earlier call's).
    """
    possible, watches_get, stems = _shortcut(active)
    if not possible or (watches_get and method.upper() == "GET"):
        return False
    if not body:
        return True
    if encoding is not None and not is_identity(encoding):
        return False  # refused on the full path
    declared = bodies.charsets(content_types) if content_types else []
    if declared is None:
        return False
    if not bodies.sniff(body, declared, complete=True):
        return True  # no JSON object or array in any reading
    return _names_no_watched_method(stems, declared, body)


def _names_no_watched_method(stems: tuple[bytes, ...], declared: list[str], body: bytes) -> bool:
    """Whether ``body`` provably names no method a hook watches, however spelt: nothing to parse.

    Only plain ASCII qualifies (no escapes, no NULs, no other charset):
    then every spelling a lenient app accepts holds the method's first
    segment as it is, in some case.
    """
    # Escapes, other encodings and non-ASCII letters a lenient app may fold
    # into ASCII (fullwidth forms, the Kelvin sign) are parsed. Each test is
    # one pass over the body in C; the cheapest go first.
    if not body.isascii() or body[:1] not in (b"{", b"[") or declared not in ([], ["utf-8"]):
        return False
    lowered = body.lower()
    for stem in stems:
        if stem in lowered:
            return False
    return b"\\" not in body and b"\x00" not in body


@functools.cache
def _shortcut(active: frozenset[HookType]) -> tuple[bool, bool, tuple[bytes, ...]]:
    """For one set of active hooks: whether the shortcut may apply, whether GETs are excluded, and the stems.

    The stems are the first segments (``b"tools"``) of the mapped methods
    whose hooks are active.
    """
    watched = [method for method, (pre, post) in jsonrpc.RPC_HOOKS.items() if pre in active or post in active]
    watched += [method for method, hook in jsonrpc.LIST_HOOKS.items() if hook in active]
    stems = tuple(dict.fromkeys(method.partition("/")[0].encode() for method in watched))
    # Every message is watched by the message hooks: nothing passes unread.
    possible = active.isdisjoint(HTTP_HOOK_TYPES) and active.isdisjoint(jsonrpc.MESSAGE_HOOK_TYPES)
    watches_get = not active.isdisjoint(jsonrpc.RESPONSE_HOOK_TYPES)
    return possible, watches_get, stems


def _rpc_requests(messages: list[Any], version_header: str | None) -> list[tuple[Any, str, str | None]]:
    return [
        (message["id"], message["method"], jsonrpc.protocol_version(message, version_header))
        for message in messages
        if jsonrpc.is_request(message)
    ]


def _reused(keys: list[Any], messages: list[Any]) -> set[Any]:
    """The id keys that more than one request of a batch uses."""
    seen: set[Any] = set()
    reused: set[Any] = set()
    for key, message in zip(keys, messages, strict=True):
        if jsonrpc.is_request(message):
            (reused if key in seen else seen).add(key)
    return reused


def _holds_call(value: list[Any]) -> bool:
    """Whether a nested batch holds, at any depth, a message naming a mapped method."""
    stack = [value]
    while stack:
        for item in stack.pop():
            if isinstance(item, list):
                stack.append(item)
            elif jsonrpc.names_mapped_method(item):
                return True
    return False
