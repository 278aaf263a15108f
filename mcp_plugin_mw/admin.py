"""
Admin app
=========

A small JSON app to look at and steer a running :class:`PluginManager`, as
ASGI (:func:`admin_app`) or WSGI (:func:`admin_wsgi_app`), with no framework
of its own::

    app.mount("/_plugins", mw.admin_app(manager, token=os.environ["MCP_PLUGIN_MW_ADMIN_TOKEN"]))

Every request needs ``Authorization: Bearer <token>`` (compared in constant
time); without it the answer is 401 with ``WWW-Authenticate: Bearer``.

``GET /plugins``
    The plugins: name, kind, hooks, flow, category, mode, healthy, and the
    calls, violations (blocked) and errors (errors and timeouts) counted by
    the manager's :class:`~mcp_plugin_mw.metrics.Tally`, attached by the
    first admin app or ``metrics.enable`` for it and kept across reloads.
``GET /health``
    200 ``{"status": "ok"}``, or 503 when a plugin in mode ``enforce`` is
    unhealthy (it would block traffic).
``POST /reload``
    Reloads the configuration; 200 with the new plugins, or 400 with the
    configuration's problems (the running chain is left as it was).
``PUT /plugins/{name}/mode``
    ``{"mode": "permissive"}`` changes one plugin's mode until the next reload.
``GET /metrics``
    Prometheus text (extra ``metrics``); see :mod:`mcp_plugin_mw.metrics`.

Mounted under a prefix, the app routes on the path below it (``root_path``
in ASGI, ``PATH_INFO`` in WSGI).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

from . import metrics
from .config import ConfigError
from .models import PluginMode

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .manager import PluginManager

__all__ = ["MAX_BODY_BYTES", "AdminApp", "AdminWSGIApp", "admin_app", "admin_wsgi_app"]

MAX_BODY_BYTES = 64 * 1024
"""Request bodies larger than this are refused with 413."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
StartResponse = Callable[..., Callable[[bytes], object]]

_MODES = ", ".join(mode.value for mode in PluginMode)


# --------------------------------------------------------------------------
# The endpoints, shared by both apps
# --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    content_type: str = "application/json"

    def header_list(self) -> list[tuple[str, str]]:
        """The response's headers, with the length of its body (also for HEAD, which sends none)."""
        return [
            ("content-type", self.content_type),
            ("content-length", str(len(self.body))),
            ("cache-control", "no-store"),
            *self.headers,
        ]


def _json(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> _Response:
    return _Response(status, orjson.dumps(value), headers or [])


def _error(status: int, message: str, headers: list[tuple[str, str]] | None = None, **extra: Any) -> _Response:
    return _json(status, {"error": message, **extra}, headers)


@dataclasses.dataclass(slots=True)
class _Route:
    """A matched path: the endpoint, its methods, and the plugin name for ``/plugins/{name}/mode``."""

    endpoint: str
    methods: tuple[str, ...]
    name: str = ""

    @property
    def takes_body(self) -> bool:
        return self.endpoint in ("mode", "reload")


_READ = ("GET", "HEAD")
_ROUTES = {
    "/plugins": _Route("plugins", _READ),
    "/health": _Route("health", _READ),
    "/reload": _Route("reload", ("POST",)),
    "/metrics": _Route("metrics", _READ),
}
_MODE_PREFIX, _MODE_SUFFIX = "/plugins/", "/mode"


def _route(path: str) -> _Route | None:
    found = _ROUTES.get(path)
    if found is not None:
        return found
    if path.startswith(_MODE_PREFIX) and path.endswith(_MODE_SUFFIX):
        name = path[len(_MODE_PREFIX) : -len(_MODE_SUFFIX)]
        if name:
            return _Route("mode", ("PUT",), name)
    return None


class _Admin:
    """What both apps do, apart from reading requests and writing responses."""

    def __init__(
        self,
        manager: PluginManager,
        token: str | None,
        allow_unauthenticated: bool,
        registry: CollectorRegistry | None,
        enable_metrics: bool,
        max_body_bytes: int,
    ) -> None:
        if not token:
            if not allow_unauthenticated:
                raise ValueError(
                    "the admin app needs a token (token=...); pass allow_unauthenticated=True to serve it without one"
                )
            self._token: bytes | None = None
        else:
            self._token = token.encode()
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        self.manager = manager
        self.max_body_bytes = max_body_bytes
        self.tally = metrics.tally_for(manager)
        self.registry = registry
        if enable_metrics and metrics.available():
            metrics.enable(manager, registry)

    # Requests ---------------------------------------------------------------

    def check(self, method: str, path: str, authorization: bytes | None) -> _Route | _Response:
        """The route for a request, or the 401, 404 or 405 answering it.

        The token is checked first: without it, nothing about the app is told.
        """
        refused = self._refuse(authorization)
        if refused is not None:
            return refused
        route = _route(path)
        if route is None:
            return _error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path or '/'}")
        if method not in route.methods:
            allow = ", ".join(route.methods)
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here; use {allow}", [("allow", allow)]
            )
        return route

    def _refuse(self, authorization: bytes | None) -> _Response | None:
        if self._token is None:
            return None
        scheme, _, credentials = (authorization or b"").strip().partition(b" ")
        credentials = credentials.strip()
        if scheme.lower() != b"bearer" or not credentials:
            challenge = 'Bearer realm="mcp-plugin-mw"'
            return _error(HTTPStatus.UNAUTHORIZED, "a bearer token is required", [("www-authenticate", challenge)])
        # Constant time: how much of a guess matched must not show in how long the answer takes.
        if not hmac.compare_digest(credentials, self._token):
            challenge = 'Bearer realm="mcp-plugin-mw", error="invalid_token"'
            return _error(HTTPStatus.UNAUTHORIZED, "the token is not valid", [("www-authenticate", challenge)])
        return None

    def too_large(self) -> _Response:
        return _error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {self.max_body_bytes} bytes")

    def serve(self, route: _Route, body: bytes, accept: str | None) -> _Response:
        """Answer any route but ``reload`` (whose manager call differs between ASGI and WSGI)."""
        endpoint = route.endpoint
        if endpoint == "plugins":
            return _json(HTTPStatus.OK, self.plugin_list())
        if endpoint == "health":
            return self.health()
        if endpoint == "metrics":
            return self.metrics(accept)
        if endpoint == "mode":
            return self.set_mode(route.name, body)
        raise AssertionError(endpoint)

    # Endpoints --------------------------------------------------------------

    def plugin_list(self) -> list[dict[str, Any]]:
        manager = self.manager
        try:
            statuses = manager.status()
        except Exception:
            statuses = {}
        counts = self.tally.per_plugin()
        rows: list[dict[str, Any]] = []
        for plugin in manager.plugins:
            config = plugin.plugin_config
            status = statuses.get(plugin.name)
            calls, violations, errors = counts.get(plugin.name, (0, 0, 0))
            rows.append(
                {
                    "name": plugin.name,
                    "kind": config.kind,
                    "hooks": [hook.value for hook in plugin.hooks],
                    "flow": config.flow.value,
                    "category": (config.category or type(plugin).default_category).value,
                    "mode": plugin.mode.value,
                    "healthy": bool(status is not None and status.healthy and status.loaded),
                    "calls": calls,
                    "violations": violations,
                    "errors": errors,
                }
            )
        return rows

    def health(self) -> _Response:
        manager = self.manager
        try:
            statuses = manager.status()
        except Exception as exc:
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "error", "error": f"{type(exc).__name__}: {exc}"})
        modes = {plugin.name: plugin.mode for plugin in manager.plugins}
        unhealthy = [name for name, status in statuses.items() if not (status.healthy and status.loaded)]
        blocking = [name for name in unhealthy if modes.get(name) is PluginMode.ENFORCE]
        if blocking:
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unhealthy", "unhealthy": blocking})
        body: dict[str, Any] = {"status": "ok"}
        if unhealthy:
            body["unhealthy"] = unhealthy  # not enforcing: they do not block traffic
        return _json(HTTPStatus.OK, body)

    def reloaded(self, error: BaseException | None) -> _Response:
        if error is None:
            return _json(HTTPStatus.OK, {"status": "reloaded", "plugins": self.plugin_list()})
        if isinstance(error, ConfigError):
            return _error(HTTPStatus.BAD_REQUEST, "invalid configuration", problems=list(error.problems))
        return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"reload failed: {type(error).__name__}: {error}")

    def set_mode(self, name: str, body: bytes) -> _Response:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(HTTPStatus.BAD_REQUEST, 'the body is not JSON; send {"mode": "..."}')
        modes = [mode.value for mode in PluginMode]
        mode = document.get("mode") if isinstance(document, dict) else None
        if not isinstance(mode, str) or mode not in modes:
            return _error(HTTPStatus.BAD_REQUEST, f'send {{"mode": "..."}} with one of: {_MODES}', modes=modes)
        try:
            self.manager.set_mode(name, mode)
        except KeyError:
            return _error(HTTPStatus.NOT_FOUND, f"no plugin is named {name!r}")
        except ValueError as exc:
            return _error(HTTPStatus.BAD_REQUEST, str(exc), modes=modes)
        row = next((row for row in self.plugin_list() if row["name"] == name), None)
        return _json(HTTPStatus.OK, row)

    def metrics(self, accept: str | None) -> _Response:
        try:
            text, content_type = metrics.collect_text(self.registry, accept)
        except metrics.MetricsUnavailable as exc:
            return _error(HTTPStatus.NOT_FOUND, str(exc))
        return _Response(HTTPStatus.OK, text, content_type=content_type)


# --------------------------------------------------------------------------
# ASGI
# --------------------------------------------------------------------------


def _route_path(scope: Scope) -> str:
    """The path below the mount point (as Starlette's ``Mount`` and FastAPI's ``app.mount`` leave it)."""
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        if path == root_path:
            return ""
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path


class AdminApp:
    """The ASGI admin app; build it with :func:`admin_app`."""

    def __init__(self, admin: _Admin) -> None:
        self._admin = admin

    @property
    def manager(self) -> PluginManager:
        return self._admin.manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            method = scope.get("method", "GET").upper()
            response = await self._handle(method, scope, receive)
            await send({"type": "http.response.start", "status": response.status, "headers": _encode(response)})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else response.body})
        elif kind == "lifespan":
            # Served on its own: nothing to start, and the manager is not ours to close.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _handle(self, method: str, scope: Scope, receive: Receive) -> _Response:
        admin = self._admin
        authorization: bytes | None = None
        accept = length = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization" and authorization is None:
                authorization = value
            elif key == b"accept":
                accept = value.decode("latin-1")
            elif key == b"content-length":
                length = value
        checked = admin.check(method, _route_path(scope), authorization)
        if isinstance(checked, _Response):
            return checked
        body = b""
        if checked.takes_body:
            if length is not None:
                if not length.strip().isdigit():
                    return _error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
                if int(length) > admin.max_body_bytes:
                    return admin.too_large()
            read = await _read_body(receive, admin.max_body_bytes)
            if read is None:
                return admin.too_large()
            body = read
        if checked.endpoint == "reload":
            try:
                await admin.manager.areload()
            except Exception as exc:
                return admin.reloaded(exc)
            return admin.reloaded(None)
        return admin.serve(checked, body, accept)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # disconnected: nothing more will come
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _encode(response: _Response) -> list[tuple[bytes, bytes]]:
    return [(key.encode("latin-1"), value.encode("latin-1")) for key, value in response.header_list()]


def admin_app(
    manager: PluginManager,
    *,
    token: str | None,
    allow_unauthenticated: bool = False,
    registry: CollectorRegistry | None = None,
    enable_metrics: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> AdminApp:
    """The admin app for ``manager``, as ASGI; see the module docstring.

    :param token: the bearer token every request must carry.
    :param allow_unauthenticated: serve without a token (only where nothing
        untrusted can reach the app); otherwise a missing token raises.
    :param registry: the prometheus-client registry ``/metrics`` reports
        (the global one by default).
    :param enable_metrics: count ``manager``'s plugin calls in ``registry``
        (:func:`mcp_plugin_mw.metrics.enable`) when prometheus-client is installed.
    :param max_body_bytes: larger request bodies are answered with 413.
    :raises ValueError: no token and not ``allow_unauthenticated``.
    """
    return AdminApp(_Admin(manager, token, allow_unauthenticated, registry, enable_metrics, max_body_bytes))


# --------------------------------------------------------------------------
# WSGI
# --------------------------------------------------------------------------


class AdminWSGIApp:
    """The WSGI admin app (PEP 3333); build it with :func:`admin_wsgi_app`."""

    def __init__(self, admin: _Admin) -> None:
        self._admin = admin

    @property
    def manager(self) -> PluginManager:
        return self._admin.manager

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        response = self._handle(method, environ)
        status = HTTPStatus(response.status)
        start_response(f"{status.value} {status.phrase}", response.header_list())
        return [b"" if method == "HEAD" else response.body]

    def _handle(self, method: str, environ: dict[str, Any]) -> _Response:
        admin = self._admin
        # PEP 3333 hands the path over as latin-1 text of the original bytes.
        path = str(environ.get("PATH_INFO", "")).encode("latin-1", "replace").decode("utf-8", "replace")
        authorization = environ.get("HTTP_AUTHORIZATION")
        raw = None if authorization is None else str(authorization).encode("latin-1", "replace")
        checked = admin.check(method, path, raw)
        if isinstance(checked, _Response):
            return checked
        body = b""
        if checked.takes_body:
            read = self._read_body(environ)
            if isinstance(read, _Response):
                return read
            body = read
        if checked.endpoint == "reload":
            try:
                admin.manager.reload()
            except Exception as exc:
                return admin.reloaded(exc)
            return admin.reloaded(None)
        return admin.serve(checked, body, environ.get("HTTP_ACCEPT"))

    def _read_body(self, environ: dict[str, Any]) -> bytes | _Response:
        limit = self._admin.max_body_bytes
        stream = environ.get("wsgi.input")
        length = str(environ.get("CONTENT_LENGTH") or "").strip()
        if stream is None:
            return b""
        if length:
            if not length.isdigit():
                return _error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            if int(length) > limit:
                return self._admin.too_large()
            return bytes(stream.read(int(length)))
        if environ.get("wsgi.input_terminated"):
            body = bytes(stream.read(limit + 1))
            return self._admin.too_large() if len(body) > limit else body
        return b""  # no length and no end marker: PEP 3333 says read nothing


def admin_wsgi_app(
    manager: PluginManager,
    *,
    token: str | None,
    allow_unauthenticated: bool = False,
    registry: CollectorRegistry | None = None,
    enable_metrics: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> AdminWSGIApp:
    """The admin app for ``manager``, as WSGI; the parameters are :func:`admin_app`'s."""
    return AdminWSGIApp(_Admin(manager, token, allow_unauthenticated, registry, enable_metrics, max_body_bytes))
