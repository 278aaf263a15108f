"""
ASGI middleware
===============

Runs the plugin pipeline in front of any ASGI app (Starlette, FastAPI,
Django's ASGI handler, an MCP SDK server):

.. code-block:: python

    app.add_middleware(PluginMiddleware, config="plugins.yaml")
    app = PluginMiddleware(app, config="plugins.yaml")

Requests that no plugin can see are handed to the app untouched, without
reading the body. Otherwise the body is read (up to ``max_body_bytes``), the
request hooks run, and the original bytes, or the re-encoded changed
message, are replayed to the app. JSON responses are buffered only when a
response hook applies to the request; event streams are transformed event by
event as they are sent. Websocket scopes pass straight through.

The ``lifespan`` scope starts the plugins with the app: they are initialized
when the server announces startup, before the app's own startup runs, and a
plugin that cannot start fails the startup (``lifespan.startup.failed`` with
the plugin's name and why: a server such as uvicorn exits non-zero).
After the app's shutdown, the plugins are shut down. Apps that do not
support lifespan keep the lazy start: plugins initialize on the first request.

A bad configuration raises ``ConfigError`` when the middleware is built,
except when Starlette builds it lazily (``add_middleware``): then it fails
the lifespan startup and answers every request with a 500 problem, see
:class:`PluginMiddleware`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any

from .config import ConfigError, ConfigSource
from .manager import PluginManager
from .mapping.exchange import BodyMode, Exchange, Forward, Reply, Request, ResponseMode, drive
from .mapping.http import HTTP_HOOK_TYPES, Headers, excluded_urls, problem, replace_header
from .mapping.request import passes_unread

__all__ = ["PluginMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("mcp_plugin_mw.asgi")


class PluginMiddleware:
    """ASGI middleware that runs plugins on requests and responses.

    :param app: the ASGI app to wrap.
    :param config: a YAML path, a mapping, a ``Config``, or None for
        ``MCP_PLUGIN_MW_CONFIG``; ignored when ``manager`` is given.
    :param manager: a ``PluginManager`` to share with other middlewares.
    :param settings: ``plugin_settings`` keys overriding the file and the
        environment (``max_body_bytes=...``, ``excluded_urls=[...]``).
    :raises ConfigError: when the configuration is bad, listing every
        problem; except when Starlette builds the middleware, below.

    Starlette (and FastAPI) build ``add_middleware`` middleware lazily, in
    ``Starlette.build_middleware_stack``, on the app's first ASGI call, which
    is the lifespan startup. An exception there reaches the server, not the
    code that configured the app, and uvicorn's default ``--lifespan auto``
    takes it for "lifespan unsupported" and serves anyway. So when the
    middleware is being built inside that method (found on the call stack,
    only once the configuration has failed), the ``ConfigError`` is kept
    rather than raised, and the middleware never calls the app:

    * ``lifespan``: the startup fails (``lifespan.startup.failed`` with the
      error's message), so the server exits, naming the problems;
    * ``http`` and ``websocket`` (a server without lifespan): every request
      is refused with a 500 ``application/problem+json`` saying the plugin
      configuration is invalid (the problems go to the log, once, not to
      the client); a websocket gets it when the server supports the
      ``websocket.http.response`` extension, and is closed otherwise;
    * any other scope raises the error.

    Built any other way (``PluginMiddleware(app, config=...)``, inside or
    outside an event loop) the middleware raises at once, as the code that
    built it is there to see it. ``manager`` raises the kept error.
    """

    _manager: PluginManager

    def __init__(
        self,
        app: ASGIApp,
        config: ConfigSource = None,
        *,
        manager: PluginManager | None = None,
        **settings: Any,
    ) -> None:
        self.app = app
        self._config_error: ConfigError | None = None
        self._config_error_logged = False
        if manager is None:
            try:
                manager = PluginManager(config, settings=settings)
            except ConfigError as error:
                if not _built_by_starlette():
                    raise
                self._config_error = error
                return
        self._manager = manager
        self._excluded = excluded_urls(manager.settings.excluded_urls)

    @property
    def manager(self) -> PluginManager:
        """The plugins; raises the kept ``ConfigError`` of a bad configuration."""
        if self._config_error is not None:
            raise self._config_error
        return self._manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._config_error is not None:
            await self._refuse(self._config_error, scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        manager = self._manager
        if scope["type"] != "http" or not Exchange.wants(manager):
            await self.app(scope, receive, send)
            return
        if self._excluded is not None and self._excluded.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        active = manager.active_hooks
        if active.isdisjoint(HTTP_HOOK_TYPES):
            # Most MCP traffic needs no hook: a one-message body that provably
            # names no watched method goes to the app without an exchange.
            first = await receive()
            if first["type"] == "http.request" and not first.get("more_body", False):
                content_types, encoding = _body_headers(scope["headers"])
                body = first.get("body", b"")
                if passes_unread(active, scope["method"], content_types, encoding, body):
                    await self.app(scope, _replay(body, receive), send)
                    return
            receive = _replay_message(first, receive)
        await _Responder(self.app, Exchange(manager, _request(scope)))(scope, receive, send)

    async def _refuse(self, error: ConfigError, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``scope`` without the app: the configuration is bad (see the class docstring)."""
        kind = scope["type"]
        if kind not in ("lifespan", "http", "websocket"):
            raise error
        if not self._config_error_logged:
            self._config_error_logged = True
            logger.error("mcp-plugin-mw: %s", error)
        if kind == "lifespan":
            if (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": f"mcp-plugin-mw: {error}"})
            return
        status, headers, body = problem(500, "the plugin configuration is invalid; the server's log says why")
        if kind == "http":
            await _send_reply(send, Reply(status, headers, body))
            return
        if (await receive())["type"] != "websocket.connect":
            return  # the client went away
        if "websocket.http.response" in scope.get("extensions", {}):
            start = {"type": "websocket.http.response.start", "status": status, "headers": _encode_headers(headers)}
            await send(start)
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1011})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = self._manager
        first = await receive()
        if first["type"] == "lifespan.startup":
            try:
                await manager.ainitialize()
            except Exception as error:
                # The app never starts: the server reports why and exits.
                logger.error("mcp-plugin-mw: %s", error)
                await send({"type": "lifespan.startup.failed", "message": f"mcp-plugin-mw: {error}"})
                return

        async def stopping_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await manager.aclose()  # after the app's own shutdown
            await send(message)

        await self.app(scope, _replay_message(first, receive), stopping_send)


class _Responder:
    """Handles one request: the request hooks, then the app's response."""

    def __init__(self, app: ASGIApp, exchange: Exchange) -> None:
        self.app = app
        self.exchange = exchange
        self.response = exchange.response
        self.manager = exchange.manager
        self.send: Send = _unset_send
        self.mode = ResponseMode.PASS
        self.start: Message = {}
        self.status = 200
        self.headers: Headers = []
        self.buffer = bytearray()
        self.oversized = False
        # Set once the client has had its whole answer (a replacement, or the
        # end of a failed stream): whatever the app still sends is dropped.
        self.finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.send = send
        requests = self.exchange.request
        mode = requests.body_mode()
        if mode is not BodyMode.NONE:
            refusal = requests.refuse_early(_content_length(requests.request.headers))
            if refusal is not None:
                await _send_reply(send, refusal)
                return
            read = await self._read_body(receive, sniff=mode is BodyMode.SNIFF)
            if read is None:
                return  # the client went away, or was answered
            body, rest = read
            if rest is not None:
                # Not JSON in any reading the app may use: it gets the bytes unread.
                await self.app(scope, _replay(body, receive, more=rest), self.send_with_plugins)
                return
            try:
                verdict = await drive(self.manager, requests.on_request(body))
            except Exception as error:
                logger.exception("mcp-plugin-mw failed on a request to %s", scope["path"])
                await _send_reply(send, requests.failed(body, error))
                return
            if isinstance(verdict, Reply):
                await _send_reply(send, verdict)
                return
            scope = _rewrite(scope, verdict, requests.request.headers)
            receive = _replay(verdict.body if verdict.body is not None else body, receive)
        await self.app(scope, receive, self.send_with_plugins)

    async def _read_body(self, receive: Receive, *, sniff: bool) -> tuple[bytes, bool | None] | None:
        """The body, and None; or, when sniffing finds it cannot be JSON, what was read and whether more follows.

        None when the client went away or was answered (413).
        """
        requests = self.exchange.request
        limit = self.exchange.settings.max_body_bytes
        chunks = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks += message.get("body", b"")
            more = message.get("more_body", False)
            if sniff:
                verdict = requests.sniff(bytes(chunks), complete=not more)
                if verdict is None and len(chunks) <= limit:
                    continue
                if verdict is False:
                    return bytes(chunks), more
                sniff = False
                declared = _content_length(requests.request.headers)
                if declared is not None and declared > limit:
                    await _send_reply(self.send, requests.too_large())
                    return None
            if len(chunks) > limit:
                # Past the limit, stop reading: the answer is 413 whatever follows.
                await _send_reply(self.send, requests.too_large())
                return None
        return bytes(chunks), None

    async def send_with_plugins(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.status = message["status"]
            self.headers = _decode_headers(message.get("headers", ()))
            self.mode = self.response.mode(self.status, self.headers)
            if self.mode is ResponseMode.PASS:
                await self.send(message)
            elif self.mode is ResponseMode.STREAM:
                # Events may change size, so the length is no longer known.
                headers = replace_header(self.headers, "content-length", None)
                await self.send({**message, "headers": _encode_headers(headers)})
            elif self.mode is ResponseMode.REPLACE:
                assert self.response.replacement is not None
                await _send_reply(self.send, self.response.replacement)
                self.finished = True
            return  # buffered: the start goes out with the (possibly new) body
        if self.mode is ResponseMode.PASS:
            await self.send(message)
        elif kind == "http.response.trailers":
            # Trailers follow the body the client got, if its start announced them.
            if self.start.get("trailers", False) and self.mode is not ResponseMode.REPLACE:
                await self.send(message)
        elif self.finished:
            return
        elif kind == "http.response.body":
            body: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if self.mode is ResponseMode.STREAM:
                if more and body and self.response.passes_chunk(body):
                    await self.send(message)  # whole events no hook needs, as they came
                    return
                await self._stream(body, more)
            else:
                await self._buffer(body, more)
        elif kind == "http.response.pathsend":
            await self._pathsend(message)
        else:
            await self.send(message)  # early hints and other extensions

    async def _stream(self, body: bytes, more: bool) -> None:
        response = self.response
        try:
            out = await drive(self.manager, response.on_stream_chunk(body)) if body else b""
            if not more:
                out += await drive(self.manager, response.on_stream_end())
        except Exception as error:
            # The status went out already: end the stream with an error event
            # for each call still waiting, rather than drop the connection.
            logger.exception("mcp-plugin-mw failed on an event stream from %s", self.exchange.request.request.path)
            out, more = response.failed_stream(error), False
            self.finished = True
        if out or not more:
            await self.send({"type": "http.response.body", "body": out, "more_body": more})

    async def _buffer(self, body: bytes, more: bool, *, pathsend: Message | None = None) -> None:
        response = self.response
        if not self.oversized:
            self.buffer += body
            self.oversized = len(self.buffer) > self.exchange.settings.max_response_bytes
            if self.oversized:
                self.buffer = bytearray()
        if more:
            return
        self.finished = True
        if self.oversized:
            reply = response.oversized()
        else:
            original = bytes(self.buffer)
            try:
                reply = await drive(self.manager, response.on_response(self.status, self.headers, original))
            except Exception as error:
                logger.exception("mcp-plugin-mw failed on a response from %s", self.exchange.request.request.path)
                reply = response.failed(error)
            if reply.body is original and reply.headers is self.headers and reply.status == self.status:
                # Untouched: the app's own start goes out, and a file the
                # server's way.
                await self.send(self.start)
                if pathsend is not None:
                    await self.send(pathsend)
                else:
                    await self.send({"type": "http.response.body", "body": original, "more_body": False})
                return
        await _send_reply(self.send, reply, self.start)

    async def _pathsend(self, message: Message) -> None:
        """A file response (the ``http.response.pathsend`` extension) under a buffering hook."""
        limit = self.exchange.settings.max_response_bytes
        path = message["path"]
        try:
            size = os.stat(path).st_size
            body = b"" if size > limit else await asyncio.to_thread(_read_file, path)
        except OSError:
            logger.exception("mcp-plugin-mw could not read the file response %s", path)
            self.finished = True
            await _send_reply(self.send, self.response.failed(), self.start)
            return
        if size > limit:
            self.oversized = True
        if self.mode is ResponseMode.STREAM:
            await self._stream(body, False)
        else:
            await self._buffer(body, False, pathsend=message)


def _built_by_starlette() -> bool:
    """Whether Starlette is building its middleware stack further up the call stack.

    That is ``Starlette.build_middleware_stack`` (FastAPI's override too), on
    the app's first call: ``add_middleware`` middleware is built there.
    """
    applications = sys.modules.get("starlette.applications")
    if applications is None:
        return False  # no Starlette app was ever imported
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "build_middleware_stack" and isinstance(
            frame.f_locals.get("self"), applications.Starlette
        ):
            return True
        frame = frame.f_back
    return False


def _body_headers(raw: Any) -> tuple[list[str], str | None]:
    """The Content-Type values and the Content-Encoding of raw ASGI headers."""
    content_types: list[str] = []
    encoding: str | None = None
    for name, value in raw:
        if name == b"content-type":
            content_types.append(value.decode("latin-1"))
        elif name == b"content-encoding" and encoding is None:
            encoding = value.decode("latin-1")
    return content_types, encoding


def _replay_message(message: Message, receive: Receive) -> Receive:
    """A ``receive`` that hands back ``message`` once, then the real messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return message
        # Streaming servers keep waiting here for http.disconnect: they must
        # reach the real receive, or they spin on a finished body.
        return await receive()

    return replay


def _read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _request(scope: Scope) -> Request:
    client = scope.get("client")
    return Request(
        method=scope["method"],
        path=scope["path"],
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=_decode_headers(scope["headers"]),
        client=f"{client[0]}:{client[1]}" if client else None,
        user=_scope_user(scope),
    )


def _scope_user(scope: Scope) -> str | None:
    user = scope.get("user")
    if user is None:
        return None
    if isinstance(user, str):
        return user
    if getattr(user, "is_authenticated", False):
        name = getattr(user, "display_name", None) or getattr(user, "identity", None)
        return str(name) if name else None
    return None


def _content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _decode_headers(raw: Any) -> Headers:
    return [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]


def _encode_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _rewrite(scope: Scope, forward: Forward, original_headers: Headers) -> Scope:
    """The scope the app sees for a forwarded request."""
    unchanged = forward.path is None and forward.query_string is None
    if unchanged and forward.body is None and forward.headers is original_headers:
        return scope
    headers = forward.headers
    if forward.body is not None:
        headers = replace_header(headers, "content-length", str(len(forward.body)))
        headers = replace_header(headers, "transfer-encoding", None)
    scope = {**scope, "headers": _encode_headers(headers)}
    if forward.path is not None:
        scope["path"] = forward.path
        scope["raw_path"] = forward.path.encode("utf-8")
    if forward.query_string is not None:
        scope["query_string"] = forward.query_string.encode("latin-1")
    return scope


def _replay(body: bytes, receive: Receive, *, more: bool = False) -> Receive:
    """A ``receive`` that hands the app ``body`` once, then the real messages.

    ``more`` says the body goes on: the rest comes from the real ``receive``.
    """
    return _replay_message({"type": "http.request", "body": body, "more_body": more}, receive)


async def _send_reply(send: Send, reply: Reply, start: Message | None = None) -> None:
    """Send ``reply``; keys of the app's ``start`` message it does not set (``trailers``) are kept."""
    message: Message = {**start} if start else {}
    message.update(type="http.response.start", status=reply.status, headers=_encode_headers(reply.headers))
    await send(message)
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


async def _unset_send(message: Message) -> None:
    raise RuntimeError("send used before the request started")
