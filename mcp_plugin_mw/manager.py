"""
Plugin manager
==============

:class:`PluginManager` loads a configuration, builds its plugins and runs them
on hooks, from async code (:meth:`~PluginManager.invoke`) or from any thread
with no event loop (:meth:`~PluginManager.invoke_sync`).

Managers are ordinary objects: several can live side by side (one per app,
one per test), each with its own plugins. Plugins' ``initialize`` runs once,
before the first hook call (or on :meth:`~PluginManager.initialize`), and
``shutdown`` once, on :meth:`~PluginManager.close`.

:meth:`~PluginManager.reload` builds and starts a whole new chain from the
configuration, then swaps it in at once: an invocation runs entirely on the
chain it started on, and the plugins the new chain no longer holds are shut
down once the invocations still running on the old one are done. Plugins
whose entries did not change are kept as they are (running, with their
state), not restarted. A bad configuration raises :class:`ConfigError` and
changes nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _threads, telemetry
from .config import ENV_PREFIX, ConfigError, ConfigSource, load_config
from .control import ControlChannel
from .executor import Executor
from .loader import PluginLoadError, load_plugin
from .models import Config, GlobalContext, HookResult, HookType, PluginMode, PluginSettings
from .plugin import Plugin, PluginStatus
from .watch import Watcher

__all__ = ["PluginManager"]

logger = logging.getLogger("mcp_plugin_mw.manager")

Observer = Callable[[HookType, GlobalContext, HookResult], object]
"""Called with each hook invocation's result (see :meth:`PluginManager.add_observer`)."""


class PluginStartError(RuntimeError):
    """A plugin's ``initialize`` failed; ``plugin_name`` says which."""

    def __init__(self, message: str, plugin_name: str) -> None:
        super().__init__(message)
        self.plugin_name = plugin_name


class PluginManager:
    """Loads plugins from a configuration and runs them on hooks.

    :param config: a YAML path, a mapping of the YAML's shape, a ``Config``,
        or None for the file named by ``MCP_PLUGIN_MW_CONFIG`` (no plugins if
        unset).
    :param settings: ``plugin_settings`` keys that override the file and the
        environment.
    :param environ: the environment to read instead of ``os.environ``.
    :raises ConfigError: listing every problem in the configuration,
        including plugins that cannot be loaded.
    """

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        settings: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config: Config = load_config(config, settings=settings, environ=environ)
        # What a reload re-reads.
        self._source, self._overrides, self._environ = config, settings, environ
        self._plugins: list[Plugin] = []
        self._registered: list[Plugin] = []
        self._reloading = threading.Lock()
        self._lock = threading.Lock()
        self._started: concurrent.futures.Future[None] | None = None
        self._ready = False
        self._closed = False
        self._initialized: list[Plugin] = []
        # Callbacks of the operator's (metrics, say): they outlive reloads.
        self._watchers: list[Observer] = []
        if self.config.plugin_settings.enabled:
            self._plugins = self._load(self.config)
        self._build()
        self._watcher: Watcher | None = None
        self._start_watching()
        control = self.settings.control
        self._control = ControlChannel(self, control.redis_url, control.channel) if control is not None else None

    def _start_watching(self) -> None:
        settings = self.settings
        if not (settings.watch or settings.reload_on_sighup):
            return
        source = self._source
        if source is None:
            environ = os.environ if self._environ is None else self._environ
            source = environ.get(ENV_PREFIX + "CONFIG") or None
        if not isinstance(source, str | os.PathLike):
            logger.warning("watch and reload_on_sighup need a configuration file; not started")
            return
        self._watcher = Watcher(
            Path(source),
            self.reload,
            watch=settings.watch,
            interval=settings.watch_interval,
            sighup=settings.reload_on_sighup,
        )

    @staticmethod
    def _load(config: Config) -> list[Plugin]:
        plugins: list[Plugin] = []
        problems: list[str] = []
        for index, entry in enumerate(config.plugins):
            try:
                plugins.append(load_plugin(entry))
            except PluginLoadError as exc:
                problems.append(f"plugins[{index}] ({entry.name}): {exc}")
        if problems:
            raise ConfigError(problems)
        return plugins

    @property
    def settings(self) -> PluginSettings:
        """The effective ``plugin_settings``."""
        return self.config.plugin_settings

    @property
    def plugins(self) -> list[Plugin]:
        """The plugins, in configuration and registration order."""
        return list(self._plugins)

    def register(self, plugin: Plugin) -> None:
        """Add a plugin built by the caller.

        Its ``initialize`` runs with the others', or at once (sync) if the
        manager has already started.
        """
        if any(existing.name == plugin.name for existing in self._plugins):
            raise ValueError(f"a plugin named {plugin.name!r} is already registered")
        missing = [hook.value for hook in plugin.hooks if not callable(getattr(plugin, hook.value, None))]
        if missing:
            raise ValueError(f"plugin {plugin.name!r} lists hooks it does not implement: {', '.join(missing)}")
        if self._ready:
            _run_blocking(plugin.initialize())
            self._initialized.append(plugin)
        with self._lock:
            self._plugins.append(plugin)
            self._registered.append(plugin)
            self._build()

    def _build(self) -> None:
        # Callers hold the lock, or are the constructor.
        # With ``enabled: false`` even registered plugins stay out of the chains.
        active = self._plugins if self.settings.enabled else []
        executor = Executor(active, self.settings)
        # Plugins that want every finished chain (the audit log records each
        # plugin's decision, including chains stopped before it ran).
        found = (getattr(plugin, "observe_result", None) for plugin in active)
        observers: list[Observer] = [observe for observe in found if callable(observe)] + self._watchers
        self._executor = executor
        self._generation = _Generation()
        # One reference, swapped at once: an invocation runs on one chain
        # throughout, and its generation counts it until it is done.
        self._chain: tuple[Executor, list[Observer], _Generation] = (executor, observers, self._generation)

    def add_observer(self, observe: Observer) -> None:
        """Call ``observe(hook, context, result)`` after every hook invocation that ran plugins.

        For bookkeeping (metrics, logs): it runs on the request's path, and an
        exception it raises is logged, never passed to the request.
        """
        with self._lock:
            self._watchers = [*self._watchers, observe]
            self._build()

    def status(self) -> dict[str, PluginStatus]:
        """Each plugin's health, by name, in configuration order."""
        return {plugin.name: plugin.status() for plugin in self._plugins}

    @property
    def active_hooks(self) -> frozenset[HookType]:
        """The hooks at least one plugin would run on."""
        return self._executor.active_hooks

    def has_hooks_for(self, hook: HookType | str) -> bool:
        """Whether any plugin would run on ``hook``; cheap enough for every request."""
        return self._executor.has_hooks_for(hook)

    # ------------------------------------------------------------------
    # Invoking hooks
    # ------------------------------------------------------------------

    async def invoke(
        self,
        hook: HookType | str,
        payload: Any,
        global_context: GlobalContext | None = None,
    ) -> HookResult:
        """Run the plugins on ``hook`` in the running event loop.

        Pass the same ``global_context`` to a request's pre and post hooks so
        that plugin state carries over.
        """
        executor = self._executor
        if not executor.has_hooks_for(hook):
            return HookResult()
        if not self._ready:
            await self.ainitialize()
        if type(hook) is not HookType:
            hook = HookType(hook)
        context = global_context or _new_context()
        executor, observers, generation = self._chain
        generation.enter()
        try:
            span = telemetry.start(hook, context)
            if span is None:
                return _finish(hook, context, observers, await executor.run(hook, payload, context))
            try:
                result = await executor.run(hook, payload, context)
            except BaseException as error:
                telemetry.fail(span, error)  # the span ends on errors and cancellation too
                raise
            telemetry.finish(span, result)
            return _finish(hook, context, observers, result)
        finally:
            generation.leave()

    def invoke_sync(
        self,
        hook: HookType | str,
        payload: Any,
        global_context: GlobalContext | None = None,
    ) -> HookResult:
        """Run the plugins on ``hook`` from synchronous code, on any thread.

        A chain of sync plugins runs on the calling thread; a chain holding
        an async plugin runs on the process's background event loop.
        """
        executor = self._executor
        if not executor.has_hooks_for(hook):
            return HookResult()
        if not self._ready:
            self.initialize()
        if type(hook) is not HookType:
            hook = HookType(hook)
        context = global_context or _new_context()
        executor, observers, generation = self._chain
        generation.enter()
        try:
            span = telemetry.start(hook, context)
            if span is None:
                return _finish(hook, context, observers, executor.run_sync(hook, payload, context))
            try:
                result = executor.run_sync(hook, payload, context)
            except BaseException as error:
                telemetry.fail(span, error)
                raise
            telemetry.finish(span, result)
            return _finish(hook, context, observers, result)
        finally:
            generation.leave()

    # ------------------------------------------------------------------
    # Changes at runtime
    # ------------------------------------------------------------------

    def set_mode(self, name: str, mode: PluginMode | str, *, publish: bool = True) -> None:
        """Change one plugin's mode until the next reload (which re-reads the configuration).

        With ``plugin_settings.control``, every process sharing the channel
        makes the same change (unless ``publish`` is False).

        :raises KeyError: no plugin has that name.
        :raises ValueError: ``mode`` is not a mode.
        """
        try:
            new_mode = PluginMode(mode)
        except ValueError:
            modes = ", ".join(m.value for m in PluginMode)
            raise ValueError(f"{mode!r} is not a mode; modes are: {modes}") from None
        with self._lock:
            plugin = next((p for p in self._plugins if p.name == name), None)
            if plugin is None:
                raise KeyError(f"no plugin is named {name!r}")
            plugin._plugin_config = plugin.plugin_config.model_copy(update={"mode": new_mode})
            self._build()
        logger.info("plugin %s: mode set to %s", name, new_mode.value)
        if publish and self._control is not None:
            self._control.publish("set_mode", name=name, mode=new_mode.value)

    def reload(self, config: ConfigSource = None, *, publish: bool = True) -> None:
        """Re-read the configuration (or load ``config``) and swap the new chain in; see the module docstring.

        With ``plugin_settings.control``, every process sharing the channel
        reloads too (unless ``publish`` is False): each re-reads its own
        source, or loads ``config`` when it is a mapping.

        :raises ConfigError: the configuration is bad, or one of its new
            plugins cannot start; the running chain is left as it was.
        """
        _run_blocking(self.areload(config, publish=publish))

    async def areload(self, config: ConfigSource = None, *, publish: bool = True) -> None:
        """:meth:`reload` in the running event loop."""
        while not self._reloading.acquire(blocking=False):
            await asyncio.sleep(0.01)  # one reload at a time
        try:
            await self._reload(config)
        finally:
            self._reloading.release()
        if publish and self._control is not None:
            shared = dict(config) if isinstance(config, Mapping) else None
            self._control.publish("reload", **({"config": shared} if shared is not None else {}))

    async def _reload(self, config: ConfigSource) -> None:
        if self._closed:
            raise RuntimeError("this PluginManager is closed")
        source = self._source if config is None else config
        new_config = load_config(source, settings=self._overrides, environ=self._environ)
        plugins, fresh = self._plan(new_config)
        started = self._ready
        if started:
            await self._start_fresh(fresh)
        with self._lock:
            old = self._generation
            kept = set(map(id, plugins))
            retired = [p for p in self._plugins if id(p) not in kept and p not in self._registered]
            self.config, self._source = new_config, source
            self._plugins = [*plugins, *self._registered]
            if started:
                self._initialized = [p for p in self._initialized if p not in retired] + fresh
            self._build()
        logger.info("plugins reloaded: %s", ", ".join(p.name for p in self._plugins) or "none")
        # The plugins left behind stop once nothing runs on the old chain.
        await old.drained(self.settings.plugin_timeout * 2)
        await _shutdown([p for p in retired if started])

    def _plan(self, config: Config) -> tuple[list[Plugin], list[Plugin]]:
        """The plugins of ``config``: kept ones whose entries did not change, new ones loaded; and the new ones."""
        if not config.plugin_settings.enabled:
            return [], []
        current = {p.name: p for p in self._plugins if p not in self._registered}
        plugins: list[Plugin] = []
        fresh: list[Plugin] = []
        problems: list[str] = []
        for index, entry in enumerate(config.plugins):
            prior = current.get(entry.name)
            if prior is not None and self._entry_of(prior) == entry:
                prior._plugin_config = entry  # a mode set at runtime is dropped
                plugins.append(prior)
                continue
            try:
                plugin = load_plugin(entry)
            except PluginLoadError as exc:
                problems.append(f"plugins[{index}] ({entry.name}): {exc}")
                continue
            plugins.append(plugin)
            fresh.append(plugin)
        if problems:
            raise ConfigError(problems)
        return plugins, fresh

    def _entry_of(self, plugin: Plugin) -> Any:
        """The configuration entry ``plugin`` was loaded from (before any runtime change)."""
        return next((entry for entry in self.config.plugins if entry.name == plugin.name), None)

    async def _start_fresh(self, fresh: list[Plugin]) -> None:
        started: list[Plugin] = []
        for plugin in fresh:
            try:
                outcome = plugin.initialize()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                await _shutdown(started)
                raise ConfigError([f"plugin {plugin.name!r} failed to start: {exc}"]) from exc
            started.append(plugin)

    # ------------------------------------------------------------------
    # Life cycle
    # ------------------------------------------------------------------

    def initialize(self) -> None:
        """Initialize every plugin once; async initializers run on the background loop."""
        owner, started = self._claim_start()
        if owner:
            self._settle_start(started, lambda: _run_blocking(self._initialize_all()))
        else:
            started.result()

    async def ainitialize(self) -> None:
        """Initialize every plugin once, in the running event loop."""
        owner, started = self._claim_start()
        if not owner:
            await asyncio.wrap_future(started)
            return
        try:
            await self._initialize_all()
        except BaseException as exc:
            started.set_exception(exc)
            raise
        self._ready = True
        started.set_result(None)

    def _claim_start(self) -> tuple[bool, concurrent.futures.Future[None]]:
        with self._lock:
            if self._closed:
                raise RuntimeError("this PluginManager is closed")
            if self._started is not None:
                return False, self._started
            self._started = concurrent.futures.Future()
            return True, self._started

    def _settle_start(self, started: concurrent.futures.Future[None], run: Any) -> None:
        try:
            run()
        except BaseException as exc:
            started.set_exception(exc)
            raise
        self._ready = True
        started.set_result(None)

    async def _initialize_all(self) -> None:
        for plugin in self._plugins:
            try:
                outcome = plugin.initialize()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                prefix = f"plugin {plugin.name!r}"
                message = str(exc) if str(exc).startswith(prefix) else f"{prefix} failed to initialize: {exc}"
                raise PluginStartError(message, plugin.name) from exc
            # Whatever started must be stopped on close, even if a later
            # plugin fails to start (a child process would outlive the app).
            self._initialized.append(plugin)

    def close(self) -> None:
        """Shut every initialized plugin down; further invocations raise."""
        if self._begin_close():
            _run_blocking(self._shutdown_all())

    async def aclose(self) -> None:
        """Like :meth:`close`, in the running event loop."""
        if self._begin_close():
            await self._shutdown_all()

    def _begin_close(self) -> bool:
        if self._watcher is not None:
            self._watcher.stop()
        if self._control is not None:
            self._control.close()
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            # Invocations after this find the manager not ready, try to start
            # it and raise: a closed guardrail must not silently pass traffic.
            self._ready = False
            return bool(self._initialized)

    async def _shutdown_all(self) -> None:
        initialized, self._initialized = self._initialized, []
        await _shutdown(initialized)

    def __enter__(self) -> PluginManager:
        self.initialize()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> PluginManager:
        await self.ainitialize()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        names = ", ".join(plugin.name for plugin in self._plugins)
        return f"<PluginManager [{names}]>"


def _new_context() -> GlobalContext:
    return GlobalContext(request_id=uuid.uuid4().hex)


def _finish(
    hook: HookType,
    context: GlobalContext,
    observers: list[Observer],
    result: HookResult,
) -> HookResult:
    for observe in observers:
        try:
            observe(hook, context, result)
        except Exception:
            # An observer is bookkeeping: it must never fail a request.
            logger.exception("an observer failed on %s", hook)
    return result


async def _shutdown(plugins: list[Plugin]) -> None:
    for plugin in reversed(plugins):
        try:
            outcome = plugin.shutdown()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            # One plugin failing to let go must not keep the rest open.
            logger.exception("plugin %s failed to shut down", plugin.name)


class _Generation:
    """The invocations running on one chain, so that its retired plugins stop after the last."""

    __slots__ = ("_running",)

    def __init__(self) -> None:
        # One item per invocation running: list.append and list.pop are
        # atomic, so a call pays two C calls and no lock.
        self._running: list[None] = []

    def enter(self) -> None:
        self._running.append(None)

    def leave(self) -> None:
        self._running.pop()

    async def drained(self, timeout: float) -> None:
        """Wait until nothing runs on this chain, for at most ``timeout`` seconds."""
        # Polled: the reloader waits, so that the calls pay nothing more.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._running:
            if loop.time() > deadline:
                logger.warning("invocations still run on the replaced chain after %gs: stopping its plugins", timeout)
                return
            await asyncio.sleep(0.005)


def _run_blocking(awaitable: Awaitable[Any] | None) -> Any:
    """Wait for ``awaitable`` from sync code, on the background loop."""
    if not inspect.isawaitable(awaitable):
        return awaitable

    async def wrapped() -> Any:
        return await awaitable

    return asyncio.run_coroutine_threadsafe(wrapped(), _threads.background_loop()).result()
