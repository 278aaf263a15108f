"""
mcpd plugins
============

Runs a plugin executable written for mozilla-ai's mcpd (Go SDK or PyPI's
``mcpd-plugins``) on our ``http_pre_request`` and ``http_post_request``
hooks, with the request and response bodies:

.. code-block:: yaml

    plugins:
      - name: rewrite
        kind: mcpd
        exec: /opt/plugins/rewrite        # started as: exec --address <socket> --network unix [args]
        args: []
        commit_hash: 3f2a9c1              # must equal the plugin's GetMetadata().commit_hash
        flows: [request, response]        # mcpd's flows; intersected with our flow and the plugin's capabilities
        required: true                    # mcpd's shorthand: mode enforce (false: enforce_ignore_error)
        category: content
        config: {greeting: hello}         # sent with Configure as custom_config (values as strings)

The process is started when the manager initializes: we wait for its unix
socket (in a private temporary directory), call ``Configure`` and
``CheckReady`` until it answers or ``start_timeout`` (10 s) passes, check
``GetMetadata``'s ``commit_hash`` against the configured one (a mismatch
fails the start), and read ``GetCapabilities``. A crashed process is started
again with backoff, as ``transport: subprocess`` does (``restart:
{initial_delay, max_delay, max_restarts, enabled}``); meanwhile calls fail
and the plugin's mode decides. On shutdown we call ``Stop``, then terminate
the process group, and kill it after ``shutdown_grace`` (5 s).

What mcpd drops, we apply:

* ``HandleRequest``: ``continue: false`` blocks with the answer's
  ``status_code`` (403 if unset) and a violation whose details hold the
  answer's headers and body (a numeric ``Retry-After`` is passed on); ``modified_request`` is the changed request
  (method aside), and headers on a continuing answer are set on the request.
* ``HandleResponse``: a continuing answer that is all defaults changes
  nothing (proto3 cannot tell "unset" from "empty", and mcpd would blank the
  response); otherwise a non-zero ``status_code`` replaces the status, the
  headers are set over the app's, and the body replaces the app's unless it
  is empty with no status given. ``continue: false`` blocks like a request.

Header maps hold one value per name: repeated fields are joined with ``, ``
and names are sent in Go's canonical form (``Content-Type``), as mcpd's
plugins expect. The generated protobuf messages come from ``mcpd-plugins``;
install the extra: ``pip install 'mcp-plugin-mw[mcpd]'``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import Any, Literal, TypeVar

import orjson
from pydantic import Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..loader import PluginLoadError
from ..models import (
    Category,
    Flow,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    Payload,
    PluginConfig,
    PluginContext,
    PluginError,
    PluginResult,
    PluginViolation,
)
from .base import ExternalOptions, RemotePlugin
from .subprocess import end_process_group
from .subprocess import exit_reason as _exit_reason

__all__ = [
    "McpdOptions",
    "McpdPlugin",
    "RestartOptions",
    "canonical_header",
    "load",
    "request_message",
    "request_result",
    "response_message",
    "response_result",
    "split_entry",
]

_SERVICE = "/mozilla.mcpd.plugins.v1.Plugin/"
_FLOW_HOOKS = {"request": HookType.HTTP_PRE_REQUEST, "response": HookType.HTTP_POST_REQUEST}
_INSTALL_HINT = "kind 'mcpd' needs grpcio and mcpd-plugins: pip install 'mcp-plugin-mw[mcpd]'"

T = TypeVar("T")


class RestartOptions(ExternalOptions):
    """``restart:``: the backoff between restarts of a crashed plugin (as for ``transport: subprocess``)."""

    initial_delay: float = Field(default=0.5, gt=0)
    max_delay: float = Field(default=30.0, gt=0)
    max_restarts: int | None = Field(default=None, ge=0)
    """Restarts in all before the plugin stays down; unbounded when unset."""
    enabled: bool = True


class McpdOptions(ExternalOptions):
    """The keys of a ``kind: mcpd`` entry."""

    exec: str = Field(min_length=1)
    """The plugin executable."""
    args: list[str] = Field(default_factory=list)
    """Arguments after ``--address <socket> --network unix``."""
    env: dict[str, str] = Field(default_factory=dict)
    """Variables added to the plugin's environment."""
    cwd: str | None = None
    commit_hash: str | None = None
    """When set, the plugin's ``GetMetadata().commit_hash`` must equal it."""
    flows: list[Literal["request", "response"]] | None = None
    """mcpd's per-plugin flows; default: both."""
    start_timeout: float = Field(default=10.0, gt=0)
    """Seconds for the socket to appear and ``CheckReady`` to succeed."""
    shutdown_grace: float = Field(default=5.0, ge=0)
    """Seconds between terminating the process group and killing it."""
    restart: RestartOptions = Field(default_factory=RestartOptions)


def _grpc_modules() -> tuple[Any, Any, Any]:
    """``grpc.aio``, the mcpd protobuf module and ``Empty``, imported on first use."""
    try:
        aio = importlib.import_module("grpc.aio")
        messages = importlib.import_module("mcpd_plugins.v1.plugins.plugin_pb2")
        empty = importlib.import_module("google.protobuf.empty_pb2").Empty
    except ImportError as exc:
        error = ImportError(f"{_INSTALL_HINT} ({exc})")
        error.hint = _INSTALL_HINT  # type: ignore[attr-defined]
        raise error from exc
    return aio, messages, empty


# --------------------------------------------------------------------------
# Payloads <-> mcpd messages (pure functions)
# --------------------------------------------------------------------------


def canonical_header(name: str) -> str:
    """Go's canonical form of a header name: ``content-type`` -> ``Content-Type``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    mapped: dict[str, str] = {}
    for name, value in headers:
        key = canonical_header(name)
        mapped[key] = f"{mapped[key]}, {value}" if key in mapped else value
    return mapped


def _set_headers(headers: list[tuple[str, str]], updates: Mapping[str, str]) -> list[tuple[str, str]]:
    """``headers`` with each name in ``updates`` set to its value (unchanged ones keep their fields)."""
    current = _header_map(headers)
    changed = {name.lower(): value for name, value in updates.items() if current.get(canonical_header(name)) != value}
    if not changed:
        return headers
    return [(name, value) for name, value in headers if name not in changed] + list(changed.items())


def _replace_headers(headers: list[tuple[str, str]], new: Mapping[str, str]) -> list[tuple[str, str]]:
    """``headers`` made equal to the map ``new``; names left out are removed."""
    wanted = {name.lower(): value for name, value in new.items()}
    current = {name.lower(): value for name, value in _header_map(headers).items()}
    kept = [(name, value) for name, value in headers if wanted.get(name) == current.get(name)]
    added = [(name, value) for name, value in wanted.items() if current.get(name) != value]
    return kept + added


def request_message(messages: Any, payload: HttpPreRequestPayload) -> Any:
    """The ``HTTPRequest`` message for a request payload."""
    uri = f"{payload.path}?{payload.query_string}" if payload.query_string else payload.path
    return messages.HTTPRequest(
        method=payload.method,
        url=uri,  # a server-side Go request's URL is its request URI
        path=payload.path,
        headers=_header_map(payload.headers),
        body=payload.body,
        remote_addr=payload.client or "",
        request_uri=uri,
    )


def response_message(messages: Any, payload: HttpPostRequestPayload) -> Any:
    """The ``HTTPResponse`` message for a response payload."""
    return messages.HTTPResponse(
        status_code=payload.status_code, headers=_header_map(payload.headers), body=payload.body, **{"continue": True}
    )


def _block(name: str, answer: Any) -> PluginResult:
    body = bytes(answer.body)
    text = body.decode("utf-8", "replace")
    description = text.strip() if body and len(text) <= 200 and "\n" not in text.strip() else ""
    headers = dict(answer.headers)
    details: dict[str, Any] = {"status_code": answer.status_code, "headers": headers, "body": text}
    retry = next((value for key, value in headers.items() if key.lower() == "retry-after"), None)
    if retry is not None and retry.strip().isdigit():
        details["retry_after"] = int(retry)  # the middleware answers with Retry-After
    return PluginResult(
        continue_processing=False,
        violation=PluginViolation(
            reason="Rejected by mcpd plugin",
            description=description or f"rejected by plugin {name}",
            code="MCPD_REJECTED",
            details=details,
            http_status_code=answer.status_code or 403,
        ),
    )


def request_result(name: str, payload: HttpPreRequestPayload, answer: Any) -> PluginResult | None:
    """Our result for ``HandleRequest``'s answer."""
    if not getattr(answer, "continue"):
        return _block(name, answer)
    changed = payload
    if answer.HasField("modified_request"):
        new = answer.modified_request
        path, query = changed.path, changed.query_string
        if new.request_uri:
            path, _, query = new.request_uri.partition("?")
        elif new.path:
            path = new.path
        headers = _replace_headers(changed.headers, new.headers) if new.headers else changed.headers
        changed = changed.model_copy(
            update={"path": path, "query_string": query, "headers": headers, "body": bytes(new.body)}
        )
    if answer.headers:
        changed = changed.model_copy(update={"headers": _set_headers(changed.headers, answer.headers)})
    return None if changed == payload else PluginResult(modified_payload=changed)


def response_result(name: str, payload: HttpPostRequestPayload, answer: Any) -> PluginResult | None:
    """Our result for ``HandleResponse``'s answer."""
    if not getattr(answer, "continue"):
        return _block(name, answer)
    if not (answer.status_code or answer.headers or answer.body):
        return None  # the pass-through answer: no change
    body = bytes(answer.body) if answer.body or answer.status_code else payload.body
    changed = payload.model_copy(
        update={
            "status_code": answer.status_code or payload.status_code,
            "headers": _set_headers(payload.headers, answer.headers),
            "body": body,
        }
    )
    return None if changed == payload else PluginResult(modified_payload=changed)


def _custom_config(config: Mapping[str, Any]) -> dict[str, str]:
    # custom_config is map<string, string>: other values travel as JSON.
    return {key: value if isinstance(value, str) else orjson.dumps(value).decode() for key, value in config.items()}


# --------------------------------------------------------------------------
# One running plugin process
# --------------------------------------------------------------------------


class _Process:
    """A started plugin: its process, socket directory, channel and methods."""

    def __init__(self, process: subprocess.Popen[bytes], directory: str, channel: Any, empty: Any) -> None:
        self.process = process
        self.started = time.monotonic()
        self.directory = directory
        self.channel = channel
        self.empty = empty
        self.methods: dict[str, Callable[..., Awaitable[Any]]] = {}

    def method(self, name: str, response: Any) -> Callable[..., Awaitable[Any]]:
        found = self.methods.get(name)
        if found is None:
            found = self.methods[name] = self.channel.unary_unary(
                _SERVICE + name, request_serializer=_serialize, response_deserializer=response.FromString
            )
        return found

    async def close(self, timeout: float, logger: Any) -> None:
        """Stop RPC, close the channel, terminate the process group, then kill it."""
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                await self.method("Stop", self.empty)(self.empty(), timeout=1.0)
        with contextlib.suppress(Exception):
            await self.channel.close()
        await asyncio.to_thread(end_process_group, self.process, timeout)
        shutil.rmtree(self.directory, ignore_errors=True)


_running: weakref.WeakSet[McpdPlugin] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    # Plugins still running when the interpreter exits (no shutdown()) are
    # process groups of their own: they would outlive us.
    for plugin in list(_running):
        plugin.kill_process()


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _pump(stream: Any, logger: Any) -> None:
    """Log the plugin's output, line by line, until it closes."""
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                logger.info("%s", text)


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------


class McpdPlugin(RemotePlugin):
    """An mcpd plugin executable, run on ``http_pre_request`` and ``http_post_request``."""

    options_model = McpdOptions
    requires_hooks = False
    default_category = Category.CONTENT

    def __init__(self, config: PluginConfig) -> None:
        options = McpdOptions.model_validate(config.external or {})
        flows = [flow for flow in (options.flows or ["request", "response"]) if config.flow.includes(Flow(flow))]
        allowed = [_FLOW_HOOKS[flow] for flow in dict.fromkeys(flows)]
        if config.hooks is not None:
            extra = [hook.value for hook in config.hooks if hook not in allowed]
            if extra:
                raise ValueError(
                    f"kind mcpd runs on {' and '.join(h.value for h in allowed) or 'no hook'} "
                    f"(given flows and flow); not on {', '.join(extra)}"
                )
            allowed = list(config.hooks)
        super().__init__(config.model_copy(update={"hooks": allowed}))
        self.options = options
        self._aio, self._messages, self._empty = _grpc_modules()
        self._process: _Process | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supported: frozenset[HookType] = frozenset()
        self._metadata: dict[str, str] = {}
        self._stopping = False
        self._restart_task: asyncio.Task[None] | None = None
        self._delay = options.restart.initial_delay

    @property
    def metadata(self) -> dict[str, str]:
        """The plugin's ``GetMetadata`` answer (name, version, description, commit_hash, build_date)."""
        return dict(self._metadata)

    @property
    def supported_hooks(self) -> frozenset[HookType]:
        """The hooks the plugin's capabilities cover (known once started)."""
        return self._supported

    # -- life cycle ----------------------------------------------------

    async def initialize(self) -> None:
        """Start the plugin process and check it; raises if it cannot be used."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._process = await self._launch()
        self._loaded = True
        self.record_health(True)
        _running.add(self)

    async def shutdown(self) -> None:
        """Stop the plugin process (Stop, terminate, kill)."""
        self._stopping = True
        if self._restart_task is not None:
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._restart_task
        process, self._process = self._process, None
        if process is not None:
            await process.close(self.options.shutdown_grace, self.logger)
        self._loaded = False
        self.record_health(False)
        _running.discard(self)

    def kill_process(self) -> None:
        """End the plugin's process group now (blocking, bounded); for interpreter exit."""
        self._stopping = True
        process = self._process
        if process is not None:
            end_process_group(process.process, 1.0)

    async def _launch(self) -> _Process:
        options = self.options
        directory = tempfile.mkdtemp(prefix="mcp-plugin-mw-mcpd-")
        address = os.path.join(directory, "plugin.sock")
        argv = [options.exec, "--address", address, "--network", "unix", *options.args]
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, **options.env},
                cwd=options.cwd,
                start_new_session=True,  # its own process group, ended as a whole
            )
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise PluginError(f"cannot start {options.exec!r}: {exc.strerror or exc}", plugin_name=self.name) from exc
        threading.Thread(target=_pump, args=(popen.stdout, self.logger), daemon=True).start()
        process = _Process(popen, directory, self._aio.insecure_channel(f"unix://{address}"), self._empty)
        try:
            await self._handshake(process, address)
        except BaseException:
            await process.close(0.5, self.logger)
            raise
        threading.Thread(target=self._watch, args=(process,), daemon=True).start()
        return process

    async def _handshake(self, process: _Process, address: str) -> None:
        options, messages, empty = self.options, self._messages, self._empty
        deadline = time.monotonic() + options.start_timeout

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PluginError(
                    f"plugin {options.exec!r} not ready within {options.start_timeout:g}s", plugin_name=self.name
                )
            return left

        while not os.path.exists(address):
            code = process.process.poll()
            if code is not None:
                raise PluginError(
                    f"plugin {options.exec!r} {_exit_reason(code)} before listening", plugin_name=self.name
                )
            remaining()
            await asyncio.sleep(0.02)
        configure = messages.PluginConfig(custom_config=_custom_config(self.config))
        await process.method("Configure", empty)(configure, timeout=remaining(), wait_for_ready=True)
        while True:
            try:
                await process.method("CheckReady", empty)(empty(), timeout=min(remaining(), 1.0))
                break
            except self._aio.AioRpcError as exc:
                self.logger.debug("not ready yet: %s", exc.details())
                await asyncio.sleep(min(0.05, remaining()))
        metadata = await process.method("GetMetadata", messages.Metadata)(empty(), timeout=remaining())
        self._metadata = {
            field: getattr(metadata, field) for field in ("name", "version", "description", "commit_hash", "build_date")
        }
        if options.commit_hash and metadata.commit_hash != options.commit_hash:
            raise PluginError(
                f"commit hash mismatch: configured {options.commit_hash!r}, plugin reports {metadata.commit_hash!r}",
                plugin_name=self.name,
                code="COMMIT_HASH_MISMATCH",
            )
        capabilities = await process.method("GetCapabilities", messages.Capabilities)(empty(), timeout=remaining())
        flows = {messages.FLOW_REQUEST: HookType.HTTP_PRE_REQUEST, messages.FLOW_RESPONSE: HookType.HTTP_POST_REQUEST}
        supported = frozenset(flows[flow] for flow in capabilities.flows if flow in flows)
        skipped = [hook.value for hook in self.hooks if hook not in supported]
        if skipped:
            self.logger.info("plugin does not support %s; not called there", ", ".join(skipped))
        self._supported = supported

    # -- crashes and restarts --------------------------------------------

    def _watch(self, process: _Process) -> None:
        code = process.process.wait()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._exited, process, code)

    def _exited(self, process: _Process, code: int) -> None:
        if self._stopping or process is not self._process:
            return
        self._process = None
        reason = f"plugin process {process.process.pid} {_exit_reason(code)}"
        self.record_health(False, reason)
        self.logger.warning("%s", reason)
        if time.monotonic() - process.started >= self.options.restart.max_delay:
            self._delay = self.options.restart.initial_delay  # it ran long enough: start over
        if self.options.restart.enabled:
            self._restart_task = asyncio.get_running_loop().create_task(self._restart(process))

    async def _restart(self, dead: _Process) -> None:
        """Start the plugin again with backoff, until it runs or restarts run out."""
        await dead.close(0.5, self.logger)
        restart = self.options.restart
        while not self._stopping:
            if restart.max_restarts is not None and self._restarts >= restart.max_restarts:
                self.record_health(False, f"gave up after {self._restarts} restarts; {self._last_error}")
                self.logger.error("%s", self._last_error)
                return
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, restart.max_delay)
            if self._stopping:
                return
            self._restarts += 1
            try:
                process = await self._launch()
            except Exception as exc:
                self.record_health(False, f"restart {self._restarts} failed: {exc}")
                self.logger.warning("restart %d failed: %s", self._restarts, exc)
                continue
            if self._stopping:
                await process.close(0.5, self.logger)
                return
            self._process = process
            self.record_health(True)
            self.logger.info("plugin restarted (pid %d)", process.process.pid)
            return

    # -- calls -------------------------------------------------------------

    async def call(self, hook: HookType, payload: Payload, context: PluginContext) -> PluginResult | None:
        """Send the payload to ``HandleRequest`` or ``HandleResponse`` and map the answer."""
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            # gRPC channels belong to the loop that made them.
            return await _on_loop(loop, self.call(hook, payload, context))
        if hook not in self._supported:
            return None
        process = self._process
        if process is None:
            raise PluginError(f"plugin {self.name} is not running", plugin_name=self.name, code="PLUGIN_UNAVAILABLE")
        messages, timeout = self._messages, self.plugin_config.timeout
        try:
            if isinstance(payload, HttpPreRequestPayload):
                handle = process.method("HandleRequest", messages.HTTPResponse)
                answer = await handle(request_message(messages, payload), timeout=timeout)
                return request_result(self.name, payload, answer)
            if isinstance(payload, HttpPostRequestPayload):
                handle = process.method("HandleResponse", messages.HTTPResponse)
                answer = await handle(response_message(messages, payload), timeout=timeout)
                return response_result(self.name, payload, answer)
        except self._aio.AioRpcError as exc:
            raise PluginError(
                f"{exc.code().name}: {exc.details()}", plugin_name=self.name, code="PLUGIN_RPC_ERROR"
            ) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller's timeout or cancellation
            # gRPC cancels calls in flight when the channel of a dead process closes.
            raise PluginError(
                f"call interrupted: {self._last_error or 'the plugin process went away'}",
                plugin_name=self.name,
                code="PLUGIN_UNAVAILABLE",
            ) from None
        raise PluginError(f"kind mcpd does not handle {hook.value}", plugin_name=self.name)


async def _on_loop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))


# --------------------------------------------------------------------------
# Configuration and loading
# --------------------------------------------------------------------------


def split_entry(data: dict[str, Any], fields: Collection[str]) -> dict[str, Any]:
    """Validate a ``kind: mcpd`` entry's own keys and gather them in ``external``.

    Called by :class:`~mcp_plugin_mw.models.PluginConfig` before its own
    validation, with its field names; the keys may also come gathered under
    ``external`` already (as a dumped ``PluginConfig`` has them).

    :raises ValidationError: naming each bad key where it was written.
    """
    own = set(McpdOptions.model_fields)
    options = {key: value for key, value in data.items() if key in own or key not in fields}
    prefix: tuple[str, ...] = ()
    errors: list[InitErrorDetails] = []
    gathered = data.get("external")
    if gathered is not None:
        prefix = ("external",)
        if options or not isinstance(gathered, dict):
            message = "expected a mapping" if not isinstance(gathered, dict) else "give the keys in one place"
            errors.append(InitErrorDetails(type=PydanticCustomError("mcpd_entry", message), loc=prefix, input=None))
        options = gathered if isinstance(gathered, dict) else {}
    try:
        McpdOptions.model_validate(options)
    except ValidationError as exc:
        for error in exc.errors():
            custom = PydanticCustomError(error["type"], error["msg"])
            errors.append(InitErrorDetails(type=custom, loc=prefix + tuple(error["loc"]), input=error["input"]))
    if errors:
        raise ValidationError.from_exception_data(PluginConfig.__name__, errors)
    return {key: value for key, value in data.items() if key not in options and key != "external"} | {
        "external": options
    }


def load(config: PluginConfig) -> McpdPlugin:
    """Build the plugin for a ``kind: mcpd`` entry (the loader calls this).

    :raises PluginLoadError: if grpcio or mcpd-plugins is missing, or the
        hooks do not fit the flows.
    """
    try:
        return McpdPlugin(config)
    except ImportError as exc:
        raise PluginLoadError(getattr(exc, "hint", None) or str(exc)) from exc
    except ValueError as exc:
        raise PluginLoadError(str(exc)) from exc
