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
``httpx.AsyncClient``. The middleware decides first (the body size limit, the
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
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from .asgi import PluginMiddleware
from .config import ConfigSource
from .manager import PluginManager
from .mapping import jsonrpc
from .mapping.http import problem
from .mapping.sse import SSEParser, encode_event

if TYPE_CHECKING:
    import httpx

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
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

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
        _require_httpx()
        import httpx

        url = httpx.URL(upstream)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"the upstream must be an http:// or https:// URL, not {upstream!r}")
        self.upstream = url
        self.origin = url.copy_with(raw_path=b"/", fragment=None)
        self.path = url.path
        self.forwarded_headers = forwarded_headers
        self._timeout = httpx.Timeout(connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout)
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_keepalive_connections
        )
        self._verify = _ssl_context(verify, cert) if url.scheme == "https" else True
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------
    # The pooled client
    # ------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        """The pooled client, created on first use (or at lifespan startup)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=self._limits,
                verify=self._verify,
                # A proxy relays redirects and cookies; it does not act on them.
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled client's connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

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
        import httpx

        client = self.client()
        headers = self._request_headers(scope)
        body = _Body(receive, await _first_message(receive))
        # A body in one message goes as bytes: a GET gets no chunked framing.
        content = body if body.more else body.first
        request = client.build_request(scope["method"], self._url(scope), headers=headers, content=content)
        try:
            try:
                response = await client.send(request, stream=True)
            except httpx.RemoteProtocolError as error:
                # A pooled connection the upstream closed while idle fails
                # before any answer (httpcore's "Server disconnected without
                # sending a response"; a malformed answer is not retried).
                # Sent again only when that is safe: an idempotent method
                # whose body is known in full.
                if "without sending a response" not in str(error) or scope["method"] not in _IDEMPOTENT or body.more:
                    raise
                request = client.build_request(scope["method"], self._url(scope), headers=headers, content=content)
                response = await client.send(request, stream=True)
        except _ClientGone:
            return
        except httpx.HTTPError as error:
            logger.warning("mcp-plugin-mw proxy: %s %s failed upstream: %r", scope["method"], request.url, error)
            await _reply(send, _failure(body, error))
            return
        if len(set(response.headers.get_list("content-length"))) > 1:
            # Two lengths: the framing a client would pick is anyone's
            # guess (a response-splitting vector), so nothing is relayed.
            await response.aclose()
            logger.warning("mcp-plugin-mw proxy: %s %s: conflicting Content-Length", scope["method"], request.url)
            await _reply(send, _failure(body, httpx.RemoteProtocolError("conflicting Content-Length")))
            return
        try:
            await self._relay(response, body, receive, send)
        finally:
            await response.aclose()

    async def _relay(self, response: httpx.Response, body: _Body, receive: Receive, send: Send) -> None:
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

    async def _stream(self, response: httpx.Response, body: _Body, send: Send) -> None:
        import httpx

        headers = _response_headers(response.headers.raw)
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        tracker = _Unanswered.of(response, body)
        try:
            async for chunk in response.aiter_raw():
                if tracker is not None:
                    tracker.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as error:
            # The status went out already: end the stream cleanly, with an
            # error for each request the stream will no longer answer.
            logger.warning("mcp-plugin-mw proxy: the upstream failed mid-response: %r", error)
            tail = tracker.errors() if tracker is not None else b""
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _url(self, scope: Scope) -> httpx.URL:
        raw_path: bytes | None = scope.get("raw_path")
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
            raw_path = None  # the raw path still holds the mount prefix
        if raw_path is None or urllib.parse.unquote(raw_path.decode("latin-1")) != path:
            # The middleware changed the path (or it was mounted): encode it again.
            raw_path = urllib.parse.quote(path, safe="/:@!$&'()*+,;=~").encode("ascii")
        query: bytes = scope.get("query_string", b"")
        url: httpx.URL = self.origin.copy_with(raw_path=raw_path + b"?" + query if query else raw_path)
        return url

    def _request_headers(self, scope: Scope) -> RawHeaders:
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
    def of(cls, response: httpx.Response, body: _Body) -> _Unanswered | None:
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
    import httpx

    timed_out = isinstance(error, httpx.TimeoutException)
    status = 504 if timed_out else 502
    if timed_out:
        detail = "the MCP server behind this proxy did not answer in time"
    elif isinstance(error, httpx.ConnectError):
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


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise RuntimeError("the proxy needs httpx: pip install 'mcp-plugin-mw[proxy]'") from None


def _ssl_context(verify: Verify, cert: Cert) -> ssl.SSLContext | bool:
    """What httpx is given to verify the upstream (httpx 0.28 deprecates paths and ``cert=``)."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is False:
        if cert is None:
            return False
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        if cert is None:
            return True
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
