"""
Background event loop and worker threads
========================================

Sync callers (WSGI apps) run async plugins on one event loop per process,
kept in a daemon thread, so that an async plugin can hold one
``httpx.AsyncClient`` (or any loop-bound resource) across calls made from many
request threads. ``asyncio.run`` per call would give each call a new loop and
break such clients.

Blocking sync plugins run on :class:`DaemonPool` threads. Unlike
``ThreadPoolExecutor`` workers, these are daemon threads that the interpreter
does not join at exit, so a plugin that never returns (the case its timeout
exists for) cannot hang shutdown.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["DaemonPool", "background_loop", "daemon_pool"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pool: DaemonPool | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop, started on first use."""
    global _loop
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            threading.Thread(target=run, name="mcp-plugin-mw-loop", daemon=True).start()
            ready.wait()
            _loop = new_loop
        return _loop


def in_background_loop() -> bool:
    """Whether the caller runs on the background loop's thread."""
    loop = _loop
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class DaemonPool:
    """A growing pool of daemon worker threads.

    :param max_workers: the most threads alive at once; further work waits.
    """

    def __init__(self, max_workers: int = 64) -> None:
        self._max_workers = max_workers
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on a worker thread."""
        future: Future[T] = Future()
        self._work.put((future, fn, args))
        with self._lock:
            if self._idle == 0 and self._workers < self._max_workers:
                self._workers += 1
                threading.Thread(target=self._worker, name="mcp-plugin-mw-worker", daemon=True).start()
            else:
                # Claim an idle worker now so a burst of submissions starts
                # enough threads instead of counting the same idle one twice.
                self._idle = max(self._idle - 1, 0)
        return future

    def _worker(self) -> None:
        while True:
            future, fn, args = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1


def daemon_pool() -> DaemonPool:
    """The process's shared pool for blocking plugins."""
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = DaemonPool()
    return _pool


def _forget_after_fork() -> None:
    # Threads do not survive fork(): a pre-forking server's workers must start
    # their own loop and pool rather than wait on dead threads forever.
    global _loop, _pool, _lock
    _loop = None
    _pool = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
