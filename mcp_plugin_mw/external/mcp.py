"""
cpex external plugins over MCP
==============================

``transport: mcp`` calls a plugin hosted by a ContextForge/cpex 0.1.x
external plugin server (cpex's ``cpex.framework.external.mcp.server.runtime``
or anything speaking the same tools), through the official ``mcp`` SDK
client. The configuration mirrors cpex's ``mcp:`` block:

.. code-block:: yaml

    plugins:
      - name: PIIFilter                     # the plugin's name on the server
        kind: external
        transport: mcp
        mcp:
          proto: STREAMABLEHTTP             # or STDIO
          url: http://127.0.0.1:8000/mcp    # STREAMABLEHTTP; uds: /run/plugins.sock to go by a unix socket
          headers: {Authorization: "Bearer ${TOKEN}"}
          # STDIO: script: server.py (.py runs with this Python, .sh with sh) | cmd: [python, -m, ...]
          #        | command: plugin-server + args: [...]; env: {...}; cwd: ...
          mode: auto                        # auto (2026-07-28, falls back) or legacy (initialize handshake)
        hooks: [tool_pre_invoke]            # required; each must be one the server's plugin handles
        remote_name: PIIFilter              # default: name

The server's tools, as cpex 0.1.4 defines them: ``get_plugin_config(name)``
answers the plugin's cpex ``PluginConfig`` as JSON text (``{}`` if unknown);
``invoke_hook(hook_type, plugin_name, payload, context)`` runs one hook and
answers ``{"plugin_name", "result": <cpex PluginResult>, "context": <cpex
PluginContext>}`` (``context`` only when not empty) or ``{"plugin_name",
"error": {message, code, details, ...}}``. Payloads and contexts travel in
cpex's shapes (see :mod:`mcp_plugin_mw.external.cpex`): the state the plugin
leaves in its context comes back and carries from the pre to the post hook.

The client connects when the manager initializes (retrying until
``start_timeout``), asks ``get_plugin_config`` for the plugin's hooks (a
listed hook the remote plugin does not handle fails the start), and reconnects with
backoff when the connection breaks (``reconnect: {initial_delay, max_delay,
max_attempts}``); meanwhile calls fail and the plugin's mode decides. Install
the extra: ``pip install 'mcp-plugin-mw[mcp]'``.

Tracing: the SDK puts the current W3C trace context (``traceparent``,
``tracestate``) into each request's ``_meta`` (SEP-414), under its own
``MCP send`` client span, a child of the hook's span. Over STREAMABLEHTTP
each POST also carries it as HTTP headers, for servers and proxies that
read only those.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from pydantic import Field, field_validator, model_validator

from .. import telemetry
from ..models import HookType, Payload, PluginConfig, PluginContext, PluginError, PluginResult
from .base import ExternalOptions, ProtocolError, RemotePlugin, dumps
from .cpex import (
    ResourceContent,
    context_fields,
    item_fields,
    item_from_fields,
    resource_items,
    result_from_fields,
    to_cpex_fields,
    violation_from_fields,
)

__all__ = ["McpOptions", "McpPlugin", "McpServerOptions", "ReconnectOptions"]

_INSTALL_HINT = "transport mcp needs the mcp SDK: pip install 'mcp-plugin-mw[mcp]'"

T = TypeVar("T")


class McpServerOptions(ExternalOptions):
    """``mcp:``: where the plugin server is and how to reach it (cpex's ``MCPClientConfig``)."""

    proto: Literal["STREAMABLEHTTP", "STDIO"]
    url: str | None = None
    uds: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    script: str | None = None
    cmd: list[str] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    mode: Literal["auto", "legacy"] = "auto"

    @field_validator("proto", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _target(self) -> McpServerOptions:
        if self.proto == "STREAMABLEHTTP":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("proto STREAMABLEHTTP needs 'url' (http:// or https://)")
        else:
            given = [key for key in ("script", "cmd", "command") if getattr(self, key)]
            if len(given) != 1:
                raise ValueError("proto STDIO needs exactly one of 'script', 'cmd' or 'command'")
        return self

    def command_line(self) -> tuple[str, list[str]]:
        """The STDIO server's program and arguments (a ``script`` as cpex runs it)."""
        if self.cmd:
            return self.cmd[0], [*self.cmd[1:], *self.args]
        if self.command:
            return self.command, list(self.args)
        script = Path(self.script or "").expanduser()
        if not script.is_absolute() and self.cwd:
            script = Path(self.cwd).expanduser() / script
        if script.suffix == ".py":
            return sys.executable, [str(script), *self.args]
        if script.suffix == ".sh":
            return "sh", [str(script), *self.args]
        return str(script), list(self.args)


class ReconnectOptions(ExternalOptions):
    """``reconnect:``: the backoff between attempts to reach a lost server."""

    initial_delay: float = Field(default=0.2, gt=0)
    max_delay: float = Field(default=30.0, gt=0)
    max_attempts: int | None = Field(default=None, ge=0)
    """Attempts after a loss before the plugin stays down; unbounded when unset."""


class McpOptions(ExternalOptions):
    """The keys of ``transport: mcp``."""

    transport: Literal["mcp"]
    mcp: McpServerOptions
    remote_name: str | None = None
    """The plugin's name on the server; default: the entry's ``name``."""
    start_timeout: float = Field(default=10.0, gt=0)
    """Seconds to keep trying to connect when the manager initializes."""
    reconnect: ReconnectOptions = Field(default_factory=ReconnectOptions)


def _sdk() -> tuple[Any, Any, Any, Any]:
    """``mcp.Client``, ``StdioServerParameters``, ``streamable_http_client`` and ``httpx2``."""
    try:
        mcp = importlib.import_module("mcp")
        streamable = importlib.import_module("mcp.client.streamable_http").streamable_http_client
        httpx2 = importlib.import_module("httpx2")
    except ImportError as exc:
        error = ImportError(f"{_INSTALL_HINT} ({exc})")
        error.hint = _INSTALL_HINT  # type: ignore[attr-defined]
        raise error from exc
    return mcp.Client, mcp.StdioServerParameters, streamable, httpx2


class McpPlugin(RemotePlugin):
    """A cpex plugin on an external MCP plugin server."""

    options_model = McpOptions

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.options = self.parse_options(McpOptions)
        self.remote_name = self.options.remote_name or self.name
        self._client_class, self._stdio_parameters, self._streamable, self._httpx2 = _sdk()
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._stopping = False
        self._remote_hooks: frozenset[HookType] = frozenset(self.hooks)
        self.remote_config: dict[str, Any] = {}
        """The plugin's cpex configuration as the server reports it."""

    # -- connection ----------------------------------------------------

    async def initialize(self) -> None:
        """Connect (retrying until ``start_timeout``) and read the plugin's configuration."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        deadline = time.monotonic() + self.options.start_timeout
        delay = 0.05
        while True:
            try:
                await self._connect(max(deadline - time.monotonic(), 0.1))
                break
            except PluginError:
                raise
            except Exception as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PluginError(
                        f"cannot reach the MCP plugin server within {self.options.start_timeout:g}s: {_describe(exc)}",
                        plugin_name=self.name,
                    ) from exc
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)
        try:
            await self._read_config()
        except BaseException:
            await self._disconnect()
            raise
        self._loaded = True
        self.record_health(True)

    async def _connect(self, timeout: float) -> None:
        """Start the task that owns the SDK client, and wait until it is connected."""
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        closing = asyncio.Event()
        owner = asyncio.get_running_loop().create_task(self._own(ready, closing), name=f"mcp-plugin-{self.name}")
        try:
            async with asyncio.timeout(timeout):
                self._client = await asyncio.shield(ready)
        except BaseException:
            closing.set()
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner
            raise
        self._owner, self._closing = owner, closing

    async def _own(self, ready: asyncio.Future[Any], closing: asyncio.Event) -> None:
        # The SDK client runs task groups that must be entered and left by
        # the same task: this one, which lives as long as the connection.
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(self._build_client(stack))
                ready.set_result(client)
                await closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError(_describe(exc)))
                return
            if not closing.is_set() and not self._stopping:
                self._lost(f"connection lost: {_describe(exc)}")

    def _build_client(self, stack: contextlib.AsyncExitStack) -> Any:
        server = self.options.mcp
        if server.proto == "STDIO":
            command, args = server.command_line()
            parameters = self._stdio_parameters(
                command=command, args=args, env={**os.environ, **server.env}, cwd=server.cwd
            )
            return self._client_class(parameters, mode=server.mode)
        httpx2 = self._httpx2
        http = httpx2.AsyncClient(
            headers=server.headers,
            transport=httpx2.AsyncHTTPTransport(uds=server.uds) if server.uds else None,
            # The executor bounds every call with the plugin's timeout.
            timeout=httpx2.Timeout(10.0, read=None),
            trust_env=False,
            event_hooks={"request": [_trace_headers]} if telemetry.PROPAGATES else None,
        )
        stack.push_async_callback(http.aclose)  # closed after the client, which may send DELETE
        return self._client_class(self._streamable(server.url, http_client=http), mode=server.mode)

    async def _read_config(self) -> None:
        reply = _decode(await self._client.call_tool("get_plugin_config", {"name": self.remote_name}))
        if not reply:
            raise PluginError(
                f"the MCP plugin server has no plugin named {self.remote_name!r}",
                plugin_name=self.name,
                code="PLUGIN_NOT_FOUND",
            )
        self.remote_config = reply
        self.remote_name = str(reply.get("name") or self.remote_name)
        remote: set[HookType] = set()
        for name in reply.get("hooks") or []:
            with contextlib.suppress(ValueError):
                remote.add(HookType(name))
        if self.plugin_config.hooks is not None:
            missing = [hook.value for hook in self.plugin_config.hooks if hook not in remote]
            if missing:
                raise PluginError(
                    f"hooks {', '.join(missing)} listed but the remote plugin {self.remote_name!r} handles only "
                    f"{', '.join(sorted(h.value for h in remote)) or 'none of ours'}",
                    plugin_name=self.name,
                )
        self._remote_hooks = frozenset(remote)

    def _lost(self, reason: str) -> None:
        """Note a broken connection and start reconnecting (on the connection's loop)."""
        self._client = None
        self.record_health(False, reason)
        self.logger.warning("%s", reason)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        await self._disconnect()
        options = self.options.reconnect
        delay, attempts = options.initial_delay, 0
        while not self._stopping:
            if options.max_attempts is not None and attempts >= options.max_attempts:
                self.record_health(False, f"gave up reconnecting after {attempts} attempts; {self._last_error}")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, options.max_delay)
            attempts += 1
            try:
                await self._connect(self.options.start_timeout)
            except Exception as exc:
                self.record_health(False, f"reconnect {attempts} failed: {_describe(exc)}")
                continue
            if self._stopping:
                await self._disconnect()
                return
            self._restarts += 1
            self.record_health(True)
            self.logger.info("reconnected to the MCP plugin server")
            return

    async def _disconnect(self) -> None:
        owner, closing = self._owner, self._closing
        self._owner = self._closing = None
        self._client = None
        if owner is None or closing is None:
            return
        closing.set()
        try:
            async with asyncio.timeout(5.0):
                await owner
        except BaseException:
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner

    async def shutdown(self) -> None:
        """Close the connection (and, for STDIO, the server process)."""
        self._stopping = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(BaseException):
                await self._reconnecting
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop() and not loop.is_closed():
            await _on_loop(loop, self._disconnect())
        else:
            await self._disconnect()
        self._loaded = False
        self.record_health(False)

    # -- calls ---------------------------------------------------------

    async def call(self, hook: HookType, payload: Payload, context: PluginContext) -> PluginResult | None:
        """Run ``hook`` on the server with ``invoke_hook``."""
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            # The SDK client belongs to the loop that connected it.
            return await _on_loop(loop, self.call(hook, payload, context))
        if hook not in self._remote_hooks:
            return None
        if hook is HookType.RESOURCE_POST_FETCH:
            items = resource_items(payload)  # type: ignore[arg-type]
            if items is not None:
                return await self._per_item(payload, items, context)
        result = await self._invoke(hook, to_cpex_fields(hook, payload), context)
        return _result(hook, payload, result)

    async def _per_item(self, payload: Any, items: list[dict[str, Any]], context: PluginContext) -> PluginResult | None:
        # ContextForge hands resource_post_fetch one content item at a time.
        changed: list[dict[str, Any]] = []
        metadata: dict[str, Any] = {}
        modified = False
        for item in items:
            fields = {"uri": payload.uri, "content": item_fields(item, payload.uri)}
            result = await self._invoke(HookType.RESOURCE_POST_FETCH, fields, context)
            metadata.update(result.get("metadata") or {})
            if not result.get("continue_processing", True):
                violation = result.get("violation")
                return PluginResult(
                    continue_processing=False,
                    violation=violation_from_fields(violation) if isinstance(violation, Mapping) else None,
                    metadata=metadata,
                )
            new = (result.get("modified_payload") or {}).get("content")
            if isinstance(new, Mapping):
                fields_now = ResourceContent.model_validate(new)
                updated = item_from_fields(item, fields_now.__dict__ | (fields_now.model_extra or {}))
                modified = modified or updated != item
                item = updated
            changed.append(item)
        if not modified:
            return PluginResult(metadata=metadata) if metadata else None
        content = {**payload.content, "contents": changed}
        return PluginResult(modified_payload=payload.model_copy(update={"content": content}), metadata=metadata)

    async def _invoke(self, hook: HookType, fields: dict[str, Any], context: PluginContext) -> dict[str, Any]:
        client = self._client
        if client is None:
            raise PluginError(
                f"plugin {self.name} is not connected ({self._last_error or 'not started'})",
                plugin_name=self.name,
                code="PLUGIN_UNAVAILABLE",
            )
        arguments = {
            "hook_type": hook.value,
            "plugin_name": self.remote_name,
            # Through JSON once: values JSON cannot hold are sent as text.
            "payload": orjson.loads(dumps(fields)),
            "context": orjson.loads(dumps(context_fields(context))),
        }
        try:
            answer = await client.call_tool("invoke_hook", arguments)
        except Exception as exc:
            if client is self._client:
                self._lost(f"{hook.value}: {_describe(exc)}")
            raise PluginError(f"invoke_hook failed: {_describe(exc)}", plugin_name=self.name) from exc
        reply = _decode(answer)
        _apply_context(context, reply.get("context"), arguments["context"])
        result = reply.get("result")
        if isinstance(result, dict):
            return result
        error = reply.get("error")
        if isinstance(error, dict):
            details = error.get("details")
            raise PluginError(
                str(error.get("message") or "the remote plugin failed"),
                plugin_name=self.name,
                code=str(error.get("code") or "PLUGIN_ERROR"),
                details=dict(details) if isinstance(details, Mapping) else None,
            )
        raise ProtocolError(f"invoke_hook answered neither 'result' nor 'error': {reply!r:.200}", plugin_name=self.name)


async def _trace_headers(request: Any) -> None:
    # The SDK sends each POST in the context its request was written in (the
    # hook's task, inside the SDK's client span): the same traceparent as _meta.
    telemetry.inject(request.headers)


def _result(hook: HookType, payload: Any, result: dict[str, Any]) -> PluginResult:
    modified = result.get("modified_payload")
    violation = result.get("violation")
    return result_from_fields(
        hook,
        payload,
        continue_processing=bool(result.get("continue_processing", True)),
        modified=modified if isinstance(modified, Mapping) else None,
        violation=violation if isinstance(violation, Mapping) else None,
        metadata=result.get("metadata") if isinstance(result.get("metadata"), Mapping) else None,
    )


def _decode(answer: Any) -> dict[str, Any]:
    """The JSON object a cpex tool answers, from its text content (or its structured content)."""
    texts = [item.text for item in answer.content if getattr(item, "type", None) == "text"]
    if answer.is_error:
        raise PluginError(f"the MCP plugin server answered an error: {' '.join(texts)[:300]}")
    for text in texts:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"tool answer is not JSON: {text[:200]!r}") from None
        if isinstance(value, dict):
            return value
    structured = answer.structured_content
    if isinstance(structured, dict):
        inner = structured.get("result", structured)
        if isinstance(inner, dict):
            return inner
    raise ProtocolError("tool answer holds no JSON object")


def _apply_context(context: PluginContext, data: Any, sent: dict[str, Any]) -> None:
    """Take over what the remote plugin changed in its context (as cpex's client does).

    Only differences from what was ``sent`` are applied, so values that went
    out as text (not JSON) stay as they are here.
    """
    if not isinstance(data, dict):
        return
    shared = data.get("global_context")
    pairs = [
        (context.state, data.get("state"), sent["state"]),
        (context.metadata, data.get("metadata"), sent["metadata"]),
        (
            context.global_context.state,
            shared.get("state") if isinstance(shared, dict) else None,
            sent["global_context"]["state"],
        ),
    ]
    for target, value, before in pairs:
        if not isinstance(value, dict) or value == before:
            continue
        for key in [key for key in before if key not in value]:
            target.pop(key, None)
        target.update({key: item for key, item in value.items() if before.get(key, _MISSING) != item})


_MISSING = object()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _on_loop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))
