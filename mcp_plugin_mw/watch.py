"""
Reload triggers
===============

What makes a :class:`~mcp_plugin_mw.manager.PluginManager` reload by itself:

* ``plugin_settings.watch: true``: a daemon thread watches the configuration
  file (with ``watchfiles`` when it is installed, else by polling its
  modification time and size every ``watch_interval`` seconds) and reloads
  when it changes. A reload that fails keeps the running chain and logs the
  problems; the next change is tried again.
* ``plugin_settings.reload_on_sighup: true``: SIGHUP reloads, the way servers
  reread their configuration. The handler only wakes a thread, which reloads.

Both are off by default, and both only start for a configuration read from a
file.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Watcher"]

logger = logging.getLogger("mcp_plugin_mw.watch")


class Watcher:
    """Reloads ``reload`` when ``path`` changes or on SIGHUP, until :meth:`stop`.

    :param path: the configuration file.
    :param reload: what to call; the manager's ``reload``, held weakly.
    :param watch: watch the file.
    :param interval: seconds between polls, without ``watchfiles``.
    :param sighup: reload on SIGHUP (only from the main thread).
    """

    def __init__(self, path: Path, reload: Callable[[], None], *, watch: bool, interval: float, sighup: bool) -> None:
        self.path = path
        self.interval = interval
        self._reload = weakref.WeakMethod(reload) if hasattr(reload, "__self__") else lambda: reload
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._previous_handler: Any = None
        if watch:
            self._spawn(self._watch, "mcp-plugin-mw-watch")
        if sighup:
            self._install_sighup()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop watching (and put back the SIGHUP handler found); a reload already under way finishes."""
        self._stop.set()
        self._wake.set()
        previous, self._previous_handler = self._previous_handler, None
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, previous)

    def _run_reload(self, why: str) -> None:
        reload = self._reload()
        if reload is None:  # the manager is gone
            self.stop()
            return
        logger.info("reloading plugins: %s", why)
        try:
            reload()
        except Exception:
            # The running chain stays; the operator sees why in the log.
            logger.exception("reloading plugins failed; the running plugins are kept")

    def _watch(self) -> None:
        try:
            import watchfiles
        except ImportError:
            self._poll()
            return
        for _changes in watchfiles.watch(self.path, stop_event=self._stop, debounce=200, rust_timeout=500):
            if self._stop.is_set():
                return
            self._run_reload(f"{self.path} changed")

    def _poll(self) -> None:
        seen = _signature(self.path)
        while not self._stop.wait(self.interval):
            now = _signature(self.path)
            if now != seen:
                seen = now
                self._run_reload(f"{self.path} changed")

    def _install_sighup(self) -> None:
        if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
            logger.warning("reload_on_sighup needs a main thread with SIGHUP; not installed")
            return

        def on_sighup(signum: int, frame: Any) -> None:
            self._wake.set()  # reloading in a signal handler could deadlock

        self._previous_handler = signal.signal(signal.SIGHUP, on_sighup)
        self._spawn(self._on_wake, "mcp-plugin-mw-sighup")

    def _on_wake(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            self._run_reload("SIGHUP")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino
