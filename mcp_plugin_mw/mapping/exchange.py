"""
One HTTP exchange, independent of ASGI and WSGI
===============================================

:class:`Exchange` holds what the middlewares decide for one request and its
response: whether to read the body at all, which hooks run on it, how a
changed payload is written back, and what the client gets when a plugin
blocks. It does no I/O and calls no plugin itself: its steps are generators
that *yield* ``(hook, payload)`` and are *sent* the
:class:`~mcp_plugin_mw.models.HookResult`. :func:`drive` (async) and
:func:`drive_sync` run them, so ``asgi.py`` and ``wsgi.py`` share every rule
and differ only in how they move bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Generator
from typing import Any

from ..manager import PluginManager
from ..models import (
    GlobalContext,
    HookResult,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PluginViolation,
)
from . import jsonrpc
from .http import Headers, header, is_json, media_type, problem, replace_header, retry_after, violation_problem
from .sse import SSEEvent, SSEEventTooLarge, SSEParser, encode_event, reencode

__all__ = ["Exchange", "Forward", "Reply", "ResponseMode", "Steps", "drive", "drive_sync"]

Steps = Generator[tuple[HookType, Any, GlobalContext], HookResult, Any]

_PRE_HOOKS = tuple(hooks[0] for hooks in jsonrpc.RPC_HOOKS.values())
_POST_HOOKS = tuple(hooks[1] for hooks in jsonrpc.RPC_HOOKS.values())
_RPC_HOOKS = frozenset(_PRE_HOOKS + _POST_HOOKS)
# The member every result of a mapped method has (MCP schema), by response hook.
_RESULT_SHAPES = (
    ("content", HookType.TOOL_POST_INVOKE),
    ("messages", HookType.PROMPT_POST_FETCH),
    ("contents", HookType.RESOURCE_POST_FETCH),
)
_IDENTITY = ("", "identity")


@dataclasses.dataclass(slots=True)
class Reply:
    """A response the middleware sends itself, instead of or over the app's."""

    status: int
    headers: Headers
    body: bytes


@dataclasses.dataclass(slots=True)
class Forward:
    """The request to hand to the app; ``body`` None means the original bytes."""

    headers: Headers
    body: bytes | None = None
    path: str | None = None
    query_string: str | None = None


class ResponseMode(enum.Enum):
    """How the middleware treats a response body."""

    PASS = "pass"
    BUFFER = "buffer"
    STREAM = "stream"


@dataclasses.dataclass(slots=True)
class Request:
    """What the middleware knows of a request before reading its body."""

    method: str
    path: str
    query_string: str
    headers: Headers
    client: str | None = None
    user: str | None = None


class Exchange:
    """Decisions for one request and its response.

    :param manager: the plugins to run.
    :param request: the request line and headers.
    """

    def __init__(self, manager: PluginManager, request: Request) -> None:
        self.manager = manager
        self.settings = manager.settings
        # Looked up once: which hooks have plugins, for every decision below.
        self.active = manager.active_hooks
        self.request = request
        self.context = self._context(request)
        self.pending: dict[tuple[bool, Any], jsonrpc.PendingCall] = {}
        self.injected: list[dict[str, Any]] = []
        self.is_rpc = False
        # The JSON-RPC requests of the body, for answering a block by an HTTP
        # hook in JSON-RPC (filled in when the body was decoded).
        self.rpc_requests: list[tuple[Any, str, str | None]] = []
        self.rpc_batch = False
        self.sse: SSEParser | None = None
        # An event stream that answers no request of its own (a GET): results
        # on it were asked for by an earlier request, whose calls are unknown.
        self.resumed = False
        # Set once an event outgrew max_response_bytes: the rest is dropped.
        self.overflowed = False

    def _context(self, request: Request) -> GlobalContext:
        settings, headers = self.settings, request.headers
        user = header(headers, settings.user_header.lower()) if settings.user_header else None
        context = GlobalContext(
            request_id=header(headers, "x-request-id") or os.urandom(16).hex(),
            user=user or request.user,
            tenant_id=header(headers, settings.tenant_header.lower()) if settings.tenant_header else None,
            server_id=header(headers, settings.server_id_header.lower()) if settings.server_id_header else None,
            content_type=header(headers, "content-type"),
        )
        if request.client:
            context.metadata["client"] = request.client
        return context

    # ------------------------------------------------------------------
    # Request side
    # ------------------------------------------------------------------

    @staticmethod
    def wants(manager: PluginManager, method: str) -> bool:
        """Whether any plugin could see a request with this method, or its response."""
        active = manager.active_hooks
        if not active:
            return False
        if HookType.HTTP_PRE_REQUEST in active or HookType.HTTP_POST_REQUEST in active:
            return True
        if method == "GET":
            # A GET stream may resume an earlier POST's stream (Last-Event-ID)
            # and carry its results.
            return not active.isdisjoint(_POST_HOOKS)
        return method == "POST" and not active.isdisjoint(_RPC_HOOKS)

    def needs_body(self) -> bool:
        """Whether the request body must be read before the app runs."""
        if HookType.HTTP_PRE_REQUEST in self.active:
            return True
        rpc = self.request.method == "POST" and is_json(self.context.content_type)
        return rpc and not self.active.isdisjoint(_RPC_HOOKS)

    def refuse_early(self, content_length: int | None) -> Reply | None:
        """A reply for a body that must be read but cannot be, else None."""
        encoding = (header(self.request.headers, "content-encoding") or "").strip().lower()
        if encoding not in _IDENTITY:
            # Plugins cannot read a compressed body; passing it unread would
            # let any client skip them by compressing.
            return Reply(*problem(415, f"request bodies with Content-Encoding {encoding!r} are not accepted here"))
        if content_length is not None and content_length > self.settings.max_body_bytes:
            return self.too_large()
        return None

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
                return self._block_http(result.violation, body)
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
        if request.method == "POST" and is_json(self.context.content_type):
            verdict = yield from self._on_rpc_request(body, forward)
            return verdict
        return forward

    def _on_rpc_request(self, body: bytes, forward: Forward) -> Steps:
        decoded = jsonrpc.decode(body)
        if decoded is None:
            return forward  # not JSON: the app answers with its own parse error
        batch = isinstance(decoded, list)
        messages = decoded if batch else [decoded]
        active = self.active
        version_header = header(forward.headers, "mcp-protocol-version")
        if HookType.HTTP_POST_REQUEST in active:
            self.rpc_batch = batch
            self.rpc_requests = [
                (m["id"], m["method"], jsonrpc.protocol_version(m, version_header))
                for m in messages
                if jsonrpc.is_request(m)
            ]
        kept: list[Any] = []
        changed = False
        renamed: str | None = None
        reused = _reused_ids(messages) if batch else set()
        for message in messages:
            mapped = jsonrpc.pre_call(message, active)
            if mapped is None:
                kept.append(message)
                continue
            self.is_rpc = True
            if _id_key(message["id"]) in reused:
                # Responses are matched to requests by id: with two requests
                # under one id, a response could reach the client unchecked.
                changed = True
                detail = f"Invalid Request: id {message['id']!r} is used by more than one request in this batch"
                self.injected.append(jsonrpc.error_response(message["id"], jsonrpc.INVALID_REQUEST, detail))
                continue
            pre_hook, post_hook, payload = mapped
            protocol = jsonrpc.protocol_version(message, version_header)
            # Each member of a batch is its own exchange for the plugins: state
            # one member's pre hook leaves must reach only that member's post hook.
            context = dataclasses.replace(self.context, plugin_contexts={}) if batch else self.context
            if pre_hook in active:
                result = yield pre_hook, payload, context
                if not result.continue_processing:
                    changed = True
                    self.injected.append(self._blocked(message["id"], message["method"], result.violation, protocol))
                    continue
                if result.modified_payload is not None:
                    before = jsonrpc.entity_name(payload)
                    payload = result.modified_payload
                    message = jsonrpc.apply_pre(message, payload)
                    changed = True
                    if jsonrpc.entity_name(payload) != before:
                        renamed = jsonrpc.entity_name(payload)
            if post_hook in active:
                call = jsonrpc.PendingCall(
                    message["id"], message["method"], jsonrpc.entity_name(payload), post_hook, protocol, context
                )
                self.pending[_id_key(message["id"])] = call
            kept.append(message)
        if not kept and self.injected:
            replies, self.injected = self.injected, []
            return self._rpc_reply(replies if batch else replies[0])
        if not changed:
            return forward
        if renamed is not None and not batch and header(forward.headers, "mcp-name") is not None:
            forward.headers = replace_header(forward.headers, "mcp-name", renamed)
        forward.body = jsonrpc.encode(kept if batch else kept[0])
        return forward

    def _blocked(
        self, request_id: Any, method: str, violation: PluginViolation | None, protocol: str | None
    ) -> dict[str, Any]:
        assert violation is not None  # the executor always sets one on a block
        as_result = self.settings.block_tools_as_result
        return jsonrpc.blocked_response(request_id, method, violation, as_result=as_result, protocol=protocol)

    def _block_http(self, violation: PluginViolation | None, request_body: bytes | None = None) -> Reply:
        """The answer to a block by an HTTP hook.

        A JSON-RPC request is answered in JSON-RPC, with its id, so that an
        MCP client sees the violation rather than a bare HTTP error.
        """
        assert violation is not None
        self.pending.clear()
        if request_body is not None:
            self.rpc_requests = self._rpc_requests(request_body)
        if self.rpc_requests:
            replies = [
                self._blocked(request_id, method, violation, protocol)
                for request_id, method, protocol in self.rpc_requests
            ]
            return self._rpc_reply(replies if self.rpc_batch else replies[0])
        return Reply(*violation_problem(violation))

    def _rpc_requests(self, body: bytes) -> list[tuple[Any, str, str | None]]:
        """(id, method, protocol) of the JSON-RPC requests in a body, if it holds any."""
        if self.request.method != "POST" or not is_json(self.context.content_type):
            return []
        decoded = jsonrpc.decode(body)
        self.rpc_batch = isinstance(decoded, list)
        messages = decoded if isinstance(decoded, list) else [decoded]
        version_header = header(self.request.headers, "mcp-protocol-version")
        return [
            (message["id"], message["method"], jsonrpc.protocol_version(message, version_header))
            for message in messages
            if jsonrpc.is_request(message)
        ]

    def _rpc_reply(self, document: Any) -> Reply:
        body = jsonrpc.encode(document)
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        for message in document if isinstance(document, list) else [document]:
            data = message.get("error", {}).get("data") if isinstance(message, dict) else None
            if isinstance(data, dict) and isinstance(data.get("details"), dict):
                headers += retry_after(PluginViolation(reason="", details=data["details"]))
                break
        return Reply(200, headers, body)

    # ------------------------------------------------------------------
    # Response side
    # ------------------------------------------------------------------

    def response_mode(self, status: int, headers: Headers) -> ResponseMode:
        """How to treat the app's response, from its status and headers."""
        kind = media_type(header(headers, "content-type"))
        streaming = kind == "text/event-stream"
        if self.pending or self.injected:
            encoding = (header(headers, "content-encoding") or "").strip().lower()
            if streaming and self.pending and encoding not in _IDENTITY:
                # Compressed events cannot be parsed: buffer, so that
                # on_response replaces the stream rather than pass it unread.
                return ResponseMode.BUFFER
            if streaming:
                self.sse = SSEParser(self.settings.max_response_bytes)
                return ResponseMode.STREAM
            # Any other type with calls pending: the SDK client parses every
            # type that merely starts with "application/json" as JSON.
            if kind == "application/json" or self.pending or (self.injected and status in (200, 202, 204)):
                return ResponseMode.BUFFER
        if streaming and self.request.method == "GET" and not self.active.isdisjoint(_POST_HOOKS):
            self.sse = SSEParser(self.settings.max_response_bytes)
            self.resumed = True
            return ResponseMode.STREAM
        if not streaming and HookType.HTTP_POST_REQUEST in self.active:
            return ResponseMode.BUFFER
        return ResponseMode.PASS

    def oversized_response(self) -> Reply:
        """The reply replacing a response too large to inspect."""
        return self._uninspectable(f"a response over {self.settings.max_response_bytes} bytes")

    def on_response(self, status: int, headers: Headers, body: bytes) -> Steps:
        """Run the response hooks on a buffered response; returns the :class:`Reply` to send."""
        reply = Reply(status, headers, body)
        if self.pending or self.injected:
            reply = yield from self._on_rpc_response(reply)
        if HookType.HTTP_POST_REQUEST in self.active:
            payload = HttpPostRequestPayload(
                method=self.request.method,
                path=self.request.path,
                status_code=reply.status,
                headers=reply.headers,
                body=reply.body,
            )
            result = yield HookType.HTTP_POST_REQUEST, payload, self.context
            if not result.continue_processing:
                return self._block_http(result.violation)
            changed = result.modified_payload
            if changed is not None:
                reply = Reply(changed.status_code, list(changed.headers), changed.body)
                if changed.body != body:
                    reply.headers = replace_header(reply.headers, "content-length", str(len(reply.body)))
        return reply

    def _on_rpc_response(self, reply: Reply) -> Steps:
        encoding = (header(reply.headers, "content-encoding") or "").strip().lower()
        if self.pending and encoding not in _IDENTITY:
            return self._uninspectable(f"a response with Content-Encoding {encoding!r}")
        decoded = jsonrpc.decode(reply.body) if reply.body.strip() else None
        if decoded is None and not reply.body.strip() and self.injected:
            replies, self.injected = self.injected, []
            return self._rpc_reply(replies)
        if decoded is None:
            return reply
        batch = isinstance(decoded, list)
        messages = decoded if batch else [decoded]
        changed = False
        out: list[Any] = []
        for message in messages:
            updated = yield from self._on_rpc_message(message)
            changed = changed or updated is not None
            out.append(message if updated is None else updated)
        if self.injected:
            out.extend(self.injected)
            self.injected = []
            changed, batch = True, True
        if not changed:
            return reply
        body = jsonrpc.encode(out if batch else out[0])
        return Reply(reply.status, replace_header(reply.headers, "content-length", str(len(body))), body)

    def _uninspectable(self, what: str) -> Reply:
        # Fail closed: a response the plugins cannot read must not reach the
        # client unchecked.
        detail = f"{what} cannot be inspected by plugins"
        if not self.pending and not self.injected:
            return Reply(*problem(502, detail))
        errors = [jsonrpc.error_response(call.id, jsonrpc.INTERNAL_ERROR, detail) for call in self.pending.values()]
        documents = errors + self.injected
        self.pending.clear()
        self.injected = []
        return self._rpc_reply(documents if len(documents) > 1 else documents[0])

    def _on_rpc_message(self, message: Any) -> Steps:
        """The changed message, or None when the response hook left it alone."""
        request_id = jsonrpc.response_id(message)
        call = self.pending.pop(_id_key(request_id), None) if request_id is not jsonrpc.NO_ID else None
        if call is None:
            if self.resumed and request_id is not jsonrpc.NO_ID and self._watched_result(message["result"]):
                # Fail closed: the request (tool, prompt or resource) is not
                # known here, so the response hook cannot be run on it.
                detail = "a result resumed on another stream cannot be inspected by plugins"
                return jsonrpc.error_response(request_id, jsonrpc.INTERNAL_ERROR, detail)
            return None
        original = message["result"]
        result = yield call.post_hook, jsonrpc.post_payload(call, original), call.context
        if not result.continue_processing:
            return self._blocked(call.id, call.method, result.violation, call.protocol_version)
        if result.modified_payload is None:
            return None
        updated = jsonrpc.apply_post(message, result.modified_payload)
        new = updated["result"]
        if isinstance(original, dict) and "resultType" in original and isinstance(new, dict):
            # A plugin that rebuilds the result must not drop a field the
            # 2026-07-28 client requires.
            updated["result"] = {**new, "resultType": new.get("resultType", original["resultType"])}
        return updated

    def _watched_result(self, result: Any) -> bool:
        """Whether ``result`` has the shape of a result a response hook watches."""
        if not isinstance(result, dict):
            return False
        return any(key in result and hook in self.active for key, hook in _RESULT_SHAPES)

    def on_stream_chunk(self, chunk: bytes) -> Steps:
        """Transform one chunk of an event stream; returns the bytes to send now."""
        assert self.sse is not None
        if self.overflowed:
            return b""
        try:
            events = self.sse.feed(chunk)
        except SSEEventTooLarge:
            return self._overflow()
        out: list[bytes] = []
        for event in events:
            out.append((yield from self._on_event(event)))
        return b"".join(out)

    def _overflow(self) -> bytes:
        # Fail closed: the event may carry a result no hook has seen. Where it
        # ends cannot be told any more, so nothing after it is sent either.
        self.overflowed = True
        detail = f"an event over {self.settings.max_response_bytes} bytes cannot be inspected by plugins"
        errors = [jsonrpc.error_response(call.id, jsonrpc.INTERNAL_ERROR, detail) for call in self.pending.values()]
        messages, self.injected = errors + self.injected, []
        self.pending.clear()
        return b"".join(encode_event(data=jsonrpc.encode(m).decode(), event="message") for m in messages)

    def on_stream_end(self) -> Steps:
        """The bytes that end the stream: any incomplete tail, and replies for blocked batch members."""
        assert self.sse is not None
        out: list[bytes] = []
        for event in [] if self.overflowed else self.sse.flush():
            out.append((yield from self._on_event(event)))
        for message in self.injected:
            out.append(encode_event(data=jsonrpc.encode(message).decode(), event="message"))
        self.injected = []
        return b"".join(out)

    def _on_event(self, event: SSEEvent) -> Steps:
        if not event.complete and (self.pending or self.resumed):
            # Some clients still dispatch an unterminated last event: httpx2,
            # which the SDK client reads with, does when it ends in a lone CR.
            # Inspect it as if it were terminated; untouched, it goes as it came.
            parser = SSEParser()
            pieces: list[bytes] = []
            for part in [*parser.feed(event.raw + b"\n\n"), *parser.flush()]:
                pieces.append((yield from self._on_event(part)) if part.complete else part.raw)
            joined = b"".join(pieces)
            return event.raw if joined == event.raw + b"\n\n" else joined
        if not (self.pending or self.resumed) or not event.has_data or not event.complete:
            return event.raw
        message = jsonrpc.decode(event.data.encode())
        if isinstance(message, list):
            # MCP 2025-03-26 lets the responses on a stream be batched.
            changed = False
            out: list[Any] = []
            for member in message:
                updated = yield from self._on_rpc_message(member)
                changed = changed or updated is not None
                out.append(member if updated is None else updated)
            return reencode(event, jsonrpc.encode(out).decode()) if changed else event.raw
        if not isinstance(message, dict):
            return event.raw
        updated = yield from self._on_rpc_message(message)
        if updated is None:
            return event.raw
        return reencode(event, jsonrpc.encode(updated).decode())


def _reused_ids(messages: list[Any]) -> set[tuple[bool, Any]]:
    """The ids that more than one request of a batch uses."""
    seen: set[tuple[bool, Any]] = set()
    reused: set[tuple[bool, Any]] = set()
    for message in messages:
        if jsonrpc.is_request(message):
            key = _id_key(message["id"])
            (reused if key in seen else seen).add(key)
    return reused


def _id_key(request_id: Any) -> tuple[bool, Any]:
    # JSON-RPC ids 1 and "1" are different requests.
    return isinstance(request_id, str), request_id


async def drive(manager: PluginManager, steps: Steps) -> Any:
    """Run ``steps`` with ``await manager.invoke``; returns their value."""
    try:
        hook, payload, context = next(steps)
        while True:
            hook, payload, context = steps.send(await manager.invoke(hook, payload, context))
    except StopIteration as done:
        return done.value


def drive_sync(manager: PluginManager, steps: Steps) -> Any:
    """Run ``steps`` with ``manager.invoke_sync``; returns their value."""
    try:
        hook, payload, context = next(steps)
        while True:
            hook, payload, context = steps.send(manager.invoke_sync(hook, payload, context))
    except StopIteration as done:
        return done.value
