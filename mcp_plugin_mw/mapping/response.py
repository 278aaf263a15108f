"""
The response side of an exchange
================================

:class:`ResponseSide` runs the response hooks on what the app answers: a JSON
body once it is complete, an event stream event by event. Its rule (DESIGN
§9): responses are matched to their requests the way MCP clients match them,
and a response the plugins cannot attribute, read or parse never reaches the
client as it is: it is replaced by a JSON-RPC -32603 error (a 502 problem for
plain HTTP).
"""

from __future__ import annotations

from typing import Any

from ..models import HookType, HttpPostRequestPayload
from . import body as bodies
from . import jsonrpc
from .http import Headers, header, is_identity, media_type, problem, replace_header, rpc_reply
from .request import RequestSide
from .sse import SSEEvent, SSEEventTooLarge, SSEParser, encode_event, reencode
from .state import Recall, Remember, Reply, ResponseMode, Steps, failure

__all__ = ["ResponseSide"]

# The member every result of a mapped method has (MCP schema), by response hook.
_RESULT_SHAPES = (
    ("content", HookType.TOOL_POST_INVOKE),
    ("messages", HookType.PROMPT_POST_FETCH),
    ("contents", HookType.RESOURCE_POST_FETCH),
    ("tools", HookType.TOOL_POST_LIST),
    ("prompts", HookType.PROMPT_POST_LIST),
    ("resources", HookType.RESOURCE_POST_LIST),
    ("resourceTemplates", HookType.RESOURCE_POST_LIST),
)
# Charsets in which clients and the plugins read a body alike: JSON's own
# (RFC 8259 and json.detect_encoding); an event stream is UTF-8 only.
_JSON_CHARSETS = frozenset({"utf-8", "utf-8-sig", "ascii", "utf-16", "utf-16-le", "utf-16-be", "utf-32"})
_JSON_CHARSETS |= {"utf-32-le", "utf-32-be"}
_STREAM_CHARSETS = frozenset({"utf-8", "ascii"})
_UNMATCHED: Any = object()
"""The key of a response id no request can have (an array, an object, a boolean)."""
_DROPPED: Any = object()
"""What a message a plugin blocked becomes: nothing goes out in its place."""


class ResponseSide:
    """The response hooks of one exchange.

    :param requests: the request side of the same exchange: its settings,
        hooks, request and context, the calls it mapped, and its answers in
        the request's terms.
    """

    def __init__(self, requests: RequestSide) -> None:
        self.settings = requests.settings
        self.active = requests.active
        self.request = requests.request
        self.context = requests.context
        self.calls = requests.calls
        self.requests = requests
        self.watch_server = HookType.SERVER_MESSAGE in requests.active
        # Calls a stream leaves unanswered are kept per MCP session, so a
        # result resumed on another stream finds its call (see pending.py).
        self.session = header(requests.request.headers, "mcp-session-id")
        self.sse: SSEParser | None = None
        self.replacement: Reply | None = None
        # An event stream that answers no request of its own (a GET): results
        # on it were asked for by an earlier request, whose calls are unknown.
        self.resumed = False
        # Set once an event outgrew max_response_bytes: the rest is dropped.
        self.overflowed = False

    def mode(self, status: int, headers: Headers) -> ResponseMode:
        """How to treat the app's response, from its status and headers.

        With :attr:`ResponseMode.REPLACE`, :attr:`replacement` is what the
        client gets instead.
        """
        content_types = [value for name, value in headers if name == "content-type"]
        kind = media_type(content_types[0]) if content_types else ""
        streaming = kind == "text/event-stream"
        if self.calls:
            unreadable = self._unreadable(headers, content_types, streaming)
            if unreadable is not None:
                self.replacement = self._uninspectable(unreadable)
                return ResponseMode.REPLACE
            if streaming:
                self.sse = SSEParser(self.settings.max_response_bytes)
                return ResponseMode.STREAM
            # Any other type with calls pending: the SDK client parses every
            # type that merely starts with "application/json" as JSON.
            if kind == "application/json" or self.calls.pending or status in (200, 202, 204):
                return ResponseMode.BUFFER
        is_get = self.request.method.upper() == "GET"
        if streaming and (self.watch_server or (is_get and not self.active.isdisjoint(jsonrpc.RESPONSE_HOOK_TYPES))):
            if self._unreadable(headers, content_types, streaming) is not None:
                self.replacement = self._uninspectable("an event stream the plugins cannot read")
                return ResponseMode.REPLACE
            self.sse = SSEParser(self.settings.max_response_bytes)
            self.resumed = is_get
            return ResponseMode.STREAM
        if self.watch_server and kind == "application/json" and self.requests.rpc_seen:
            # A batch of the server's own messages may come as JSON: one the
            # plugins cannot read (compressed, say) must not pass unread.
            unreadable = self._unreadable(headers, content_types, streaming)
            if unreadable is not None or not is_identity(header(headers, "content-encoding")):
                self.replacement = self._uninspectable(unreadable or "a compressed response")
                return ResponseMode.REPLACE
            return ResponseMode.BUFFER
        if not streaming and HookType.HTTP_POST_REQUEST in self.active:
            return ResponseMode.BUFFER
        return ResponseMode.PASS

    def _unreadable(self, headers: Headers, content_types: list[str], streaming: bool) -> str | None:
        """Why plugins could not read the response as its client will, or None."""
        if len(content_types) > 1:
            # Which one the client obeys is anybody's guess.
            return "a response with several Content-Type headers"
        encoding = header(headers, "content-encoding")
        if not is_identity(encoding) and (self.calls.pending or streaming):
            return f"a response with Content-Encoding {encoding!r}"
        declared = bodies.charsets(content_types)
        allowed = _STREAM_CHARSETS if streaming else _JSON_CHARSETS
        if declared is None or not allowed.issuperset(declared):
            return f"a response in charset {content_types[0]!r}"
        return None

    def oversized(self) -> Reply:
        """The reply replacing a response too large to inspect."""
        return self._uninspectable(f"a response over {self.settings.max_response_bytes} bytes")

    def failed(self, error: BaseException | None = None) -> Reply:
        """The reply for a response the plugins or the mapping failed on, before the status went out."""
        return self._uninspectable(f"the response ({failure(error)})")

    def failed_stream(self, error: BaseException | None = None) -> bytes:
        """The events that end a stream the plugins or the mapping failed on after it started."""
        self.overflowed = True  # nothing more of the app's stream goes out
        detail = f"the rest of the event stream cannot be inspected by plugins ({failure(error)})"
        return _events(self.calls.fail(detail))

    def _uninspectable(self, what: str) -> Reply:
        # Fail closed: a response the plugins cannot read must not reach the
        # client unchecked.
        detail = f"{what} cannot be inspected by plugins"
        documents = self.calls.fail(detail)
        if not documents:
            return Reply(*problem(502, detail))
        return Reply(*rpc_reply(documents if len(documents) > 1 else documents[0]))

    # ------------------------------------------------------------------
    # Buffered responses
    # ------------------------------------------------------------------

    def on_response(self, status: int, headers: Headers, body: bytes) -> Steps:
        """Run the response hooks on a buffered response; returns the :class:`Reply` to send."""
        reply = Reply(status, headers, body)
        if self.calls or (self.watch_server and self.requests.rpc_seen):
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
                return self.requests.block_http(result.violation)
            changed = result.modified_payload
            if changed is not None:
                reply = Reply(changed.status_code, list(changed.headers), changed.body)
                if changed.body != body:
                    reply.headers = replace_header(reply.headers, "content-length", str(len(reply.body)))
        return reply

    def _on_rpc_response(self, reply: Reply) -> Steps:
        calls = self.calls
        if not reply.body.strip():
            # Nothing the client could read (a 202 to notifications, say).
            injected = calls.take_injected()
            return Reply(*rpc_reply(injected)) if injected else reply
        decoded = jsonrpc.decode(reply.body)
        if not isinstance(decoded, dict | list):
            if not calls.pending:
                injected = calls.take_injected()
                return Reply(*rpc_reply(injected)) if injected and decoded is not None else reply
            return self._uninspectable("a response that is not JSON")
        batch = isinstance(decoded, list)
        messages: list[Any] = decoded if isinstance(decoded, list) else [decoded]
        out, changed = yield from self._on_rpc_messages(messages)
        injected = calls.take_injected()
        if injected:
            out.extend(injected)
            changed, batch = True, True
        if not changed:
            return reply
        if not out:
            # Every message was the server's own, and every one was blocked.
            return Reply(202, [("content-length", "0")], b"")
        body = jsonrpc.encode(out if batch else out[0])
        headers = replace_header(reply.headers, "content-length", str(len(body)))
        return Reply(reply.status, replace_header(headers, "content-type", "application/json"), body)

    def _on_rpc_messages(self, messages: list[Any]) -> Steps:
        """Each message of a batch as it goes out, and whether any changed."""
        changed = False
        out: list[Any] = []
        for message in messages:
            updated = yield from self._on_rpc_message(message)
            if updated is None:
                out.append(message)
                continue
            changed = True
            if updated is not _DROPPED:
                out.append(updated)
        return out, changed

    def _on_rpc_message(self, message: Any) -> Steps:
        """The changed message, :data:`_DROPPED`, or None when it goes out as it came."""
        if not isinstance(message, dict):
            return None
        if "method" in message:
            # A request or notification of the server's own.
            if not self.watch_server:
                return None
            return (yield from self._on_server_message(message))
        if "id" not in message or ("result" not in message and "error" not in message):
            return None
        request_id = message["id"]
        key = jsonrpc.id_key(request_id) if jsonrpc.valid_id(request_id) else _UNMATCHED
        call = self.calls.pending.pop(key, None) if key is not _UNMATCHED else None
        if call is None and key is not _UNMATCHED and key not in self.calls.seen and self.session is not None:
            # Maybe the answer to a call an earlier stream left unanswered.
            call = yield Recall(self.session, key)
        if call is None:
            if not self.calls and not self.resumed:
                return None  # no call of this exchange can be answered by it
            if self.resumed:
                if "result" in message and self._watched_result(message["result"]):
                    # Fail closed: the request (tool, prompt or resource) is not
                    # known here, so the response hook cannot be run on it.
                    detail = "a result resumed on another stream cannot be inspected by plugins"
                    return jsonrpc.error_response(request_id, jsonrpc.INTERNAL_ERROR, detail)
                return None
            if key is _UNMATCHED or key not in self.calls.seen:
                # The client may match it to a call whose hook never ran. The
                # calls still waiting are answered instead: their answer may
                # be this one under an id spelt in a way no client matches.
                detail = "a response to a request the middleware did not see cannot be inspected by plugins"
                errors = [
                    jsonrpc.error_response(call.id, jsonrpc.INTERNAL_ERROR, detail)
                    for call in self.calls.pending.values()
                ]
                self.calls.pending.clear()
                if not errors:
                    return jsonrpc.error_response(request_id, jsonrpc.INTERNAL_ERROR, detail)
                self.calls.injected.extend(errors[1:])
                return errors[0]
            return None
        if "result" not in message:
            return None  # the call failed: no result to inspect
        original = message["result"]
        if self.watch_server and isinstance(original, dict) and isinstance(original.get("inputRequests"), dict):
            asked = yield from self._on_input_requests(call, original)
            if not isinstance(asked, dict) or "inputRequests" not in asked:
                return asked  # blocked: the call's answer
            if asked is not original:
                message = {**message, "result": asked}
                updated_inputs = yield from self._post_hook(call, message)
                return message if updated_inputs is None else updated_inputs
        return (yield from self._post_hook(call, message))

    def _post_hook(self, call: jsonrpc.PendingCall, message: dict[str, Any]) -> Steps:
        """Run the call's response hook on its result: the changed message, or None."""
        original = message["result"]
        payload = jsonrpc.post_payload(call, original)
        if payload is None:
            detail = f"a {call.method} result not of its schema's shape cannot be inspected by plugins"
            return jsonrpc.error_response(call.id, jsonrpc.INTERNAL_ERROR, detail)
        result = yield call.post_hook, payload, call.context
        if not result.continue_processing:
            return self.requests.blocked(call.id, call.method, result.violation, call.protocol_version)
        if result.modified_payload is None:
            return None
        updated = jsonrpc.apply_post(message, call, result.modified_payload)
        new = updated["result"]
        if isinstance(original, dict) and "resultType" in original and isinstance(new, dict):
            # A plugin that rebuilds the result must not drop a field the
            # 2026-07-28 client requires.
            updated["result"] = {**new, "resultType": new.get("resultType", original["resultType"])}
        return updated

    def _on_input_requests(self, call: jsonrpc.PendingCall, result: dict[str, Any]) -> Steps:
        """Run ``server_message`` on each request an ``input_required`` result embeds (MCP 2026-07-28).

        They stand for the server's sampling and elicitation requests of
        2025-11-25. Returns the result (changed, maybe), or the call's answer
        when a plugin blocked one: the call cannot go on without it.
        """
        asked = result["inputRequests"]
        updated: dict[str, Any] = {}
        for key, request in asked.items():
            payload = jsonrpc.server_payload(request) if isinstance(request, dict) else None
            if payload is None:
                updated[key] = request
                continue
            outcome = yield HookType.SERVER_MESSAGE, payload, call.context
            if not outcome.continue_processing:
                return self.requests.blocked(call.id, call.method, outcome.violation, call.protocol_version)
            changed = outcome.modified_payload
            updated[key] = request if changed is None else jsonrpc.apply_message(request, changed)
        if all(updated[key] is asked[key] for key in asked):
            return result
        return {**result, "inputRequests": updated}

    def _on_server_message(self, message: dict[str, Any]) -> Steps:
        """Run ``server_message`` on a notification or request of the server's.

        A blocked message is dropped: the client never sees it. A blocked
        request (``sampling/createMessage``, ``elicitation/create``) is
        dropped too, so the server's own timeout for it applies; the call
        that asked for it goes on.
        """
        payload = jsonrpc.server_payload(message)
        if payload is None:
            return None
        result = yield HookType.SERVER_MESSAGE, payload, self.context
        if not result.continue_processing:
            return _DROPPED
        if result.modified_payload is None:
            return None
        return jsonrpc.apply_message(message, result.modified_payload)

    def _watched_result(self, result: Any) -> bool:
        """Whether ``result`` has the shape of a result a response hook watches."""
        if not isinstance(result, dict):
            return False
        return any(key in result and hook in self.active for key, hook in _RESULT_SHAPES)

    # ------------------------------------------------------------------
    # Event streams
    # ------------------------------------------------------------------

    def passes_chunk(self, chunk: bytes) -> bool:
        """Whether one chunk of an event stream goes on as it came, unparsed.

        True for whole events that no response hook needs (the usual
        progress notification); the parser is then left as it was, so a
        middleware may send such a chunk without :meth:`on_stream_chunk`.
        """
        sse = self.sse
        assert sse is not None
        return not self.overflowed and self._needs_nothing(chunk) and sse.skip_blocks(chunk)

    def _needs_nothing(self, raw: bytes) -> bool:
        """Whether the bytes of whole events provably hold nothing a hook watches (see :func:`_answers_nothing`)."""
        if self.watch_server and not _names_no_method(raw):
            return False
        return not (self.calls.pending or self.resumed) or _answers_nothing(raw)

    def on_stream_chunk(self, chunk: bytes) -> Steps:
        """Transform one chunk of an event stream; returns the bytes to send now."""
        if self.passes_chunk(chunk):
            return chunk
        sse = self.sse
        assert sse is not None
        if self.overflowed:
            return b""
        try:
            events = sse.feed(chunk)
        except SSEEventTooLarge:
            return self._overflow()
        if len(events) == 1:
            event = events[0]
            if self._needs_nothing(event.raw):
                return event.raw
            return (yield from self._on_event(event))
        out: list[bytes] = []
        for event in events:
            # Whether anything is watched is asked per event: a result may
            # have answered the last pending call.
            if self._needs_nothing(event.raw):
                out.append(event.raw)
            else:
                out.append((yield from self._on_event(event)))
        return b"".join(out)

    def _overflow(self) -> bytes:
        # Fail closed: the event may carry a result no hook has seen. Where it
        # ends cannot be told any more, so nothing after it is sent either.
        self.overflowed = True
        detail = f"an event over {self.settings.max_response_bytes} bytes cannot be inspected by plugins"
        return _events(self.calls.fail(detail))

    def on_stream_end(self) -> Steps:
        """The bytes that end the stream: any incomplete tail, and replies for blocked batch members."""
        assert self.sse is not None
        out: list[bytes] = []
        for event in [] if self.overflowed else self.sse.flush():
            out.append((yield from self._on_event(event)))
        out.append(_events(self.calls.take_injected()))
        if self.calls.pending and self.session is not None and not self.overflowed:
            # The stream ended before these were answered: the client may
            # resume it elsewhere, and the results must find their calls.
            yield Remember(self.session, tuple(self.calls.pending.values()))
            self.calls.pending.clear()
        return b"".join(out)

    def _on_event(self, event: SSEEvent) -> Steps:
        if self._needs_nothing(event.raw):
            return event.raw
        if not event.complete:
            # Some clients still dispatch an unterminated last event: httpx2,
            # which the SDK client reads with, does when it ends in a lone CR.
            # Inspect it as if it were terminated; untouched, it goes as it came.
            parser = SSEParser()
            pieces: list[bytes] = []
            for part in [*parser.feed(event.raw + b"\n\n"), *parser.flush()]:
                pieces.append((yield from self._on_event(part)) if part.complete else part.raw)
            joined = b"".join(pieces)
            return event.raw if joined == event.raw + b"\n\n" else joined
        if not event.has_data:
            return event.raw
        # The data's own bytes where they are valid UTF-8: no decode to text
        # and encode back before the JSON parser reads them.
        message = jsonrpc.decode(event.data_bytes)
        if isinstance(message, list):
            # MCP 2025-03-26 lets the responses on a stream be batched.
            out, changed = yield from self._on_rpc_messages(message)
            if not changed:
                return event.raw
            return reencode(event, jsonrpc.encode(out)) if out else b""
        if not isinstance(message, dict):
            return event.raw
        updated = yield from self._on_rpc_message(message)
        if updated is None:
            return event.raw
        if updated is _DROPPED:
            return b""  # the whole event: its id is the server's to replay
        return reencode(event, jsonrpc.encode(updated))


def _answers_nothing(raw: bytes) -> bool:
    """Whether the bytes of events provably carry no response with a result or an error.

    Such events need not be parsed at all: whatever they hold (progress
    notifications, requests of the server's own, pings, anything not JSON)
    goes out as it came, as :meth:`ResponseSide._on_rpc_message` would send
    it. The reasoning, every step of which must hold for that to be safe:

    * Only a message that has a ``"result"`` or an ``"error"`` member, at the
      top level or as a member of a batch, is ever inspected, answered for or
      replaced; every other event goes out as it came.
    * The data is read from these bytes: a data value is a run of them, the
      values of several ``data`` lines are joined with LF, and decoding as
      UTF-8 with replacement keeps every ASCII byte and makes none (an invalid
      sequence becomes U+FFFD, non-ASCII bytes). Neither key spelled
      literally can span two data lines: it holds no LF.
    * With no NUL byte in the data, :func:`jsonrpc.decode` reads it as UTF-8
      (orjson accepts only that; :func:`json.detect_encoding` picks UTF-16 or
      UTF-32 only from a NUL among the first bytes, as its BOMs are not valid
      UTF-8 and were replaced), maybe after a UTF-8 BOM. So do clients.
    * In UTF-8 JSON, a member name is a string: ``"result"`` appears as those
      eight bytes unless a character of it is escaped, which takes a
      backslash; likewise ``"error"``. Extra whitespace, another key order, a
      batch or a split over several lines do not change that.

    So: no backslash, no NUL and neither quoted name anywhere in the bytes
    means nothing in them is inspected. Anything else (a result, a message
    that merely mentions "result" in quotes, an escaped string) is parsed.
    Requiring the data to start with ``{`` as well would add nothing: what
    it would rule out (another encoding, a batch) is ruled out or covered
    above. The same holds for the bytes of several events at once.
    """
    return raw.find(b'"result"') < 0 and raw.find(b'"error"') < 0 and raw.find(b"\\") < 0 and raw.find(b"\0") < 0


def _names_no_method(raw: bytes) -> bool:
    """Whether the bytes of events provably hold no message with a ``method``: nothing for ``server_message``.

    The reasoning of :func:`_answers_nothing`, for the member name ``"method"``.
    """
    return raw.find(b'"method"') < 0 and raw.find(b"\\") < 0 and raw.find(b"\0") < 0


def _events(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(data=jsonrpc.encode(m).decode(), event="message") for m in messages)
