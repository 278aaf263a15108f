"""
Reverse proxy
=============

The plugin pipeline in front of any MCP server that speaks Streamable HTTP,
whatever its language:

.. code-block:: python

    import mcp_plugin_mw as mw

    app = mw.proxy_app("http://127.0.0.1:9000/mcp", config="plugins.yaml")
    # uvicorn module:app --port 8000  ->  clients use http://127.0.0.1:8000/mcp

or ``mcp-plugin-mw proxy --upstream http://127.0.0.1:9000/mcp --config
plugins.yaml --port 8000``.

:func:`proxy_app` is :class:`~mcp_plugin_mw.asgi.PluginMiddleware` around
:class:`UpstreamProxy`, a pure ASGI reverse proxy on a pool of keep-alive
HTTP/1.1 connections to the upstream (a small asyncio client of its own: an
``httpx.AsyncClient`` cost about ten times the CPU of the rest of the proxy
per request). The middleware decides first (the body size limit, the
request hooks, a block), so every hook works as it does in front of an app;
the proxy then:

* sends the request to the same path on the upstream's origin (the upstream
  URL names the server's MCP endpoint, which the proxy serves at the same
  path): a body the client sent in one piece (any JSON-RPC message) goes with
  its ``Content-Length`` in the same write as the headers, a body still
  arriving is streamed as the client sends it (chunked, unless the client
  gave its length);
* drops the hop-by-hop headers (``Connection`` and the headers it names,
  ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``,
  ``Proxy-*``) both ways and keeps every other one, the MCP headers
  (``Mcp-Session-Id``, ``MCP-Protocol-Version``, ``Last-Event-ID``,
  ``Authorization``) included;
* appends the client to ``X-Forwarded-For``, ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host``;
* asks for uncompressed responses (``Accept-Encoding: identity``): the
  plugins must read what they inspect, and the middleware refuses a
  compressed response it would have to inspect;
* streams the response as it arrives, event by event for an event stream
  (GET streams are held open as long as the upstream and the client keep
  them), and stops the upstream request when the client goes away.

When the upstream cannot be reached, times out, or fails before its
response starts, a JSON-RPC request is answered with a JSON-RPC error under
its id (code -32603) at HTTP 502 (504 for a timeout): MCP's Streamable HTTP
lets a server answer with an HTTP error status and a JSON-RPC error body,
and the SDK clients surface that error as the call's failure; the status
tells any HTTP tool what happened. Anything else gets a 502 (504)
``application/problem+json``. When the upstream dies in the middle of an
event stream, the stream ends with a JSON-RPC error event for each request
of the POST still unanswered, and the proxy goes on serving.

.. warning::

   ``X-Forwarded-*`` are appended to, not replaced: values a client sent
   reach the upstream in front of the proxy's own. An upstream must trust
   only as many entries from the right as there are proxies it knows (as
   werkzeug's ``ProxyFix(x_for=1)`` does), never the leftmost. Pass
   ``forwarded_headers=False`` when the upstream must not see them at all.

.. warning::

   The proxy verifies the upstream's TLS certificate by default (certifi's
   CA bundle, or ``verify=`` a CA bundle path or an ``ssl.SSLContext``).
   ``verify=False`` trusts whoever answers at the upstream's address with
   every request, tokens included: use it only on a loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from .asgi import PluginMiddleware
from .config import ConfigSource
from .manager import PluginManager
from .mapping import jsonrpc
from .mapping.http import problem
from .mapping.sse import SSEParser, encode_event

__all__ = ["UpstreamConnectError", "UpstreamError", "UpstreamProxy", "UpstreamTimeout", "app_from_environ", "proxy_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]
Verify = bool | str | os.PathLike[str] | ssl.SSLContext
Cert = str | os.PathLike[str] | tuple[str, str] | tuple[str, str, str] | None

logger = logging.getLogger("mcp_plugin_mw.proxy")

# RFC 9110 §7.6.1: meaningful for one connection only. Host is set by the
# client from the upstream URL; Content-Length is kept (the body is streamed
# as it came, so its length holds).
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"host", b"accept-encoding"}
)
_RESPONSE_HOP_BY_HOP = _HOP_BY_HOP - {b"host", b"accept-encoding"}
_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")
_RETAIN_BYTES = 1024 * 1024
"""At most this much of a request body is kept to answer its JSON-RPC requests if the upstream fails."""
_ENV_PREFIX = "MCP_PLUGIN_MW_PROXY_"


class _ClientGone(Exception):
    """The client disconnected while its request body was being sent upstream."""


class UpstreamProxy:
    """A pure ASGI reverse proxy to one upstream origin (usually inside :func:`proxy_app`).

    :param upstream: the MCP endpoint of the server, ``http(s)://host:port/path``;
        every request goes to its path on this origin.
    :param connect_timeout: seconds to wait for a connection to the upstream
        (TLS handshake included), and for a free one when ``max_connections``
        are busy.
    :param read_timeout: seconds to wait for each read from the upstream
        (headers or the next bytes of a body) and each write of a streamed
        request body; None waits as long as the upstream keeps the
        connection, as held-open event streams need.
    :param verify: verify the upstream's TLS certificate: True (certifi's CA
        bundle), a CA bundle file or directory, an ``ssl.SSLContext``, or
        False (see the warning in the module documentation).
    :param cert: a client certificate for the upstream: a PEM file holding the
        certificate and key, or ``(certfile, keyfile)`` or ``(certfile,
        keyfile, password)``.
    :param max_connections: the most connections open to the upstream at
        once; None for no limit (each held-open event stream holds one).
    :param max_keepalive_connections: idle connections kept for reuse.
    :param forwarded_headers: append ``X-Forwarded-For/Proto/Host``.
    """

    def __init__(
        self,
        upstream: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
        verify: Verify = True,
        cert: Cert = None,
        max_connections: int | None = None,
        max_keepalive_connections: int = 100,
        forwarded_headers: bool = True,
    ) -> None:
        parts = urllib.parse.urlsplit(upstream)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = -1
        if scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ValueError(f"the upstream must be an http:// or https:// URL, not {upstream!r}")
        host = parts.hostname
        default = 443 if scheme == "https" else 80
        authority = f"[{host}]" if ":" in host else host
        if port is not None and port != default:
            authority += f":{port}"
        self.upstream = upstream
        self.origin = f"{scheme}://{authority}"
        self.path = parts.path or "/"
        self.forwarded_headers = forwarded_headers
        context = _ssl_context(verify, cert) if scheme == "https" else None
        self._pool_options = _PoolOptions(
            host=host,
            port=port or default,
            authority=authority.encode("idna" if not authority.isascii() else "ascii"),
            ssl=context,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_connections=max_connections,
            max_keepalive=max_keepalive_connections,
        )
        self._pool: _Pool | None = None

    # ------------------------------------------------------------------
    # The connection pool
    # ------------------------------------------------------------------

    def pool(self) -> _Pool:
        """The upstream connections, created on first use (or at lifespan startup)."""
        if self._pool is None:
            self._pool = _Pool(self._pool_options)
        return self._pool

    async def aclose(self) -> None:
        """Close the pooled connections."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # ------------------------------------------------------------------
    # ASGI
    # ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # MCP has no websocket transport; refusing beats a hung handshake.
            await receive()
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        pool = self.pool()
        headers = self._request_headers(scope)
        first = await receive()
        while first["type"] == "http.request" and first.get("more_body", False) and not first.get("body"):
            first = await receive()  # empty messages say nothing: a body that ends with them is empty
        body = _Body(receive, first)
        method: str = scope["method"]
        target = self._target(scope)
        # A body in one message goes as bytes, with its length: a GET gets no framing.
        content: bytes | _Body = body if body.more else body.first
        try:
            response = await pool.request(method.encode("ascii"), target, headers, content)
        except _ClientGone:
            return
        except UpstreamError as error:
            shown = self.origin + target.decode("latin-1")
            logger.warning("mcp-plugin-mw proxy: %s %s failed upstream: %r", method, shown, error)
            await _reply(send, _failure(body, error))
            return
        try:
            await self._relay(response, body, receive, send)
        finally:
            response.aclose()

    async def _relay(self, response: _Response, body: _Body, receive: Receive, send: Send) -> None:
        """Send the upstream's response as it arrives; stop when the client goes away.

        The response is relayed in this task; a watcher reading ``receive``
        cancels it when the client disconnects (one task per request, not two).
        """
        task = asyncio.current_task()
        assert task is not None
        watch = asyncio.ensure_future(_disconnected(receive))
        relaying, gone = True, False

        def hang_up(watched: asyncio.Future[None]) -> None:
            nonlocal gone
            if relaying and not watched.cancelled() and watched.exception() is None:
                gone = True
                task.cancel()

        watch.add_done_callback(hang_up)
        try:
            await self._stream(response, body, send)
        except asyncio.CancelledError:
            # Ours (the client went away) is swallowed; anyone else's goes on.
            if not gone or task.uncancel() > 0:
                raise
        finally:
            relaying = False
            watch.cancel()
            error = watch.exception() if watch.done() and not watch.cancelled() else None  # retrieved either way
        if error is not None:
            raise error  # the client's receive failed

    async def _stream(self, response: _Response, body: _Body, send: Send) -> None:
        headers = _response_headers(response.headers)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        tracker = _Unanswered.of(response, body)
        try:
            while True:
                chunk = await response.read()
                if tracker is not None:
                    tracker.feed(chunk)
                if response.complete:
                    # The last bytes end the response in the same message.
                    await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as error:
            # The status went out already: end the stream cleanly, with an
            # error for each request the stream will no longer answer.
            logger.warning("mcp-plugin-mw proxy: the upstream failed mid-response: %r", error)
            tail = tracker.errors() if tracker is not None else b""
            await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _target(self, scope: Scope) -> bytes:
        """The request target on the upstream: the path (and query) the client asked for."""
        raw_path: bytes | None = scope.get("raw_path")
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
            raw_path = None  # the raw path still holds the mount prefix
        if raw_path is None or urllib.parse.unquote(raw_path.decode("latin-1")) != path:
            # The middleware changed the path (or it was mounted): encode it again.
            raw_path = urllib.parse.quote(path, safe="/:@!$&'()*+,;=~").encode("ascii")
        if not raw_path.startswith(b"/"):
            raw_path = b"/" + raw_path
        query: bytes = scope.get("query_string", b"")
        target = raw_path + b"?" + query if query else raw_path
        if _UNSAFE_TARGET.search(target):
            # Nothing a request line cannot hold (spaces, controls, non-ASCII) goes out raw.
            target = _UNSAFE_TARGET.sub(lambda found: b"%%%02X" % found[0][0], target)
        return target

    def _request_headers(self, scope: Scope) -> RawHeaders:
        """The client's headers less the hop-by-hop ones, with ``X-Forwarded-*`` appended to (one pass)."""
        headers: RawHeaders = []
        forwarded: dict[bytes, list[bytes]] | None = {} if self.forwarded_headers else None
        host: bytes | None = None
        tokens: set[bytes] = set()
        for name, value in scope["headers"]:
            name = name.lower()
            if name in _HOP_BY_HOP:
                if name == b"host" and host is None:
                    host = value
                elif name == b"connection":
                    tokens.update(token.strip().lower() for token in value.split(b","))
            elif name.startswith(b"proxy-"):
                pass
            elif forwarded is not None and name in _FORWARDED:
                forwarded.setdefault(name, []).append(value)
            else:
                headers.append((name, value))
        if tokens:
            # The headers ``Connection`` names are hop-by-hop too (RFC 9110 §7.6.1).
            headers = [(name, value) for name, value in headers if name not in tokens]
        headers.append((b"accept-encoding", b"identity"))
        if forwarded is not None:
            client = scope.get("client")
            added: tuple[bytes | None, ...] = (
                client[0].encode("latin-1") if client else None,
                scope.get("scheme", "http").encode("latin-1"),
                host,
            )
            for name, value in zip(_FORWARDED, added, strict=True):
                values = forwarded.get(name, [])
                if value is not None:
                    values.append(value)
                if values:
                    headers.append((name, b", ".join(values)))
        return headers


def proxy_app(
    upstream: str,
    config: ConfigSource = None,
    *,
    manager: PluginManager | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float | None = None,
    verify: Verify = True,
    cert: Cert = None,
    max_connections: int | None = None,
    max_keepalive_connections: int = 100,
    forwarded_headers: bool = True,
    **settings: Any,
) -> PluginMiddleware:
    """An ASGI app serving the MCP server at ``upstream`` behind the plugins.

    :param upstream: the server's MCP endpoint (``http://127.0.0.1:9000/mcp``);
        the proxy serves it at the same path.
    :param config: a YAML path, a mapping, a ``Config``, or None for
        ``MCP_PLUGIN_MW_CONFIG``; ignored when ``manager`` is given.
    :param manager: a ``PluginManager`` to share.
    :param settings: ``plugin_settings`` keys overriding the file and the
        environment (``max_body_bytes=...``).

    The other parameters are :class:`UpstreamProxy`'s. The upstream
    connections are opened at lifespan startup (or on the first request) and
    closed at shutdown.
    """
    proxy = UpstreamProxy(
        upstream,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        verify=verify,
        cert=cert,
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        forwarded_headers=forwarded_headers,
    )
    return PluginMiddleware(proxy, config, manager=manager, **settings)


def app_from_environ() -> PluginMiddleware:
    """The proxy ``mcp-plugin-mw proxy`` describes in the environment (a uvicorn factory, one per worker).

    ``MCP_PLUGIN_MW_PROXY_UPSTREAM`` names the upstream;
    ``MCP_PLUGIN_MW_PROXY_CONNECT_TIMEOUT``, ``..._READ_TIMEOUT``,
    ``..._VERIFY`` (``false`` or a CA bundle path), ``..._CERT`` and
    ``..._KEY`` the rest; ``MCP_PLUGIN_MW_CONFIG`` the plugins.
    """
    env = os.environ
    upstream = env.get(_ENV_PREFIX + "UPSTREAM")
    if not upstream:
        raise RuntimeError(f"{_ENV_PREFIX}UPSTREAM is not set")
    read = env.get(_ENV_PREFIX + "READ_TIMEOUT")
    verify: Verify = env.get(_ENV_PREFIX + "VERIFY", "true")
    if isinstance(verify, str) and verify.lower() in ("true", "false"):
        verify = verify.lower() == "true"
    certfile, keyfile = env.get(_ENV_PREFIX + "CERT"), env.get(_ENV_PREFIX + "KEY")
    cert: Cert = (certfile, keyfile) if certfile and keyfile else certfile or None
    return proxy_app(
        upstream,
        connect_timeout=float(env.get(_ENV_PREFIX + "CONNECT_TIMEOUT", "10")),
        read_timeout=float(read) if read else None,
        verify=verify,
        cert=cert,
    )


# ----------------------------------------------------------------------
# The upstream client: HTTP/1.1 on pooled asyncio connections
# ----------------------------------------------------------------------


class UpstreamError(Exception):
    """The upstream failed: unreachable, too slow, or not speaking HTTP/1.1 as it must."""


class UpstreamConnectError(UpstreamError):
    """No connection to the upstream (refused, unresolvable, or its TLS certificate not trusted)."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, answer or take the body within its timeout."""


class _Stale(Exception):
    """A reused connection the upstream had closed: nothing of the request was written, or nothing read back."""

    def __init__(self, written: bool, error: BaseException | None) -> None:
        super().__init__("the upstream closed the connection before answering")
        self.written = written
        self.error = error


_T = TypeVar("_T")
_MAX_HEAD = 64 * 1024
"""The largest response head (status line and headers) read from the upstream."""
_READ = 64 * 1024
_ONE_WRITE = 256 * 1024
"""A body up to this size goes in the same write as the request head."""
_KEEPALIVE_EXPIRY = 4.0
"""Seconds an idle connection is kept: under the 5 s after which uvicorn, Node and most servers close theirs."""
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_BLOCK = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\r\n\x00]*\r\n)*")
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f-\xff#]")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_NO_BODY_STATUS = frozenset({204, 304})
_BODY_LENGTH, _BODY_CHUNKED, _BODY_CLOSE, _BODY_NONE = range(4)


class _PoolOptions:
    __slots__ = (
        "authority",
        "connect_timeout",
        "host",
        "max_connections",
        "max_keepalive",
        "port",
        "read_timeout",
        "ssl",
    )

    def __init__(
        self,
        *,
        host: str,
        port: int,
        authority: bytes,
        ssl: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float | None,
        max_connections: int | None,
        max_keepalive: int,
    ) -> None:
        self.host = host
        self.port = port
        self.authority = authority
        self.ssl = ssl
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive


class _Connection:
    """One keep-alive connection to the upstream."""

    __slots__ = ("idle_since", "reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        """Still open at both ends, with nothing unasked for waiting in it, and not idle too long."""
        return (
            not self.writer.transport.is_closing()
            and not self.reader.at_eof()
            and self.reader.exception() is None
            and now - self.idle_since < _KEEPALIVE_EXPIRY
        )

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


class _Pool:
    """Keep-alive HTTP/1.1 connections to one upstream origin.

    Each request takes an idle connection (the most recently used) or opens
    one; its response gives it back once read to its end, or closes it when
    not. A request that finds a reused connection closed by the upstream
    (its keep-alive timeout) is sent again on a new one when nothing of it
    was written, or, for an idempotent method, nothing came back.
    """

    def __init__(self, options: _PoolOptions) -> None:
        self.options = options
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(options.max_connections) if options.max_connections else None
        self.loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.writer.close()

    async def _timed(self, awaitable: Awaitable[_T], timeout: float | None, what: str) -> _T:
        if timeout is None:
            return await awaitable
        try:
            async with asyncio.timeout(timeout):
                return await awaitable
        except TimeoutError:
            raise UpstreamTimeout(f"{what} took over {timeout:g} s") from None

    # -- connections ---------------------------------------------------

    async def _acquire(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            # Connections belong to the loop that opened them.
            self.idle, self.loop = [], loop
        if self.slots is not None:
            await self._timed(self.slots.acquire(), self.options.connect_timeout, "waiting for a free connection")
        try:
            now = time.monotonic()
            while self.idle:
                connection = self.idle.pop()
                if connection.usable(now):
                    connection.reused = True
                    return connection
                connection.abort()
            return await self._connect()
        except BaseException:
            self._free()
            raise

    async def _connect(self) -> _Connection:
        options = self.options
        try:
            reader, writer = await self._timed(
                asyncio.open_connection(
                    options.host,
                    options.port,
                    ssl=options.ssl,
                    server_hostname=options.host if options.ssl is not None else None,
                    limit=_MAX_HEAD,
                ),
                options.connect_timeout,
                "connecting to the upstream",
            )
        except UpstreamError:
            raise
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            raise UpstreamConnectError(f"cannot connect to {options.host}:{options.port}: {error}") from error
        return _Connection(reader, writer)

    def _free(self) -> None:
        if self.slots is not None:
            self.slots.release()

    def release(self, connection: _Connection, reusable: bool) -> None:
        """Give back a connection whose response ended (to the idle ones when ``reusable``)."""
        if reusable and len(self.idle) < self.options.max_keepalive and self.loop is asyncio.get_running_loop():
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            connection.abort()
        self._free()

    # -- requests ------------------------------------------------------

    async def request(self, method: bytes, target: bytes, headers: RawHeaders, body: bytes | _Body) -> _Response:
        """Send one request; the response once its head has arrived (its body is read from it)."""
        head = self._head(method, target, headers, body)
        while True:
            connection = await self._acquire()
            try:
                return await self._exchange(connection, method, head, body)
            except _Stale as stale:
                connection.abort()
                self._free()
                replayable = isinstance(body, bytes) and (not stale.written or method in _IDEMPOTENT)
                if not (connection.reused and replayable):
                    raise UpstreamError(str(stale)) from stale.error
            except BaseException:
                connection.abort()
                self._free()
                raise

    def _head(self, method: bytes, target: bytes, headers: RawHeaders, body: bytes | _Body) -> bytes:
        if isinstance(body, bytes):
            # Known in full: its own length, whatever the client said.
            headers = [(name, value) for name, value in headers if name != b"content-length"]
            framing = b"content-length: %d\r\n" % len(body) if body else b""
        elif any(name == b"content-length" for name, _ in headers):
            framing = b""
        else:
            framing = b"transfer-encoding: chunked\r\n"
        block = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
        if _HEADER_BLOCK.fullmatch(block) is None:
            raise UpstreamError("a request header has a name or value that HTTP/1.1 cannot carry")
        if _TOKEN.fullmatch(method) is None:
            raise UpstreamError(f"{method!r} is not an HTTP method")
        return b"".join(
            (
                method,
                b" ",
                target,
                b" HTTP/1.1\r\nhost: ",
                self.options.authority,
                b"\r\n",
                block,
                b"connection: keep-alive\r\n",
                framing,
                b"\r\n",
            )
        )

    async def _exchange(self, connection: _Connection, method: bytes, head: bytes, body: bytes | _Body) -> _Response:
        writer = connection.writer
        timeout = self.options.read_timeout
        try:
            if isinstance(body, bytes):
                if len(body) <= _ONE_WRITE:
                    writer.write(head + body)
                else:
                    writer.writelines((head, body))
                if writer.transport.is_closing() or writer.transport.get_write_buffer_size():
                    # Not all written at once: wait for it (and see any error).
                    await self._timed(writer.drain(), timeout, "sending the request")
            else:
                writer.write(head)
                await self._send_stream(connection, head, body)
        except (ConnectionError, BrokenPipeError) as error:
            raise _Stale(written=False, error=error) from error
        except OSError as error:
            raise UpstreamError(f"sending the request failed: {error}") from error
        return await _Response.start(self, connection, method)

    async def _send_stream(self, connection: _Connection, head: bytes, body: _Body) -> None:
        writer = connection.writer
        timeout = self.options.read_timeout
        declared = _declared_length(head)
        sent = 0
        async for chunk in body:
            sent += len(chunk)
            if declared is None:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            elif sent > declared:
                raise UpstreamError("the request body is longer than its Content-Length")
            else:
                writer.write(chunk)
            await self._timed(writer.drain(), timeout, "sending the request body")
        if declared is None:
            writer.write(b"0\r\n\r\n")
        elif sent != declared:
            raise UpstreamError("the request body is shorter than its Content-Length")
        await self._timed(writer.drain(), timeout, "sending the request body")


def _declared_length(head: bytes) -> int | None:
    found = re.search(rb"\r\ncontent-length: *([0-9]+) *\r\n", head)
    return int(found.group(1)) if found else None


class _Response:
    """The upstream's response: status and headers read, the body read with :meth:`read`."""

    __slots__ = ("complete", "connection", "headers", "keep_alive", "mode", "pool", "remaining", "status")

    def __init__(self, pool: _Pool, connection: _Connection, status: int, headers: RawHeaders) -> None:
        self.pool = pool
        self.connection: _Connection | None = connection
        self.status = status
        self.headers = headers
        self.keep_alive = True
        self.mode = _BODY_CLOSE
        self.remaining = 0
        self.complete = False

    @classmethod
    async def start(cls, pool: _Pool, connection: _Connection, method: bytes) -> _Response:
        reader = connection.reader
        timeout = pool.options.read_timeout
        while True:
            try:
                if timeout is None:
                    block = await reader.readuntil(b"\r\n\r\n")
                else:
                    block = await pool._timed(reader.readuntil(b"\r\n\r\n"), timeout, "waiting for the response")
            except asyncio.IncompleteReadError as error:
                if not error.partial:
                    raise _Stale(written=True, error=error) from error
                raise UpstreamError("the upstream closed the connection in the response head") from error
            except asyncio.LimitOverrunError:
                raise UpstreamError(f"the response head exceeds {_MAX_HEAD} bytes") from None
            except ConnectionError as error:
                raise _Stale(written=True, error=error) from error
            except OSError as error:
                raise UpstreamError(f"reading the response failed: {error}") from error
            lines = block[:-4].split(b"\r\n")
            found = _STATUS_LINE.fullmatch(lines[0])
            if found is None:
                raise UpstreamError(f"not an HTTP/1.1 status line: {lines[0][:100]!r}")
            status = int(found.group(2))
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue, 103 Early Hints: the answer follows
            break
        headers: RawHeaders = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                raise UpstreamError(f"not an HTTP header line: {line[:100]!r}")
            headers.append((name.lower(), value.strip(b" \t")))
        response = cls(pool, connection, status, headers)
        response._frame(method, http10=found.group(1) == b"0")
        return response

    def _frame(self, method: bytes, *, http10: bool) -> None:
        """How the body ends (RFC 9112 §6.3), and whether the connection outlives it."""
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for name, value in self.headers:
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings += [coding.strip().lower() for coding in value.split(b",")]
            elif name == b"connection" and b"close" in [token.strip().lower() for token in value.split(b",")]:
                self.keep_alive = False
        if http10 or self.status == 101:
            self.keep_alive = False
        if method == b"HEAD" or self.status in _NO_BODY_STATUS:
            self.mode = _BODY_NONE
        elif codings:
            if codings[-1] == b"chunked":
                self.mode = _BODY_CHUNKED
            else:
                self.mode, self.keep_alive = _BODY_CLOSE, False
            if lengths:
                self.keep_alive = False  # both: a smuggling attempt or a broken server
        elif lengths:
            values = {value for length in lengths for value in length.split(b",")}
            stripped = {value.strip() for value in values}
            if len(stripped) != 1 or not next(iter(stripped)).isdigit():
                raise UpstreamError(f"an invalid Content-Length: {lengths!r}")
            self.mode, self.remaining = _BODY_LENGTH, int(next(iter(stripped)))
        else:
            self.mode, self.keep_alive = _BODY_CLOSE, False
        if self.mode == _BODY_NONE or (self.mode == _BODY_LENGTH and self.remaining == 0):
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        connection, self.connection = self.connection, None
        if connection is not None:
            self.pool.release(connection, self.keep_alive)

    async def read(self) -> bytes:
        """The next bytes of the body, as they arrive; sets :attr:`complete` with the last of them."""
        if self.complete:
            return b""
        connection = self.connection
        if connection is None:
            raise UpstreamError("the response was closed")
        try:
            data = await self._read(connection.reader)
        except UpstreamError:
            self.aclose()
            raise
        except asyncio.IncompleteReadError as error:
            self.aclose()
            raise UpstreamError("the upstream closed the connection in the middle of the response") from error
        except asyncio.LimitOverrunError:
            self.aclose()
            raise UpstreamError("a chunk header of the response is too long") from None
        except (OSError, ValueError) as error:
            self.aclose()
            raise UpstreamError(f"reading the response failed: {error}") from error
        return data

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        timed = self.pool._timed
        timeout = self.pool.options.read_timeout
        if self.mode == _BODY_LENGTH:
            if timeout is None:
                data = await reader.read(min(self.remaining, _READ))
            else:
                data = await timed(reader.read(min(self.remaining, _READ)), timeout, "reading the response")
            if not data:
                raise UpstreamError("the upstream closed the connection in the middle of the response")
            self.remaining -= len(data)
            if not self.remaining:
                self._finish()
            return data
        if self.mode == _BODY_CLOSE:
            data = await timed(reader.read(_READ), timeout, "reading the response")
            if not data:
                self._finish()
            return data
        # Chunked: each chunk is passed on as it comes (an event stream's events).
        if not self.remaining:
            line = await timed(reader.readuntil(b"\r\n"), timeout, "reading the response")
            found = _CHUNK_SIZE.fullmatch(line[:-2])
            if found is None:
                raise UpstreamError(f"an invalid chunk header: {line[:100]!r}")
            size = int(found.group(1), 16)
            if size == 0:
                while await timed(reader.readuntil(b"\r\n"), timeout, "reading the response") != b"\r\n":
                    pass  # trailers: not relayed
                self._finish()
                return b""
            self.remaining = size
        data = await timed(reader.read(min(self.remaining, _READ)), timeout, "reading the response")
        if not data:
            raise UpstreamError("the upstream closed the connection in the middle of the response")
        self.remaining -= len(data)
        if not self.remaining and await timed(reader.readexactly(2), timeout, "reading the response") != b"\r\n":
            raise UpstreamError("a chunk of the response does not end with CRLF")
        return data

    def aclose(self) -> None:
        """Done with the response: a connection not read to its end is closed, not reused."""
        connection, self.connection = self.connection, None
        if connection is not None:
            self.pool.release(connection, reusable=False)


# ----------------------------------------------------------------------
# Request bodies
# ----------------------------------------------------------------------


class _Body:
    """The request body, streamed to the upstream as the client sends it.

    The first message is read before the upstream request is built, so that
    a request without a body is sent without one. The first bytes (up to
    :data:`_RETAIN_BYTES`) are kept, to answer the body's JSON-RPC requests
    by id should the upstream fail.
    """

    def __init__(self, receive: Receive, first: Message) -> None:
        self.receive = receive
        if first["type"] == "http.disconnect":
            first = {"type": "http.request", "body": b"", "more_body": False}
            self.gone = True
        else:
            self.gone = False
        self.first: bytes = first.get("body", b"")
        self.more: bool = first.get("more_body", False)
        self.kept = bytearray(self.first[:_RETAIN_BYTES])
        self.size = len(self.first)
        self.complete = not self.more

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        more = self.more
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if len(self.kept) < _RETAIN_BYTES:
                self.kept += chunk[: _RETAIN_BYTES - len(self.kept)]
            self.size += len(chunk)
            if chunk:
                yield chunk
        self.complete = True

    def requests(self) -> list[Any]:
        """The JSON-RPC request ids of the body, when it was read whole and holds JSON-RPC requests."""
        if not self.complete or self.size > len(self.kept):
            return []
        decoded = jsonrpc.decode(bytes(self.kept))
        messages = decoded if isinstance(decoded, list) else [decoded]
        return [message["id"] for message in messages if jsonrpc.is_request(message)]


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (what is left of an unread body is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# ----------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------


class _Unanswered:
    """The requests of a POST that its event stream has not answered yet."""

    def __init__(self, ids: list[Any]) -> None:
        self.ids = {jsonrpc.id_key(request_id): request_id for request_id in ids}
        self.parser = SSEParser()
        self.broken = False

    @classmethod
    def of(cls, response: _Response, body: _Body) -> _Unanswered | None:
        content_type = next((value for name, value in response.headers if name == b"content-type"), b"")
        if not content_type.lower().startswith(b"text/event-stream"):
            return None
        ids = body.requests()
        return cls(ids) if ids else None

    def feed(self, chunk: bytes) -> None:
        if self.broken or not self.ids:
            return
        try:
            events = self.parser.feed(chunk)
        except ValueError:
            self.broken = True  # an event too large to follow: every request counts as unanswered
            return
        for event in events:
            if event.has_data and (b'"result"' in event.raw or b'"error"' in event.raw or b"\\" in event.raw):
                decoded = jsonrpc.decode(event.data_bytes)
                for message in decoded if isinstance(decoded, list) else [decoded]:
                    if isinstance(message, dict) and "method" not in message and jsonrpc.valid_id(message.get("id")):
                        self.ids.pop(jsonrpc.id_key(message["id"]), None)

    def errors(self) -> bytes:
        detail = "the MCP server behind this proxy failed before answering"
        return b"".join(
            encode_event(
                data=jsonrpc.encode(jsonrpc.error_response(request_id, jsonrpc.INTERNAL_ERROR, detail)).decode(),
                event="message",
            )
            for request_id in self.ids.values()
        )


def _failure(body: _Body, error: Exception) -> tuple[int, RawHeaders, bytes]:
    """The answer when the upstream could not be reached or failed before its response started."""
    timed_out = isinstance(error, UpstreamTimeout)
    status = 504 if timed_out else 502
    if timed_out:
        detail = "the MCP server behind this proxy did not answer in time"
    elif isinstance(error, UpstreamConnectError):
        detail = "the MCP server behind this proxy is unreachable"
    else:
        detail = "the MCP server behind this proxy failed"
    ids = body.requests()
    if ids:
        errors = [jsonrpc.error_response(request_id, jsonrpc.INTERNAL_ERROR, detail) for request_id in ids]
        document: Any = errors[0] if len(errors) == 1 and not body.kept.lstrip().startswith(b"[") else errors
        encoded = jsonrpc.encode(document)
        return (
            status,
            [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())],
            encoded,
        )
    status, headers, content = problem(status, detail)
    return status, [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers], content


async def _reply(send: Send, reply: tuple[int, RawHeaders, bytes]) -> None:
    status, headers, content = reply
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content, "more_body": False})


def _connection_tokens(raw: RawHeaders) -> set[bytes]:
    """The header names a ``Connection`` header lists: hop-by-hop too (RFC 9110 §7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in raw:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return tokens


def _response_headers(raw: RawHeaders) -> RawHeaders:
    lowered = [(name.lower(), value) for name, value in raw]
    dropped = _connection_tokens(lowered) | _RESPONSE_HOP_BY_HOP
    return [(name, value) for name, value in lowered if name not in dropped and not name.startswith(b"proxy-")]


# ----------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------


def _ssl_context(verify: Verify, cert: Cert) -> ssl.SSLContext:
    """The TLS context the upstream connections are made with."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        try:
            import certifi
        except ImportError:
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=certifi.where())
    else:
        path = os.fspath(verify)
        if os.path.isdir(path):
            context = ssl.create_default_context(capath=path)
        else:
            context = ssl.create_default_context(cafile=path)
    if cert is not None:
        if isinstance(cert, tuple):
            context.load_cert_chain(*cert)
        else:
            context.load_cert_chain(os.fspath(cert))
    return context
