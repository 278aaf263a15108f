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
:class:`UpstreamProxy`, a pure ASGI reverse proxy on one pooled
``aiohttp.ClientSession``. The middleware decides first (the body size limit, the
request hooks, a block), so every hook works as it does in front of an app;
the proxy then:

* sends the request to the same path on the upstream's origin (the upstream
  URL names the server's MCP endpoint, which the proxy serves at the same
  path), with the body streamed as the client sends it;
* drops the hop-by-hop headers (``Connection`` and the headers it names,
  ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``,
  ``Proxy-*``) both ways and keeps every other one, the MCP headers
  (``Mcp-Session-Id``, ``MCP-Protocol-Version``, ``Last-Event-ID``,
  ``Authorization``) included;
* appends the client to ``X-Forwarded-For``, ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host``;
* refuses (502) a request whose target or headers no HTTP/1.1 request can
  carry: a control character (CR and LF would add a header of the client's
  own), a space in the target, header bytes that are not UTF-8;
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
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .asgi import PluginMiddleware
from .config import ConfigSource
from .manager import PluginManager
from .mapping import jsonrpc
from .mapping.http import problem
from .mapping.sse import SSEParser, encode_event

if TYPE_CHECKING:
    import aiohttp
    import yarl

__all__ = ["UpstreamProxy", "app_from_environ", "proxy_app"]

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
_KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle upstream connection is kept for reuse."""
# RFC 9110 §5.1 and §5.5: a field name is a token; a value holds no control
# character but HTAB (CR and LF would start a header of the client's own).
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_FIELD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9112 §3.2: a request target is visible ASCII (no space, no CR or LF).
_BAD_TARGET = re.compile(rb"[^\x21-\x7e]")


class _BadResponse(Exception):
    """The upstream's response cannot be relayed (conflicting Content-Length)."""


class _BadRequest(Exception):
    """The request carries a header or target no HTTP/1.1 request can carry."""


class _ClientGone(Exception):
    """The client disconnected while its request body was being sent upstream."""


class UpstreamProxy:
    """A pure ASGI reverse proxy to one upstream origin (usually inside :func:`proxy_app`).

    :param upstream: the MCP endpoint of the server, ``http(s)://host:port/path``;
        every request goes to its path on this origin.
    :param connect_timeout: seconds to wait for a connection to the upstream.
    :param read_timeout: seconds to wait for each read from the upstream
        (headers or the next bytes of a body); None waits as long as the
        upstream keeps the connection, as held-open event streams need.
    :param verify: verify the upstream's TLS certificate: True (certifi's CA
        bundle), a CA bundle file or directory, an ``ssl.SSLContext``, or
        False (see the warning in the module documentation).
    :param cert: a client certificate for the upstream: a PEM file holding the
        certificate and key, or ``(certfile, keyfile)`` or ``(certfile,
        keyfile, password)``.
    :param max_connections: the most connections open to the upstream at
        once; None for no limit (each held-open event stream holds one).
        Idle ones are kept for reuse and closed after 5 s idle.
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
        forwarded_headers: bool = True,
    ) -> None:
        _require_aiohttp()
        import aiohttp

        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the upstream must be an http:// or https:// URL, not {upstream!r}")
        self.upstream = upstream
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.path = urllib.parse.unquote(parts.path) or "/"
        self.forwarded_headers = forwarded_headers
        # connect: waiting for a free connection (max_connections) and opening one.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._max_connections = max_connections
        self._ssl = _ssl_context(verify, cert) if parts.scheme == "https" else True
        self._client: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------
    # The pooled client
    # ------------------------------------------------------------------

    def client(self) -> aiohttp.ClientSession:
        """The pooled client, created on first use (or at lifespan startup), in the running event loop."""
        if self._client is None:
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=self._max_connections or 0,
                limit_per_host=0,
                ssl=self._ssl,
                keepalive_timeout=_KEEPALIVE_EXPIRY,
            )
            self._client = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                # A proxy relays cookies and bodies as they are; it does not act on them.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                # No headers of aiohttp's own (User-Agent, Accept) but Host and the body's framing.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled client's connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

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
                self.client()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        import aiohttp

        client = self.client()
        method: str = scope["method"]
        url: yarl.URL | str = scope.get("path", "")
        body = _Body(receive, await _first_message(receive))
        # A body in one message goes as bytes: a GET gets no chunked framing.
        content: _Body | bytes | None = body if body.more else body.first or None
        try:
            url = self._url(scope)
            headers = self._request_headers(scope)
            # aiohttp sends a pooled request once more, on a new connection,
            # when the upstream closed the connection before answering (an
            # idle keep-alive connection it dropped) and that is safe: an
            # idempotent method whose body has not been streamed yet. A
            # malformed answer is not retried.
            response = await client.request(method, url, headers=headers, data=content, allow_redirects=False)
        except _BadRequest as error:
            logger.warning("mcp-plugin-mw proxy: %s %s refused: %s", method, url, error)
            await _reply(send, _failure(body, error))
            return
        except (TimeoutError, aiohttp.ClientError) as error:
            if body.gone:
                return  # aiohttp's wrapping of the _ClientGone the body raised: no one to answer
            logger.warning("mcp-plugin-mw proxy: %s %s failed upstream: %r", method, url, error)
            await _reply(send, _failure(body, error))
            return
        except _ClientGone:
            return
        try:
            if len(set(response.headers.getall("content-length", ()))) > 1:
                # Two lengths: the framing a client would pick is anyone's
                # guess (a response-splitting vector), so nothing is relayed.
                logger.warning("mcp-plugin-mw proxy: %s %s: conflicting Content-Length", method, url)
                await _reply(send, _failure(body, _BadResponse("conflicting Content-Length")))
                return
            await self._relay(response, body, receive, send)
        finally:
            response.close()

    async def _relay(self, response: aiohttp.ClientResponse, body: _Body, receive: Receive, send: Send) -> None:
        """Send the upstream's response as it arrives; stop when the client goes away."""
        relay = asyncio.ensure_future(self._stream(response, body, send))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((relay, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, watch):
                task.cancel()
            for task in (relay, watch):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if relay.done() and not relay.cancelled():
            relay.result()  # re-raise what is not the upstream's failure

    async def _stream(self, response: aiohttp.ClientResponse, body: _Body, send: Send) -> None:
        import aiohttp

        headers = _response_headers(response.raw_headers)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        tracker = _Unanswered.of(response, body)
        try:
            async for chunk in response.content.iter_any():
                if tracker is not None:
                    tracker.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as error:
            # The status went out already: end the stream cleanly, with an
            # error for each request the stream will no longer answer.
            logger.warning("mcp-plugin-mw proxy: the upstream failed mid-response: %r", error)
            tail = tracker.errors() if tracker is not None else b""
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _url(self, scope: Scope) -> yarl.URL:
        """The upstream URL for the request; :class:`_BadRequest` for a target HTTP/1.1 cannot carry."""
        raw_path: bytes | None = scope.get("raw_path")
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
            raw_path = None  # the raw path still holds the mount prefix
        if raw_path is None or urllib.parse.unquote(raw_path.decode("latin-1")) != path:
            # The middleware changed the path (or it was mounted): encode it again.
            raw_path = urllib.parse.quote(path, safe="/:@!$&'()*+,;=~").encode("ascii")
        import yarl

        query: bytes = scope.get("query_string", b"")
        target = raw_path + b"?" + query if query else raw_path
        if _BAD_TARGET.search(target):
            raise _BadRequest(f"a request target no HTTP/1.1 request can carry: {target[:40]!r}")
        # Sent as it came: encoded=True keeps yarl from normalising the path or query.
        return yarl.URL(self.origin + target.decode("latin-1"), encoded=True)

    def _request_headers(self, scope: Scope) -> list[tuple[str, str]]:
        """The headers sent upstream; :class:`_BadRequest` for one no HTTP/1.1 request can carry."""
        raw: RawHeaders = scope["headers"]
        dropped = _connection_tokens(raw) | _HOP_BY_HOP
        if self.forwarded_headers:
            dropped |= set(_FORWARDED)
        headers = [(name, value) for name, value in raw if name not in dropped and not name.startswith(b"proxy-")]
        headers.append((b"accept-encoding", b"identity"))
        if self.forwarded_headers:
            client = scope.get("client")
            host = next((value for name, value in raw if name == b"host"), None)
            added: list[bytes | None] = [
                client[0].encode("latin-1") if client else None,
                scope.get("scheme", "http").encode("latin-1"),
                host,
            ]
            for name, value in zip(_FORWARDED, added, strict=True):
                earlier = [v for n, v in raw if n == name]
                values = earlier + ([value] if value is not None else [])
                if values:
                    headers.append((name, b", ".join(values)))
        # The Connection header httpx sent; aiohttp sends none on HTTP/1.1.
        headers.append((b"connection", b"keep-alive"))
        try:
            return [
                (_checked(name, _FIELD_NAME.fullmatch), _checked(value, _BAD_FIELD_VALUE.search, bad=True))
                for name, value in headers
            ]
        except ValueError as error:
            raise _BadRequest(str(error)) from None


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
# Request bodies
# ----------------------------------------------------------------------


async def _first_message(receive: Receive) -> Message:
    """The first request message with bytes in it, or the last one.

    Servers may open a body with empty messages: skipping them lets a body
    that turns out to be empty or in one piece go without chunked framing.
    """
    message = await receive()
    while message["type"] == "http.request" and not message.get("body") and message.get("more_body", False):
        message = await receive()
    return message


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
    def of(cls, response: aiohttp.ClientResponse, body: _Body) -> _Unanswered | None:
        content_type = response.headers.get("content-type", "")
        if not content_type.lower().startswith("text/event-stream"):
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
    import aiohttp

    # ServerTimeoutError (a read) and ConnectionTimeoutError are TimeoutErrors too.
    timed_out = isinstance(error, TimeoutError)
    status = 504 if timed_out else 502
    if timed_out:
        detail = "the MCP server behind this proxy did not answer in time"
    elif isinstance(error, aiohttp.ClientConnectorError):
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


def _response_headers(raw: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    lowered = [(name.lower(), value) for name, value in raw]
    dropped = _connection_tokens(lowered) | _RESPONSE_HOP_BY_HOP
    return [(name, value) for name, value in lowered if name not in dropped and not name.startswith(b"proxy-")]


# ----------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------


def _checked(field: bytes, test: Callable[[bytes], object], *, bad: bool = False) -> str:
    """A header name or value as aiohttp takes it (str); ValueError when ``test`` finds it unfit."""
    if bool(test(field)) == bad:
        raise ValueError(f"a header no HTTP/1.1 request can carry: {field[:40]!r}")
    # aiohttp writes headers as UTF-8: bytes that are not are refused.
    return field.decode("utf-8")


def _require_aiohttp() -> None:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise RuntimeError("the proxy needs aiohttp: pip install 'mcp-plugin-mw[proxy]'") from None


def _ssl_context(verify: Verify, cert: Cert) -> ssl.SSLContext | bool:
    """What aiohttp's connector is given to verify the upstream: a context (certifi's CA bundle for True), or False."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is False:
        if cert is None:
            return False
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        import certifi

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
