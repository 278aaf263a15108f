"""
Hosting a plugin out of process
===============================

``mcp-plugin-mw serve-plugin CLASS_PATH`` runs any plugin class in its own
process and serves it over protocol 1 (``docs/external-protocol.rst``), so
that a heavy plugin moves out of the app with one change of configuration:

.. code-block:: yaml

    - name: heavy
      kind: external
      transport: subprocess
      exec: mcp-plugin-mw
      args: [serve-plugin, my.module.Plugin, --config, heavy.yaml]
      hooks: [tool_pre_invoke]

* It binds ``--host`` (127.0.0.1) and ``--port`` (0: any free port), prints
  ``PORT=<n>`` as its first stdout line, and answers ``GET /health`` with 200
  once the plugin's ``initialize`` has run.
* ``--config FILE`` is a YAML file holding the plugin's own ``config:``
  mapping (what would sit under ``config:`` in the app's entry), with
  ``${VAR}`` expanded as in the app's configuration.
* When ``MCP_PLUGIN_MW_SERVE_TOKEN`` is set (``transport: subprocess`` sets
  it), ``POST /call`` requires ``Authorization: Bearer <token>``; ``/health``
  stays open for probes.
* ``--ssl-certfile``/``--ssl-keyfile`` serve HTTPS; ``--ssl-ca-certs`` also
  requires clients to present a certificate signed by those CAs.
* Tracing: with OpenTelemetry installed, the trace context a ``POST /call``
  carries (W3C ``traceparent`` and ``tracestate`` headers, which the
  ``http`` and ``subprocess`` transports send) is current while the plugin
  runs, so spans the plugin starts continue the app's trace, under the
  hook's span. Configure an SDK in the plugin's process to export them.

Needs the ``serve`` extra (Starlette and uvicorn).
"""

from __future__ import annotations

import contextlib
import hmac
import inspect
import logging
import os
import re
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from . import telemetry
from .config import ENV_PREFIX, ConfigError, load_config
from .external.base import TOKEN_ENV, ProtocolError, decode_call, encode_error, encode_reply
from .loader import load_plugin
from .models import HookType, PluginError
from .plugin import Plugin

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"serve-plugin needs starlette and uvicorn: pip install 'mcp-plugin-mw[serve]' ({exc})") from exc

__all__ = ["create_app", "load_hosted", "serve"]


logger = logging.getLogger("mcp_plugin_mw.serve")

_JSON = "application/json"


def load_hosted(class_path: str, name: str | None = None, config_file: Path | None = None) -> Plugin:
    """Build the plugin to host, as the app would from a ``plugins:`` entry.

    :raises ConfigError: if the file or the plugin's configuration is bad.
    :raises PluginLoadError: if the class cannot be loaded or built.
    """
    own: Any = {}
    if config_file is not None:
        try:
            own = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([f"{config_file}: {exc}"], str(config_file)) from None
        if not isinstance(own, dict):
            raise ConfigError([f"{config_file}: expected the plugin's config mapping"], str(config_file))
    entry = {"name": name or re.split(r"[.:]", class_path)[-1], "kind": class_path, "config": own}
    # The app's MCP_PLUGIN_MW_* settings (DISABLED_PLUGINS naming its own
    # plugins, say) reach a child through its environment and are not ours.
    environ = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
    config = load_config({"plugins": [entry]}, environ=environ)
    return load_plugin(config.plugins[0])


def create_app(plugin: Plugin, token: str | None = None) -> Starlette:
    """The Starlette app serving ``plugin`` over protocol 1.

    :param token: if given, ``POST /call`` requires ``Authorization: Bearer <token>``.
    """
    handlers: dict[HookType, Callable[..., Any]] = {hook: getattr(plugin, hook.value) for hook in plugin.hooks}
    in_thread = plugin.blocking or plugin.plugin_config.run_in_thread
    expected = f"Bearer {token}".encode("latin-1", "replace") if token else None

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    async def call(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, expected):
                return _error(401, "UNAUTHORIZED", "missing or wrong bearer token")
        try:
            hook, payload, context = decode_call(await request.body())
        except ProtocolError as exc:
            return _error(400, "BAD_REQUEST", exc.message)
        handler = handlers.get(hook)
        if handler is None:
            hooks = ", ".join(plugin.hooks)
            return _error(404, "UNKNOWN_HOOK", f"plugin {plugin.name!r} does not handle {hook} (it handles: {hooks})")
        try:
            with telemetry.remote_context(request.headers):
                if in_thread:
                    outcome = await run_in_threadpool(handler, payload, context)
                else:
                    outcome = handler(payload, context)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
            body = encode_reply(outcome, payload, context)
        except PluginError as exc:
            return _error(500, exc.code, exc.message)
        except Exception as exc:
            logger.exception("plugin %s failed on %s", plugin.name, hook)
            return _error(500, "PLUGIN_ERROR", f"{type(exc).__name__}: {exc}")
        return Response(body, media_type=_JSON)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _maybe_await(plugin.initialize())
        try:
            yield
        finally:
            await _maybe_await(plugin.shutdown())

    routes = [Route("/health", health, methods=["GET"]), Route("/call", call, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


async def _maybe_await(outcome: Awaitable[None] | None) -> None:
    if outcome is not None:
        await outcome


def _error(status: int, code: str, message: str) -> Response:
    return Response(encode_error(code, message), status_code=status, media_type=_JSON)


def serve(
    class_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    config_file: Path | None = None,
    name: str | None = None,
    app_dir: str = ".",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_ca_certs: str | None = None,
) -> None:
    """Host ``class_path`` until SIGTERM or SIGINT (blocking).

    :raises ConfigError: if the plugin's configuration is bad.
    :raises PluginLoadError: if the plugin cannot be loaded.
    :raises SystemExit: with code 3 if the plugin fails to initialize.
    """
    # As uvicorn does: a plugin module beside the working directory imports
    # although the console script's own directory heads sys.path.
    sys.path.insert(0, os.path.abspath(app_dir))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    plugin = load_hosted(class_path, name, config_file)
    app = create_app(plugin, os.environ.get(TOKEN_ENV) or None)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say TCP,
    # and with Nagle on, every answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    # The supervisor reads this line first: print it before anything else,
    # and flush it, since stdout is a pipe.
    sys.stdout.write(f"PORT={sock.getsockname()[1]}\n")
    sys.stdout.flush()

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=75,
        timeout_graceful_shutdown=3,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_ca_certs=ssl_ca_certs,
        ssl_cert_reqs=ssl.CERT_REQUIRED if ssl_ca_certs else ssl.CERT_NONE,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)
