"""
The stdio wrapper
=================

The plugin pipeline around an MCP server that a client starts as a child
process and talks to over stdin and stdout (newline-delimited JSON-RPC):

.. code-block:: sh

    mcp-plugin-mw stdio --config plugins.yaml -- npx -y @modelcontextprotocol/server-everything

The wrapper is itself such a server: put it as the ``command`` of any MCP
client's server configuration, with the real server after ``--``. It starts
the server as its child, passes the child's stderr through, forwards SIGINT
and SIGTERM to it, and exits with its status (128 + N for a signal N). The
client closing the wrapper's stdin closes the child's; the child's exit ends
the wrapper.

Each message runs through the same sans-IO mapping as the HTTP middleware
(:mod:`mcp_plugin_mw.mapping`), so the rules are the same:

* a line from the client is what a POST body of ``application/json`` is to
  :meth:`~.mapping.request.RequestSide.on_request`: the request hooks
  (``tool_pre_invoke``, ``prompt_pre_fetch``, ``resource_pre_fetch``,
  ``client_message``) run on it, and a block is answered on the client's
  stdout with a JSON-RPC error under the request's id, the child never
  seeing the request;
* a line from the child is what a JSON response body is to
  :meth:`~.mapping.response.ResponseSide.on_response`, with the calls it
  answers: the client's requests are kept by id (:func:`.jsonrpc.id_key`,
  as clients match them) until the child answers, so each result meets the
  response hook of its call (``tool_post_invoke``, the list hooks, ...)
  with the context its request hook left; the child's own notifications and
  requests meet ``server_message``.

The HTTP hooks (``http_pre_request``, ``http_post_request``) do not run:
there is no HTTP exchange.

Fail closed, as over HTTP:

* a line that is not UTF-8 JSON is answered with a JSON-RPC parse error to
  its sender, never forwarded;
* a line over ``max_line_bytes`` (4 MiB by default) is read in bounded
  chunks and dropped, not buffered: a request is answered with a JSON-RPC
  error (under its id when the first bytes name it), an answer of the child
  is replaced by an error for the call it answers;
* an answer under an id the client has no request under is dropped; when
  more than ``max_outstanding`` requests wait for their answers, further
  requests are refused rather than kept.

With no plugin on any JSON-RPC hook, lines are only checked to be JSON and
passed as they came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .config import ConfigSource
from .manager import PluginManager
from .mapping import jsonrpc
from .mapping.exchange import Exchange, drive
from .mapping.http import HTTP_HOOK_TYPES, media_type
from .mapping.request import RequestSide
from .mapping.response import ResponseSide
from .mapping.state import Calls, Forward, Reply, Request
from .models import GlobalContext, HookType

__all__ = ["DEFAULT_MAX_LINE_BYTES", "StdioRelay", "run"]

logger = logging.getLogger("mcp_plugin_mw.stdio")

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
"""The longest line (one JSON-RPC message or batch) the wrapper relays, either way."""

DEFAULT_MAX_OUTSTANDING = 10_000
"""The most client requests waiting for the child's answer."""

_CHUNK = 64 * 1024
_PREFIX = 4096
"""How much of an overlong line is kept to find its id."""
_JSON_HEADERS = [("content-type", "application/json")]
_UNDECODABLE: Any = object()
_ID_AT_START = re.compile(rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,20}|"[^"\\]{0,256}")\s*[,}]')
Lines = tuple[list[bytes], list[bytes]]
"""What a relay step writes: lines to the child, lines to the client."""


class _TooLong:
    """A line over the limit: its first bytes, the rest discarded."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix


class StdioRelay:
    """The decisions of the wrapper, one line at a time (no I/O of its own).

    :param manager: the plugins.
    :param max_line_bytes: the longest line relayed.
    :param max_outstanding: the most client requests waiting for an answer.
    """

    def __init__(
        self,
        manager: PluginManager,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
    ) -> None:
        self.manager = manager
        self.max_line_bytes = max_line_bytes
        self.max_outstanding = max_outstanding
        # The client's requests the child has not answered, by id key: their
        # method and, when a response hook watches them, their call.
        self.outstanding: dict[Any, tuple[str, jsonrpc.PendingCall | None]] = {}
        # The revision initialize agreed on: what MCP-Protocol-Version says over HTTP.
        self.protocol: str | None = None
        self._headers: list[tuple[str, str]] = list(_JSON_HEADERS)
        # The answer of _active for the set it was worked out from (the set changes only with the plugins).
        self._active_for: tuple[frozenset[HookType] | None, frozenset[HookType] | None] = (None, None)

    def _active(self) -> frozenset[HookType] | None:
        """The hooks that see stdio messages, or None when none of them has a plugin."""
        active = self.manager.active_hooks
        known, answer = self._active_for
        if active is known:
            return answer
        if not Exchange.wants(self.manager) or active.isdisjoint(jsonrpc.RPC_HOOK_TYPES):
            answer = None
        else:
            answer = active - HTTP_HOOK_TYPES
        self._active_for = (active, answer)
        return answer

    def _sides(self, active: frozenset[HookType], calls: Calls) -> RequestSide:
        request = Request(method="POST", path="/", query_string="", headers=list(self._headers))
        context = GlobalContext(request_id=os.urandom(16).hex(), content_type="application/json")
        context.metadata["transport"] = "stdio"
        return RequestSide(self.manager.settings, active, request, context, calls)

    # ------------------------------------------------------------------
    # Client to child
    # ------------------------------------------------------------------

    async def from_client(self, line: bytes) -> Lines:
        """One line from the client: what goes to the child, and what the client is answered."""
        if not line.strip():
            return [], []
        value = _decode(line)
        if value is _UNDECODABLE:
            error = jsonrpc.error_response(None, jsonrpc.PARSE_ERROR, "Parse error: not a UTF-8 JSON message")
            return [], [jsonrpc.encode(error)]
        active = self._active()
        if active is None:
            # Kept even so: a reload may add plugins while these are answered.
            refused = self._track(value if isinstance(value, list) else [value], Calls())
            return ([], [jsonrpc.encode(answer) for answer in refused]) if refused else ([line], [])
        requests = self._sides(active, Calls())
        try:
            verdict = await drive(self.manager, requests.on_request(line))
        except Exception as error:
            logger.exception("mcp-plugin-mw failed on a message from the client")
            return [], [_reply_line(requests.failed(line, error))]
        if isinstance(verdict, Reply):
            return [], [_reply_line(verdict)] if verdict.body else []
        assert isinstance(verdict, Forward)
        body = line if verdict.body is None else verdict.body
        forwarded = value if verdict.body is None else jsonrpc.decode(body)
        to_client = [jsonrpc.encode(answer) for answer in requests.calls.take_injected()]
        messages = forwarded if isinstance(forwarded, list) else [forwarded]
        refused = self._track(messages, requests.calls)
        if refused:
            to_client += [jsonrpc.encode(answer) for answer in refused]
            return [], to_client
        return [body], to_client

    def _track(self, messages: list[Any], calls: Calls) -> list[dict[str, Any]]:
        """Keep the requests of a forwarded line until answered; the refusals if there is no room."""
        requests = [message for message in messages if jsonrpc.is_request(message)]
        if len(self.outstanding) + len(requests) > self.max_outstanding:
            detail = f"Internal error: more than {self.max_outstanding} requests wait for the server"
            return [jsonrpc.error_response(message["id"], jsonrpc.INTERNAL_ERROR, detail) for message in requests]
        for message in requests:
            key = jsonrpc.id_key(message["id"])
            self.outstanding[key] = (message["method"], calls.pending.get(key))
        for message in messages:
            if isinstance(message, dict) and message.get("method") == "notifications/cancelled":
                # The server need not answer a cancelled request (MCP): forget it.
                params = message.get("params")
                cancelled = params.get("requestId") if isinstance(params, dict) else None
                if jsonrpc.valid_id(cancelled):
                    self.outstanding.pop(jsonrpc.id_key(cancelled), None)
        return []

    def client_line_too_long(self, prefix: bytes) -> Lines:
        """The answer to a client line over the limit (the child never sees it)."""
        detail = f"Invalid Request: the message exceeds the limit of {self.max_line_bytes} bytes"
        error = jsonrpc.error_response(_id_at_start(prefix), jsonrpc.INVALID_REQUEST, detail)
        return [], [jsonrpc.encode(error)]

    # ------------------------------------------------------------------
    # Child to client
    # ------------------------------------------------------------------

    async def from_server(self, line: bytes) -> Lines:
        """One line from the child: what goes to the client, and what the child is answered."""
        if not line.strip():
            return [], []
        value = _decode(line)
        if value is _UNDECODABLE:
            logger.error("mcp-plugin-mw: the server wrote a line that is not UTF-8 JSON; it was dropped")
            error = jsonrpc.error_response(None, jsonrpc.PARSE_ERROR, "Parse error: not a UTF-8 JSON message")
            return [jsonrpc.encode(error)], []
        active = self._active()
        if active is None:
            for message in value if isinstance(value, list) else [value]:
                if _is_response(message) and jsonrpc.valid_id(message["id"]):
                    self.outstanding.pop(jsonrpc.id_key(message["id"]), None)
            return [], [line]
        batch = isinstance(value, list)
        messages: list[Any] = value if isinstance(value, list) else [value]
        calls = Calls()
        kept: list[Any] = []
        for message in messages:
            if not _is_response(message):
                kept.append(message)
                continue
            request_id = message["id"]
            entry = self.outstanding.pop(jsonrpc.id_key(request_id), None) if jsonrpc.valid_id(request_id) else None
            if entry is None:
                # No request of the client's has this id: the client would
                # drop it, or match it to a call no hook saw.
                logger.warning("mcp-plugin-mw: an answer under id %r, which no request has, was dropped", request_id)
                continue
            method, call = entry
            key = jsonrpc.id_key(request_id)
            calls.seen.add(key)
            if call is not None:
                calls.pending[key] = call
            if method == "initialize":
                self._agreed(message)
            kept.append(message)
        if not kept:
            return [], []
        if len(kept) != len(messages):
            line = jsonrpc.encode(kept if batch else kept[0])
        if not calls.pending and HookType.SERVER_MESSAGE not in active:
            return [], [line]
        requests = self._sides(active, calls)
        requests.rpc_seen = True  # the child's own messages are for server_message
        response = ResponseSide(requests)
        try:
            reply = await drive(self.manager, response.on_response(200, _JSON_HEADERS, line))
        except Exception as error:
            logger.exception("mcp-plugin-mw failed on a message from the server")
            reply = response.failed(error)
        if reply.body is line:
            return [], [line]
        return [], [_reply_line(reply)] if reply.body else []

    def _agreed(self, message: dict[str, Any]) -> None:
        result = message.get("result")
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if isinstance(version, str):
            self.protocol = version
            self._headers = [*_JSON_HEADERS, ("mcp-protocol-version", version)]

    def server_line_too_long(self, prefix: bytes) -> Lines:
        """What replaces a line of the child's over the limit: an error for the call it answers, if known."""
        request_id = _id_at_start(prefix)
        logger.error("mcp-plugin-mw: the server wrote a line over %d bytes; it was dropped", self.max_line_bytes)
        if request_id is None or self.outstanding.pop(jsonrpc.id_key(request_id), None) is None:
            return [], []
        detail = f"the server's answer exceeds the limit of {self.max_line_bytes} bytes"
        return [], [jsonrpc.encode(jsonrpc.error_response(request_id, jsonrpc.INTERNAL_ERROR, detail))]


def _is_response(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and "method" not in message
        and "id" in message
        and ("result" in message or "error" in message)
    )


def _decode(line: bytes) -> Any:
    """The line's JSON value, or :data:`_UNDECODABLE` (MCP's stdio messages are UTF-8 JSON)."""
    value = jsonrpc.decode(line)
    if value is None and line.strip() != b"null":
        return _UNDECODABLE
    if not line.isascii():
        # jsonrpc.decode also reads UTF-16 and lone surrogates, which no
        # stdio peer may send: refused rather than read one way here and
        # another there.
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return _UNDECODABLE
    return value


def _id_at_start(prefix: bytes) -> Any:
    """The id of a message whose first bytes name it before anything else (as the SDKs write them), else None."""
    found = _ID_AT_START.match(prefix)
    if found is None:
        return None
    value = jsonrpc.decode(found.group(1))
    return value if jsonrpc.valid_id(value) else None


def _reply_line(reply: Reply) -> bytes:
    """A reply of the mapping, as one line: its JSON-RPC body, or a problem turned into a JSON-RPC error."""
    content_type = next((value for name, value in reply.headers if name == "content-type"), "")
    if media_type(content_type) == "application/json":
        return reply.body
    detail = jsonrpc.decode(reply.body)
    text = detail.get("detail") if isinstance(detail, dict) else None
    code = jsonrpc.INVALID_REQUEST if 400 <= reply.status < 500 else jsonrpc.INTERNAL_ERROR
    return jsonrpc.encode(jsonrpc.error_response(None, code, str(text or "the message was refused")))


# ----------------------------------------------------------------------
# I/O
# ----------------------------------------------------------------------


async def _lines(read: Callable[[], Awaitable[bytes]], limit: int) -> AsyncIterator[bytes | _TooLong]:
    """The lines of a byte stream, read in bounded chunks; a line over ``limit`` is a :class:`_TooLong`.

    At most ``limit`` bytes of a line are ever held: the rest of an overlong
    line is read and discarded up to its newline.
    """
    buffer = bytearray()
    discarding = False
    while True:
        chunk = await read()
        if not chunk:
            if buffer and not discarding:
                yield bytes(buffer)
            return
        if not buffer and not discarding and len(chunk) <= limit + 1 and chunk.find(b"\n") == len(chunk) - 1:
            # The common case: one whole line in the chunk, passed without a copy into the buffer.
            yield chunk[:-2] if chunk.endswith(b"\r\n") else chunk[:-1]
            continue
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not discarding:
                if len(buffer) + len(piece) > limit:
                    yield _TooLong(bytes((buffer + piece)[:_PREFIX]))
                    buffer.clear()
                    discarding = True
                else:
                    buffer += piece
            if end < 0:
                break
            if not discarding:
                if buffer.endswith(b"\r"):
                    del buffer[-1]
                yield bytes(buffer)
            buffer.clear()
            discarding = False
            start = end + 1


class _Output:
    """The wrapper's stdout: an asyncio pipe when it is one, else blocking writes (a regular file)."""

    def __init__(self, writer: asyncio.StreamWriter | None, fd: int) -> None:
        self.writer = writer
        self.fd = fd

    @classmethod
    async def open(cls, fd: int) -> _Output:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(fd, "wb", buffering=0, closefd=False)
        try:
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
        except (ValueError, OSError):
            return cls(None, fd)
        return cls(asyncio.StreamWriter(transport, protocol, None, loop), fd)

    async def write(self, lines: Sequence[bytes]) -> None:
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        if self.writer is None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
            return
        self.writer.write(data)
        transport = self.writer.transport
        if transport.get_write_buffer_size() or transport.is_closing():
            await self.writer.drain()  # the pipe is full, or gone: wait, or raise

    async def aclose(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(OSError):
                await self.writer.drain()
            self.writer.close()


async def _input(fd: int) -> Callable[[], Awaitable[bytes]]:
    """A reader of the wrapper's stdin: an asyncio pipe when it is one, else reads in a thread."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    except (ValueError, OSError):

        async def read_blocking() -> bytes:
            return await loop.run_in_executor(None, os.read, fd, _CHUNK)

        return read_blocking

    async def read() -> bytes:
        return await reader.read(_CHUNK)

    return read


async def _relay(command: Sequence[str], relay: StdioRelay) -> int:
    loop = asyncio.get_running_loop()
    output = await _Output.open(1)
    read_client = await _input(0)
    # Its own process group: a terminal's Ctrl-C reaches only the wrapper,
    # which forwards it once, rather than the child getting it twice.
    child = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,  # passed through
        process_group=0,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    child_in, child_out = child.stdin, child.stdout

    def forward(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, forward, signum)

    async def to_child(lines: list[bytes]) -> None:
        if lines and not child_in.is_closing():
            child_in.write(b"".join(line + b"\n" for line in lines))
            if child_in.transport.get_write_buffer_size() or child_in.transport.is_closing():
                with contextlib.suppress(ConnectionError):
                    await child_in.drain()

    async def pump_client() -> None:
        try:
            async for line in _lines(read_client, relay.max_line_bytes):
                if isinstance(line, _TooLong):
                    to_server, to_client = relay.client_line_too_long(line.prefix)
                else:
                    to_server, to_client = await relay.from_client(line)
                await output.write(to_client)
                await to_child(to_server)
        finally:
            # The client's EOF is the child's.
            with contextlib.suppress(OSError):
                child_in.close()

    async def pump_child() -> None:
        async for line in _lines(lambda: child_out.read(_CHUNK), relay.max_line_bytes):
            if isinstance(line, _TooLong):
                to_server, to_client = relay.server_line_too_long(line.prefix)
            else:
                to_server, to_client = await relay.from_server(line)
            await output.write(to_client)
            await to_child(to_server)

    client_task = asyncio.ensure_future(pump_client())
    try:
        await pump_child()
        status = await child.wait()
    finally:
        client_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await client_task
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await output.aclose()
    return 128 - status if status < 0 else status


def run(
    command: Sequence[str],
    config: ConfigSource = None,
    *,
    manager: PluginManager | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    **settings: Any,
) -> int:
    """Run ``command`` as the wrapped MCP server on this process's stdin and stdout; returns its exit status.

    :param command: the server's program and arguments.
    :param config: a YAML path, a mapping, a ``Config``, or None for
        ``MCP_PLUGIN_MW_CONFIG``; ignored when ``manager`` is given.
    :param manager: a ``PluginManager`` to use.
    :param max_line_bytes: the longest message relayed either way.
    :param settings: ``plugin_settings`` keys overriding the file and the environment.
    """
    if not command:
        raise ValueError("no command to run")
    if manager is None:
        manager = PluginManager(config, settings=settings)
    # The protocol owns file descriptor 1: a plugin's print() must not
    # corrupt it, so Python-level stdout goes to stderr from here on.
    sys.stdout = sys.stderr

    async def main() -> int:
        assert manager is not None
        await manager.ainitialize()
        try:
            return await _relay(command, StdioRelay(manager, max_line_bytes=max_line_bytes))
        finally:
            await manager.aclose()

    return asyncio.run(main())
