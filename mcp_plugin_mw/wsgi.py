"""
WSGI middleware
===============

Runs the plugin pipeline in front of any WSGI app (Flask, Django's WSGI
handler), per PEP 3333:

.. code-block:: python

    flask_app.wsgi_app = WSGIPluginMiddleware(flask_app.wsgi_app, config="plugins.yaml")

Sync plugins run on the request thread; async plugins on the process's one
background event loop. A changed request body replaces ``wsgi.input`` with a
correct ``CONTENT_LENGTH``; a response hook sees a JSON response once the app
has produced all of it, and an event stream event by event as the app yields
it. The app's iterator is always closed.
"""

from __future__ import annotations

import atexit
import io
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import Any

from .config import ConfigSource
from .manager import PluginManager
from .mapping.exchange import BodyMode, Exchange, Forward, Reply, Request, ResponseMode, drive_sync
from .mapping.http import Headers, excluded_urls, replace_header
from .mapping.request import RequestSide

__all__ = ["WSGIPluginMiddleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

logger = logging.getLogger("mcp_plugin_mw.wsgi")


class WSGIPluginMiddleware:
    """WSGI middleware that runs plugins on requests and responses.

    :param app: the WSGI app to wrap.
    :param config: a YAML path, a mapping, a ``Config``, or None for
        ``MCP_PLUGIN_MW_CONFIG``; ignored when ``manager`` is given.
    :param manager: a ``PluginManager`` to share with other middlewares.
    :param start: initialize the plugins now, so that one that cannot start
        fails the app's start (a :class:`~mcp_plugin_mw.manager.PluginStartError`
        naming it) rather than each request; False starts them on the first
        request. They are shut down by :meth:`close`, or at interpreter exit.
    :param settings: ``plugin_settings`` keys overriding the file and the
        environment.
    """

    def __init__(
        self,
        app: WSGIApp,
        config: ConfigSource = None,
        *,
        manager: PluginManager | None = None,
        start: bool = True,
        **settings: Any,
    ) -> None:
        self.app = app
        self.manager = manager if manager is not None else PluginManager(config, settings=settings)
        self._excluded = excluded_urls(self.manager.settings.excluded_urls)
        if start and self.manager.plugins:
            self.manager.initialize()
            # WSGI has no shutdown event: stop the plugins (child processes,
            # connections) when the interpreter exits, unless closed before.
            atexit.register(_close_at_exit, weakref.ref(self.manager))

    def close(self) -> None:
        """Shut the plugins down (the shared manager's, too); further requests raise."""
        self.manager.close()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not Exchange.wants(self.manager):
            return self.app(environ, start_response)
        path = _path(environ)
        if self._excluded is not None and self._excluded.search(path):
            return self.app(environ, start_response)
        exchange = Exchange(self.manager, _request(environ, environ.get("REQUEST_METHOD", "GET"), path))
        requests = exchange.request
        mode = requests.body_mode()
        if mode is not BodyMode.NONE:
            refusal = requests.refuse_early(_content_length(environ))
            if refusal is not None:
                return _reply(start_response, refusal)
            environ, body = _read_body(environ, requests, sniff=mode is BodyMode.SNIFF)
            if isinstance(body, Reply):
                return _reply(start_response, body)
            if body is not None:
                try:
                    verdict = drive_sync(self.manager, requests.on_request(body))
                except Exception as error:
                    logger.exception("mcp-plugin-mw failed on a request to %s", path)
                    return _reply(start_response, requests.failed(body, error))
                if isinstance(verdict, Reply):
                    return _reply(start_response, verdict)
                environ = _rewrite(environ, verdict, body, requests.request.headers)
        return _Response(self.app, environ, start_response, exchange)


class _Response:
    """The app's response as the client gets it; an iterable that closes the app's."""

    def __init__(self, app: WSGIApp, environ: Environ, start_response: StartResponse, exchange: Exchange) -> None:
        self.exchange = exchange
        self.response = exchange.response
        self.manager = exchange.manager
        self.start_response = start_response
        self.mode = ResponseMode.PASS
        self.status_line = "200 OK"
        self.headers: Headers = []
        self.exc_info: Any = None
        self.written: list[bytes] = []
        self.buffer = bytearray()
        self.oversized = False
        # Set once the client has had its whole answer (a replacement, or the
        # end of a failed stream): the app's further output is not sent.
        self.finished = False
        self.app_iter = app(environ, self._start)

    def _start(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
        self.status_line = status
        self.headers = [(name.lower(), value) for name, value in headers]
        self.exc_info = exc_info
        self.mode = self.response.mode(_status_code(status), self.headers)
        if self.mode is ResponseMode.PASS:
            return self.start_response(status, headers, exc_info)
        if self.mode is ResponseMode.STREAM:
            # Events may change size, so the length is no longer known.
            kept = [(name, value) for name, value in headers if name.lower() != "content-length"]
            self.start_response(status, kept, exc_info)
        elif self.mode is ResponseMode.REPLACE:
            assert self.response.replacement is not None
            self._send_start(self.response.replacement)
        # Bytes given to the legacy write() join the iterable's, in order.
        return self.written.append

    def _send_start(self, reply: Reply) -> None:
        line = self.status_line if reply.status == _status_code(self.status_line) else _status_line(reply.status)
        headers = replace_header(reply.headers, "content-length", str(len(reply.body)))
        self.start_response(line, headers, self.exc_info)

    def __iter__(self) -> Iterator[bytes]:
        # start_response may be called only once iteration begins (generator
        # apps), so the mode is looked at per chunk.
        for chunk in self.app_iter:
            yield from self._emit(chunk)
            if self.finished:
                return
        yield from self._emit(b"")
        if self.finished:
            return
        if self.mode is ResponseMode.STREAM:
            yield self._stream_end()
        elif self.mode is ResponseMode.BUFFER:
            yield self._finish_buffer()

    def _emit(self, chunk: bytes) -> Iterator[bytes]:
        pieces, self.written = [*self.written, chunk], []
        for piece in pieces:
            if self.mode is ResponseMode.PASS:
                if piece:
                    yield piece
            elif self.mode is ResponseMode.REPLACE:
                assert self.response.replacement is not None
                self.finished = True
                yield self.response.replacement.body
                return
            elif self.mode is ResponseMode.STREAM:
                if piece and self.response.passes_chunk(piece):
                    yield piece  # whole events no hook needs, as they came
                    continue
                # Even when the chunk only began an event, yield (b""): PEP 3333
                # forbids holding the server's iteration for more app output.
                yield self._stream_chunk(piece)
                if self.finished:
                    return
            elif not self.oversized:
                self.buffer += piece
                if len(self.buffer) > self.exchange.settings.max_response_bytes:
                    self.oversized = True
                    self.buffer = bytearray()

    def _stream_chunk(self, piece: bytes) -> bytes:
        try:
            chunk: bytes = drive_sync(self.manager, self.response.on_stream_chunk(piece))
        except Exception as error:
            return self._stream_failed(error)
        return chunk

    def _stream_end(self) -> bytes:
        try:
            tail: bytes = drive_sync(self.manager, self.response.on_stream_end())
        except Exception as error:
            return self._stream_failed(error)
        return tail

    def _stream_failed(self, error: Exception) -> bytes:
        # The status went out already: end the stream with an error event for
        # each call still waiting, rather than break the response.
        logger.exception("mcp-plugin-mw failed on an event stream from %s", self.exchange.request.request.path)
        self.finished = True
        return self.response.failed_stream(error)

    def _finish_buffer(self) -> bytes:
        response = self.response
        if self.oversized:
            reply = response.oversized()
        else:
            steps = response.on_response(_status_code(self.status_line), self.headers, bytes(self.buffer))
            try:
                reply = drive_sync(self.manager, steps)
            except Exception as error:
                logger.exception("mcp-plugin-mw failed on a response from %s", self.exchange.request.request.path)
                reply = response.failed(error)
        self._send_start(reply)
        return reply.body

    def close(self) -> None:
        close = getattr(self.app_iter, "close", None)
        if close is not None:
            close()


def _close_at_exit(manager: weakref.ref[PluginManager]) -> None:
    found = manager()
    if found is not None:
        found.close()


def _path(environ: Environ) -> str:
    raw = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    # PEP 3333 hands paths over as latin-1 decoded bytes.
    return raw.encode("latin-1").decode("utf-8", "replace")


def _request(environ: Environ, method: str, path: str) -> Request:
    headers: Headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower(), value))
    if environ.get("CONTENT_TYPE"):
        headers.append(("content-type", environ["CONTENT_TYPE"]))
    if environ.get("CONTENT_LENGTH"):
        headers.append(("content-length", environ["CONTENT_LENGTH"]))
    address = environ.get("REMOTE_ADDR")
    port = environ.get("REMOTE_PORT")
    return Request(
        method=method,
        path=path,
        query_string=environ.get("QUERY_STRING", ""),
        headers=headers,
        client=(f"{address}:{port}" if port else address) if address else None,
        user=environ.get("REMOTE_USER") or None,
    )


def _content_length(environ: Environ) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _read_body(environ: Environ, requests: RequestSide, *, sniff: bool) -> tuple[Environ, bytes | Reply | None]:
    """The environ for the app, and the body to inspect (None: pass it unread) or a refusal.

    The app only ever reads bytes the plugins saw, or bytes that cannot be
    JSON: what is read here replaces ``wsgi.input``.
    """
    stream = environ["wsgi.input"]
    limit = requests.settings.max_body_bytes
    if environ.get("wsgi.input_terminated"):
        # The app may read to the end whatever CONTENT_LENGTH says (werkzeug
        # does): so must we.
        remaining: int | None = None
    else:
        remaining = _content_length(environ)
        if remaining is None:
            # PEP 3333: without a length there is no body. An app that reads
            # the stream anyway must find nothing the plugins did not see.
            return {**environ, "wsgi.input": io.BytesIO(b"")}, b"" if not sniff else None
    chunks = bytearray()
    ended = False
    while not ended and len(chunks) <= limit:
        wanted = 65536 if remaining is None else min(remaining - len(chunks), 65536)
        chunk = stream.read(wanted) if wanted > 0 else b""
        chunks += chunk
        # A read may return fewer bytes than asked for: only b"" ends the body.
        ended = not chunk or (remaining is not None and len(chunks) >= remaining)
        if sniff:
            verdict = requests.sniff(bytes(chunks), complete=ended)
            if verdict is None:
                continue
            if verdict is False:
                left = None if remaining is None else remaining - len(chunks)
                return {**environ, "wsgi.input": _Prefixed(bytes(chunks), stream, left)}, None
            sniff = False
            if remaining is not None and remaining > limit:
                return environ, requests.too_large()
    if len(chunks) > limit:
        return environ, requests.too_large()
    return environ, bytes(chunks)


class _Prefixed(io.RawIOBase):
    """``wsgi.input`` for a body the middleware began to read: those bytes, then the rest of the stream."""

    def __init__(self, prefix: bytes, stream: Any, remaining: int | None) -> None:
        self._prefix = io.BytesIO(prefix)
        self._stream = stream
        self._remaining = remaining

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = self._prefix.readinto(view)
        if count:
            return count
        size = len(view) if self._remaining is None else min(len(view), self._remaining)
        data = self._stream.read(size) if size > 0 else b""
        view[: len(data)] = data
        if self._remaining is not None:
            self._remaining -= len(data)
        return len(data)


def _rewrite(environ: Environ, forward: Forward, body: bytes, original_headers: Headers) -> Environ:
    """The environ the app sees; ``wsgi.input`` always replays what was read."""
    environ = dict(environ)
    new_body = forward.body if forward.body is not None else body
    environ["wsgi.input"] = io.BytesIO(new_body)
    environ["CONTENT_LENGTH"] = str(len(new_body))
    environ.pop("wsgi.input_terminated", None)
    # The body now has a known length; a chunked Transfer-Encoding left in
    # place makes apps (werkzeug, Flask) ignore CONTENT_LENGTH and read nothing.
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    if forward.headers is not original_headers:
        for key in [key for key in environ if key.startswith("HTTP_")]:
            del environ[key]
        for name, value in forward.headers:
            if name == "content-type":
                environ["CONTENT_TYPE"] = value
            elif name not in ("content-length", "transfer-encoding"):
                key = "HTTP_" + name.upper().replace("-", "_")
                environ[key] = f"{environ[key]},{value}" if key in environ else value
    if forward.path is not None:
        environ["PATH_INFO"] = forward.path.encode("utf-8").decode("latin-1")
        environ["SCRIPT_NAME"] = ""
    if forward.query_string is not None:
        environ["QUERY_STRING"] = forward.query_string
    return environ


def _status_code(status: str) -> int:
    return int(status.split(" ", 1)[0])


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Status"


def _reply(start_response: StartResponse, reply: Reply) -> list[bytes]:
    start_response(_status_line(reply.status), replace_header(reply.headers, "content-length", str(len(reply.body))))
    return [reply.body]
