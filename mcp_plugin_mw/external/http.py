"""
Sidecar plugins over HTTP
=========================

``transport: http`` reaches a plugin server that someone else runs (a sidecar
container, a shared service) at ``url``, speaking protocol 1: ``GET
{url}/health`` answers 200 when ready, ``POST {url}/call`` runs a hook.

.. code-block:: yaml

    - name: upper
      kind: external
      transport: http
      url: https://plugins.internal:9000
      headers: {Authorization: "Bearer ${TOKEN}"}   # sent with every request
      tls: {ca_bundle: ca.pem, client_cert: me.pem, client_key: me.key, verify: true}
      start_timeout: 10        # seconds initialize() waits for /health to answer 200
      health_interval: 10      # seconds between health checks; 0 turns them off
      hooks: [tool_pre_invoke]

Event loops: an ``httpx.AsyncClient`` belongs to the loop it first ran on,
while hooks run on whichever loop calls them (an ASGI server's loop, the
background loop of sync callers, a test's loop). :class:`Wire` therefore
keeps one pooled client per loop. Health checks never touch those: they run
on a daemon thread with a sync client, so they go on whatever happens to the
loops, and never add to a hook's latency.

Tracing: with OpenTelemetry installed, each ``POST /call`` carries the
current trace context as W3C ``traceparent`` (and ``tracestate``) headers,
so a server that extracts them (``serve-plugin`` does) continues the hook's
trace; see :mod:`mcp_plugin_mw.telemetry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, FilePath, field_validator, model_validator

from .. import _threads, telemetry
from ..models import HookType, Payload, PluginConfig, PluginContext, PluginError, PluginResult
from .base import ExternalOptions, RemotePlugin, decode_reply, encode_call, error_from_reply

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("external plugins need httpx: pip install 'mcp-plugin-mw[external]'") from exc

__all__ = ["HealthWatch", "HttpOptions", "HttpPlugin", "TlsOptions", "Unreachable", "Wire", "in_daemon_thread"]

_JSON = {"content-type": "application/json"}

_POLL_FIRST = 0.02
_POLL_MAX = 0.5
"""Readiness polling starts at 20 ms and doubles up to half a second."""


class Unreachable(PluginError):
    """The plugin's server could not be reached (or dropped the connection)."""


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class TlsOptions(ExternalOptions):
    """``tls:``: how to trust the server and who we are to it."""

    ca_bundle: FilePath | None = None
    """PEM file of the certificates that may sign the server's; the system's when unset."""
    client_cert: FilePath | None = None
    """PEM file with our certificate (and its key, unless ``client_key`` is given)."""
    client_key: FilePath | None = None
    verify: bool = True
    """False accepts any server certificate: for tests only."""

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsOptions:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key given without client_cert")
        return self

    def context(self) -> ssl.SSLContext:
        """The SSL context these options describe."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle) if self.ca_bundle else None)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key) if self.client_key else None)
        return context


class HttpOptions(ExternalOptions):
    """The keys of ``transport: http``."""

    transport: Literal["http"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    tls: TlsOptions | None = None
    start_timeout: float = Field(default=10.0, gt=0)
    health_interval: float = Field(default=10.0, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")


async def in_daemon_thread(fn: Callable[[], Any]) -> Any:
    """Run blocking ``fn`` on a daemon worker thread and await it.

    Daemon threads, unlike ``asyncio.to_thread``'s, never hold up interpreter exit.
    """
    return await asyncio.wrap_future(_threads.daemon_pool().submit(fn))


class Wire:
    """Protocol 1 spoken to one plugin server, wherever it currently listens.

    :param name: the plugin's name, for messages.
    :param headers: sent with every request.
    :param verify: the SSL context (or True for the system's trust).
    """

    def __init__(self, name: str, headers: dict[str, str], verify: ssl.SSLContext | bool = True) -> None:
        self.name = name
        self._headers = headers
        self._verify = verify
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._closed = False

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise PluginError(f"plugin {self.name!r} is shut down", plugin_name=self.name)
            # Clients of loops that have closed cannot be closed any more;
            # their sockets went with their loop.
            for gone in [loop for loop in self._clients if loop.is_closed()]:
                del self._clients[gone]
            client = self._clients[loop] = httpx.AsyncClient(
                headers=self._headers,
                verify=self._verify,
                # The executor bounds every call with the plugin's timeout.
                timeout=None,
                # Proxy variables are for the app's outbound traffic, not for
                # its plugins (and would capture 127.0.0.1 without NO_PROXY).
                trust_env=False,
            )
        return client

    async def call(self, url: str, hook: HookType, payload: Payload, context: PluginContext) -> PluginResult | None:
        """``POST {url}/call`` for ``hook`` and the result it answers.

        :raises Unreachable: if the server cannot be reached.
        :raises PluginError: on an HTTP error, an ``error`` answer or garbage.
        """
        body = encode_call(hook, payload, context)
        headers = _JSON
        if telemetry.PROPAGATES:
            headers = dict(_JSON)
            telemetry.inject(headers)  # traceparent: the sidecar continues the hook's trace
        try:
            response = await self._client().post(f"{url}/call", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise Unreachable(f"POST {url}/call failed: {_describe(exc)}", plugin_name=self.name) from exc
        if response.status_code != 200:
            raise self._http_error(url, response)
        return decode_reply(hook, response.content, payload, context)

    def _http_error(self, url: str, response: httpx.Response) -> PluginError:
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if isinstance(reply, dict) and "error" in reply:
            found = error_from_reply(reply)
            detail, code = found.message, found.code
        else:
            text = response.text
            detail, code = repr(text if len(text) <= 120 else text[:120] + "..."), "PLUGIN_ERROR"
        return PluginError(f"POST {url}/call: HTTP {response.status_code}: {detail}", plugin_name=self.name, code=code)

    def check(self, url: str, timeout: float) -> str | None:
        """``GET {url}/health`` from any thread: None if 200, else what went wrong."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._closed:
                    return "shut down"
                if self._sync is None:
                    self._sync = httpx.Client(headers=self._headers, verify=self._verify, trust_env=False)
                client = self._sync
        try:
            response = client.get(f"{url}/health", timeout=timeout)
        except httpx.HTTPError as exc:
            return _describe(exc)
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        return None

    def wait_ready(
        self,
        url: str,
        timeout: float,
        exited: Callable[[], str | None] | None = None,
        *,
        deadline: float | None = None,
    ) -> None:
        """Poll ``GET {url}/health`` with backoff until it answers 200 (blocking).

        :param exited: says why the server is gone (a dead child), or None.
        :param deadline: when to give up (``time.monotonic()``), if earlier
            than ``timeout`` seconds from now.
        :raises PluginError: at the deadline, or as soon as ``exited`` reports
            a reason.
        """
        deadline = time.monotonic() + timeout if deadline is None else deadline
        delay = _POLL_FIRST
        while True:
            remaining = deadline - time.monotonic()
            problem = self.check(url, max(min(remaining, 2.0), 0.05))
            if problem is None:
                return
            reason = exited() if exited is not None else None
            if reason is not None:
                raise PluginError(f"plugin {self.name!r}: {reason} before GET {url}/health answered 200")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PluginError(
                    f"plugin {self.name!r}: GET {url}/health not 200 within {timeout:g}s (last: {problem})",
                    plugin_name=self.name,
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)

    async def aclose(self) -> None:
        """Close every client; the running loop's now, other loops' on their loop."""
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.items()), {}
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
        here = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is here:
                await client.aclose()
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed in the meantime
                    loop.call_soon_threadsafe(_close_later, client)


_closing: set[asyncio.Task[None]] = set()


def _close_later(client: httpx.AsyncClient) -> None:
    task = asyncio.get_running_loop().create_task(client.aclose())
    _closing.add(task)  # the loop keeps only a weak reference
    task.add_done_callback(_closing.discard)


class HealthWatch:
    """Runs ``check()`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, name: str, interval: float, check: Callable[[], None]) -> None:
        self._interval = interval
        self._check = check
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mcp-plugin-mw-health-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._check()

    def stop(self) -> None:
        """Stop checking (returns at once; a check under way finishes on its own)."""
        self._stop.set()


class HttpPlugin(RemotePlugin):
    """A plugin served over protocol 1 by a server at ``url``."""

    options_model = HttpOptions

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.options = self.parse_options(HttpOptions)
        verify: ssl.SSLContext | bool = self.options.tls.context() if self.options.tls else True
        self.wire = Wire(self.name, dict(self.options.headers), verify)
        self._watch: HealthWatch | None = None

    async def initialize(self) -> None:
        """Wait until the server answers ``/health`` with 200, then watch it."""
        url, timeout = self.options.url, self.options.start_timeout
        await in_daemon_thread(lambda: self.wire.wait_ready(url, timeout))
        self._loaded = True
        self.record_health(True)
        if self.options.health_interval > 0:
            self._watch = HealthWatch(self.name, self.options.health_interval, self._check)

    def _check(self) -> None:
        problem = self.wire.check(self.options.url, min(self.options.health_interval, 5.0))
        if problem is None:
            self.record_health(True)
        else:
            self.record_health(False, f"GET {self.options.url}/health: {problem}")

    async def call(self, hook: HookType, payload: Payload, context: PluginContext) -> PluginResult | None:
        """Run ``hook`` on the server."""
        try:
            result = await self.wire.call(self.options.url, hook, payload, context)
        except Unreachable:
            self.record_health(False)
            raise
        self._healthy = True  # it answered; a refused call may have marked it down
        return result

    async def shutdown(self) -> None:
        """Stop the health checks and close the connections."""
        if self._watch is not None:
            self._watch.stop()
        self._loaded = False
        await self.wire.aclose()
