"""
Plugins in a child process
==========================

``transport: subprocess`` starts the plugin as a child process, talks
protocol 1 to it on 127.0.0.1, restarts it when it dies, and stops it on
shutdown:

.. code-block:: yaml

    - name: heavy
      kind: external
      transport: subprocess
      exec: mcp-plugin-mw                   # looked up on PATH (relative paths from cwd)
      args: [serve-plugin, my.module.Plugin]
      env: {MODEL_DIR: /models}             # added to the app's environment
      cwd: /srv/plugins
      start_timeout: 10                     # seconds for PORT= and a 200 from /health
      health_interval: 10                   # seconds between health checks; 0: none
      shutdown_grace: 5                     # seconds between SIGTERM and SIGKILL
      restart: {initial_delay: 0.5, max_delay: 30, max_restarts: 10}
      hooks: [tool_pre_invoke]

The child prints ``PORT=<n>`` as its first line on stdout and then serves
protocol 1 on ``127.0.0.1:<n>``; later stdout and stderr lines are logged
(INFO and WARNING) to ``mcp_plugin_mw.external.<name>``. It gets
``MCP_PLUGIN_MW_SERVE_TOKEN`` in its environment (random, unless ``env``
sets it) and every request carries ``Authorization: Bearer <token>``, so
that other local users cannot call it; ``serve-plugin`` checks it. With
OpenTelemetry installed, each call also carries the current trace context
as W3C ``traceparent`` (and ``tracestate``) headers, which ``serve-plugin``
makes current while the plugin runs: the child's spans join the hook's trace.

Life cycle:

* ``initialize()`` starts the child and waits for it; if it does not come
  up within ``start_timeout`` it is killed and the error names what was
  awaited.
* A watcher thread per plugin waits on the child. When it dies, calls fail
  at once (the plugin's mode decides what that means) and the child is
  started again after ``initial_delay``, doubling up to ``max_delay`` while
  restarts keep failing or the child keeps dying young; one that ran for at
  least ``max_delay`` starts from ``initial_delay`` again. After
  ``max_restarts`` attempts (unbounded when unset) the plugin stays down.
* The child runs in its own process group. Shutdown sends SIGTERM to the
  group, waits up to ``shutdown_grace`` for every member to exit, then
  sends SIGKILL to the group, so processes the child started go too (unless
  they left the group with ``setsid``). Children still running when the
  interpreter exits are stopped the same way, with a grace of at most 1 s.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
import weakref
from typing import IO, Literal

from pydantic import DirectoryPath, Field, model_validator

from ..models import HookType, Payload, PluginConfig, PluginContext, PluginError, PluginResult
from .base import TOKEN_ENV, ExternalOptions, RemotePlugin
from .http import Unreachable, Wire, in_daemon_thread

__all__ = ["RestartOptions", "SubprocessOptions", "SubprocessPlugin"]


_PORT_LINE = re.compile(r"PORT=(\d{1,5})")
_TAIL_LINES = 20
_MAX_LINE = 64 * 1024


class RestartOptions(ExternalOptions):
    """``restart:``: the backoff between restarts of a dead child."""

    initial_delay: float = Field(default=0.5, gt=0)
    max_delay: float = Field(default=30.0, gt=0)
    max_restarts: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RestartOptions:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must not be less than initial_delay")
        return self


class SubprocessOptions(ExternalOptions):
    """The keys of ``transport: subprocess``."""

    transport: Literal["subprocess"]
    exec: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: DirectoryPath | None = None
    start_timeout: float = Field(default=10.0, gt=0)
    health_interval: float = Field(default=10.0, ge=0)
    shutdown_grace: float = Field(default=5.0, ge=0)
    restart: RestartOptions = Field(default_factory=RestartOptions)


def exit_reason(code: int) -> str:
    """How a child process ended, from its return code, in words."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _wait(process: subprocess.Popen[bytes], seconds: float) -> int | None:
    """The exit code, or None if the process still runs after ``seconds``."""
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False if the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # only when the pid was reused by someone else's group
        return False
    return True


class _Child:
    """One run of the plugin's process, with the threads that read its output."""

    def __init__(self, process: subprocess.Popen[bytes], plugin: SubprocessPlugin) -> None:
        self.process = process
        self.pid = process.pid
        self.started = time.monotonic()
        self.url: str | None = None
        self.first_line: queue.Queue[str | None] = queue.Queue(maxsize=1)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        assert process.stdout is not None
        assert process.stderr is not None
        logger = plugin.logger
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(process.stdout, logger), daemon=True),
            threading.Thread(target=self._read_stderr, args=(process.stderr, logger), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self, stream: IO[bytes], logger: logging.Logger) -> None:
        first = True
        for raw in iter(lambda: stream.readline(_MAX_LINE), b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if first:
                first = False
                self.first_line.put(line)
            else:
                logger.info("%s", line)
        stream.close()
        if first:
            self.first_line.put(None)

    def _read_stderr(self, stream: IO[bytes], logger: logging.Logger) -> None:
        for raw in iter(lambda: stream.readline(_MAX_LINE), b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stderr_tail.append(line)
            logger.warning("%s", line)
        stream.close()

    def exited(self) -> str | None:
        """How the process ended, or None while it runs."""
        code = self.process.poll()
        return None if code is None else f"process {self.pid} {exit_reason(code)}"

    def stderr_excerpt(self) -> str:
        """The last lines of stderr, for error messages (waits briefly for them)."""
        if self.process.poll() is not None:
            self._readers[1].join(0.5)
        lines = [line for line in self.stderr_tail if line.strip()][-5:]
        return f"; stderr: {' | '.join(lines)}" if lines else ""

    def terminate(self, grace: float) -> None:
        """SIGTERM the group, wait up to ``grace`` for all of it, then SIGKILL it."""
        end_process_group(self.process, grace)

    def kill(self) -> None:
        """SIGKILL the group and reap the child."""
        end_process_group(self.process, 0.0)


def end_process_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """End a child started in its own process group, and everything it started.

    SIGTERM to the group, up to ``grace`` seconds for all of it to go, then
    SIGKILL to the group and a bounded wait to reap the child.
    """
    deadline = time.monotonic() + grace
    if grace > 0 and _signal_group(process.pid, signal.SIGTERM):
        _wait(process, grace)
        # Processes the child started may outlive it; give them the rest of the grace.
        while time.monotonic() < deadline and _signal_group(process.pid, 0):
            time.sleep(0.02)
    _signal_group(process.pid, signal.SIGKILL)
    # Bounded: a process in uninterruptible sleep may take a while to go.
    _wait(process, 5.0)


_running: weakref.WeakSet[SubprocessPlugin] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for plugin in list(_running):
        plugin.stop_process(grace=1.0)


class SubprocessPlugin(RemotePlugin):
    """A plugin served over protocol 1 by a child process it supervises."""

    options_model = SubprocessOptions

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.options = self.parse_options(SubprocessOptions)
        self._token = self.options.env.get(TOKEN_ENV) or secrets.token_urlsafe(24)
        self.wire = Wire(self.name, {"authorization": f"Bearer {self._token}"})
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._child: _Child | None = None
        self._url: str | None = None
        self._watcher: threading.Thread | None = None
        self._delay = self.options.restart.initial_delay
        self._down = "not started"
        """Why calls fail at once: the child's end or the last failed restart."""

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs, else None."""
        child = self._child
        return child.pid if child is not None and child.process.poll() is None else None

    @property
    def url(self) -> str | None:
        """Where the child serves protocol 1 while it is up, else None."""
        return self._url

    # ------------------------------------------------------------------
    # Plugin interface
    # ------------------------------------------------------------------

    async def initialize(self) -> None:
        """Start the child and wait until it serves; then watch over it."""
        await in_daemon_thread(self._start)

    async def call(self, hook: HookType, payload: Payload, context: PluginContext) -> PluginResult | None:
        """Run ``hook`` in the child; fails at once while it is down."""
        url = self._url
        if url is None:
            raise PluginError(f"plugin {self.name!r}: process not running ({self._down})", plugin_name=self.name)
        try:
            result = await self.wire.call(url, hook, payload, context)
        except Unreachable:
            self.record_health(False)
            raise
        self._healthy = True  # it answered; a refused call may have marked it down
        return result

    async def shutdown(self) -> None:
        """Stop the child (and its process group) and close the connections."""
        await in_daemon_thread(self.stop_process)
        await self.wire.aclose()

    # ------------------------------------------------------------------
    # Supervision (blocking; runs on daemon threads)
    # ------------------------------------------------------------------

    def _start(self) -> None:
        child = self._launch()
        with self._lock:
            if self._stopping.is_set():
                return
            self._url = child.url
        self._loaded = True
        self.record_health(True)
        _running.add(self)
        self._watcher = threading.Thread(target=self._watch, name=f"mcp-plugin-mw-{self.name}", daemon=True)
        self._watcher.start()

    def _launch(self) -> _Child:
        """Start a child and wait until ``/health`` answers 200.

        :raises PluginError: naming what did not happen in time; the child is
            gone by then.
        """
        options = self.options
        env = {**os.environ, "PYTHONUNBUFFERED": "1", TOKEN_ENV: self._token, **options.env}
        with self._lock:
            if self._stopping.is_set():
                raise PluginError(f"plugin {self.name!r}: shutting down", plugin_name=self.name)
            try:
                process = subprocess.Popen(
                    [options.exec, *options.args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=options.cwd,
                    env=env,
                    process_group=0,
                )
            except OSError as exc:
                raise PluginError(
                    f"plugin {self.name!r}: cannot start {options.exec!r}: {exc.strerror or exc}",
                    plugin_name=self.name,
                ) from None
            child = self._child = _Child(process, self)
        try:
            self._await_ready(child)
        except PluginError:
            child.terminate(min(options.shutdown_grace, 1.0))
            raise
        self.logger.info("plugin %s: process %d serves on %s", self.name, child.pid, child.url)
        return child

    def _await_ready(self, child: _Child) -> None:
        timeout = self.options.start_timeout
        deadline = time.monotonic() + timeout
        try:
            line = child.first_line.get(timeout=timeout)
        except queue.Empty:
            raise self._failure(f"no PORT= line within {timeout:g}s", child) from None
        if line is None:
            _wait(child.process, 0.5)  # for its exit code
            raise self._failure(f"{child.exited() or 'closed its stdout'} before printing PORT=<n>", child)
        match = _PORT_LINE.fullmatch(line.strip())
        if match is None or not 0 < int(match.group(1)) < 65536:
            excerpt = line if len(line) <= 80 else line[:80] + "..."
            raise self._failure(f"first stdout line is {excerpt!r}, expected PORT=<n>", child)
        child.url = f"http://127.0.0.1:{int(match.group(1))}"
        try:
            self.wire.wait_ready(child.url, timeout, child.exited, deadline=deadline)
        except PluginError as exc:
            raise self._failure(exc.message.removeprefix(f"plugin {self.name!r}: "), child) from None

    def _failure(self, what: str, child: _Child) -> PluginError:
        return PluginError(f"plugin {self.name!r}: {what}{child.stderr_excerpt()}", plugin_name=self.name)

    def _watch(self) -> None:
        """Wait on the child; check its health meanwhile; restart it when it dies."""
        interval = self.options.health_interval or None
        while not self._stopping.is_set():
            child = self._child
            if child is None:
                return
            try:
                code = child.process.wait(interval)
            except subprocess.TimeoutExpired:
                self._check(child)
                continue
            if self._stopping.is_set():
                return
            self._url = None
            self._down = f"process {child.pid} {exit_reason(code)}"
            self.record_health(False, self._down)
            self.logger.warning("plugin %s: %s", self.name, self._down)
            child.kill()  # whatever it started goes with it
            if time.monotonic() - child.started >= self.options.restart.max_delay:
                self._delay = self.options.restart.initial_delay
            if not self._restart():
                return

    def _restart(self) -> bool:
        """Start the child again with backoff; False if stopping or out of restarts."""
        restart = self.options.restart
        while True:
            if restart.max_restarts is not None and self._restarts >= restart.max_restarts:
                self._down = f"gave up after {self._restarts} restarts; {self._down}"
                self.record_health(False, self._down)
                self.logger.error("plugin %s: %s", self.name, self._down)
                return False
            if self._stopping.wait(self._delay):
                return False
            self._delay = min(self._delay * 2, restart.max_delay)
            self._restarts += 1
            try:
                child = self._launch()
            except PluginError as exc:
                self._down = exc.message.removeprefix(f"plugin {self.name!r}: ")
                self.record_health(False, exc.message)
                self.logger.warning("%s", exc.message)
                continue
            with self._lock:
                if self._stopping.is_set():
                    return False
                self._url = child.url
            self.record_health(True)
            return True

    def _check(self, child: _Child) -> None:
        url = child.url
        if url is None:
            return
        problem = self.wire.check(url, min(self.options.health_interval, 5.0))
        if problem is None:
            self.record_health(True)
        else:
            self.record_health(False, f"GET {url}/health: {problem}")

    def stop_process(self, grace: float | None = None) -> None:
        """Stop supervising and end the child's process group (blocking, bounded)."""
        grace = self.options.shutdown_grace if grace is None else grace
        self._stopping.set()
        with self._lock:
            child, self._url = self._child, None
        if child is not None:
            child.terminate(grace)
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(grace + 1.0)
        self._loaded = False
        _running.discard(self)
