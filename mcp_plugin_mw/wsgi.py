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

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import Any

from .config import ConfigSource
from .manager import PluginManager
from .mapping.exchange import Exchange, Forward, Reply, Request, ResponseMode, drive_sync
from .mapping.http import Headers, excluded_urls, problem, replace_header

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
    :param settings: ``plugin_settings`` keys overriding the file and the
        environment.
    """

    def __init__(
        self,
        app: WSGIApp,
        config: ConfigSource = None,
        *,
        manager: PluginManager | None = None,
        **settings: Any,
    ) -> None:
        self.app = app
        self.manager = manager if manager is not None else PluginManager(config, settings=settings)
        self._excluded = excluded_urls(self.manager.settings.excluded_urls)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if not Exchange.wants(self.manager, method):
            return self.app(environ, start_response)
        path = _path(environ)
        if self._excluded is not None and self._excluded.search(path):
            return self.app(environ, start_response)
        exchange = Exchange(self.manager, _request(environ, method, path))
        if exchange.needs_body():
            refusal = exchange.refuse_early(_content_length(environ))
            if refusal is not None:
                return _reply(start_response, refusal)
            body = _read_body(environ, exchange.settings.max_body_bytes)
            if len(body) > exchange.settings.max_body_bytes:
                return _reply(start_response, exchange.too_large())
            try:
                verdict = drive_sync(self.manager, exchange.on_request(body))
            except Exception:
                logger.exception("mcp-plugin-mw failed on a request to %s", path)
                return _reply(start_response, Reply(*problem(500, "the request could not be processed")))
            if isinstance(verdict, Reply):
                return _reply(start_response, verdict)
            environ = _rewrite(environ, verdict, body, exchange.request.headers)
        return _Response(self.app, environ, start_response, exchange)


class _Response:
    """The app's response as the client gets it; an iterable that closes the app's."""

    def __init__(self, app: WSGIApp, environ: Environ, start_response: StartResponse, exchange: Exchange) -> None:
        self.exchange = exchange
        self.manager = exchange.manager
        self.start_response = start_response
        self.mode = ResponseMode.PASS
        self.status_line = "200 OK"
        self.headers: Headers = []
        self.exc_info: Any = None
        self.written: list[bytes] = []
        self.buffer = bytearray()
        self.oversized = False
        self.app_iter = app(environ, self._start)

    def _start(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
        self.status_line = status
        self.headers = [(name.lower(), value) for name, value in headers]
        self.exc_info = exc_info
        self.mode = self.exchange.response_mode(_status_code(status), self.headers)
        if self.mode is ResponseMode.PASS:
            return self.start_response(status, headers, exc_info)
        if self.mode is ResponseMode.STREAM:
            # Events may change size, so the length is no longer known.
            kept = [(name, value) for name, value in headers if name.lower() != "content-length"]
            self.start_response(status, kept, exc_info)
        # Bytes given to the legacy write() join the iterable's, in order.
        return self.written.append

    def __iter__(self) -> Iterator[bytes]:
        # start_response may be called only once iteration begins (generator
        # apps), so the mode is looked at per chunk.
        for chunk in self.app_iter:
            yield from self._emit(chunk)
        yield from self._emit(b"")
        if self.mode is ResponseMode.STREAM:
            tail = drive_sync(self.manager, self.exchange.on_stream_end())
            if tail:
                yield tail
        elif self.mode is ResponseMode.BUFFER:
            yield self._finish_buffer()

    def _emit(self, chunk: bytes) -> Iterator[bytes]:
        pieces, self.written = [*self.written, chunk], []
        for piece in pieces:
            if self.mode is ResponseMode.PASS:
                if piece:
                    yield piece
            elif self.mode is ResponseMode.STREAM:
                # Even when the chunk only began an event, yield (b""): PEP 3333
                # forbids holding the server's iteration for more app output.
                yield drive_sync(self.manager, self.exchange.on_stream_chunk(piece))
            elif not self.oversized:
                self.buffer += piece
                if len(self.buffer) > self.exchange.settings.max_response_bytes:
                    self.oversized = True
                    self.buffer = bytearray()

    def _finish_buffer(self) -> bytes:
        exchange = self.exchange
        status = _status_code(self.status_line)
        if self.oversized:
            reply = exchange.oversized_response()
        else:
            steps = exchange.on_response(status, self.headers, bytes(self.buffer))
            reply = drive_sync(self.manager, steps)
        line = self.status_line if reply.status == status else _status_line(reply.status)
        self.start_response(line, reply.headers, self.exc_info)
        return reply.body

    def close(self) -> None:
        close = getattr(self.app_iter, "close", None)
        if close is not None:
            close()


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


def _read_body(environ: Environ, limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes: enough to know the body is too large."""
    stream = environ["wsgi.input"]
    length = _content_length(environ)
    if length is None and not environ.get("wsgi.input_terminated"):
        # Without a length, only a server that marks the stream as terminated
        # lets us read to its end (PEP 3333).
        return b""
    chunks = bytearray()
    # A read may return fewer bytes than asked for: read until the end.
    wanted = limit + 1 if length is None else min(length, limit + 1)
    while len(chunks) < wanted:
        chunk = stream.read(min(wanted - len(chunks), 65536))
        if not chunk:
            break
        chunks += chunk
    return bytes(chunks)


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
