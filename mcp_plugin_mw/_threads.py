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
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

__all__ = ["DaemonPool", "background_loop", "daemon_pool", "run_in_background"]

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


def run_in_background(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the background loop, in a task, and wait for it on this thread.

    The same contract as ``asyncio.run_coroutine_threadsafe(coroutine,
    loop).result()``, with a lighter hop. ``invoke_sync`` on one async no-op
    (``benchmarks/hot_path.py hop``, 2 shared vCPUs) took a median of
    49-77 µs per call with ``run_coroutine_threadsafe`` and takes 24-28 µs
    with this. On five it went from 59-62 µs to 46-58 µs: there the chain
    itself is most of the time.

    Where the time went, and what changed:

    * ``run_coroutine_threadsafe`` takes three loop iterations: its callback
      creates the task, whose first step is only scheduled (iteration 2), and
      the task's done callback copies the result to a
      ``concurrent.futures.Future`` (iteration 3), whose ``Condition`` wakes
      the caller. After a thread wake-up each iteration costs 5-11 µs
      (2.3 µs on a warm loop): cold caches, an ``epoll_wait``, and a GIL
      drop and retake each time.
    * Here the task is created on the caller's thread and the loop is woken
      (``call_soon_threadsafe``) after its first step is queued: both run in
      the first iteration after the wake-up. The task's coroutine releases
      a plain lock the caller blocks on as its last action, which stands in
      for the future and its done callback. A loop that is not a
      :class:`asyncio.BaseEventLoop` as shipped, one in debug mode, or one
      with a task factory gets the task created by a callback
      (``loop.create_task`` on the loop) instead: two iterations.
    * What is left is two thread wake-ups, from the self-pipe and from the
      lock. A bare ``call_soon_threadsafe`` and lock round trip costs
      11-15 µs here, and a ``SimpleQueue`` ping-pong between two plain
      threads 3-10 µs (bimodal: whether the woken thread runs on the
      waker's CPU). Add the chain itself: 5.5 µs for one async no-op, about
      18 µs for five (``Executor.run``). Under 15 µs a call, with a loop on
      another thread, is out of reach for CPython here. Other things tried:
      releasing the caller's lock from the selector just before the loop
      blocks (it was no faster). Rejected: stepping the chain on the
      caller's thread or outside a task. A plugin's first step would run
      with no running loop, or a foreign ``current_task()`` (which breaks
      ``asyncio.timeout`` and anyio's cancel scopes, so httpx), or touch
      loop-bound clients from the wrong thread before it first suspends.

    If the caller is interrupted while it waits (``KeyboardInterrupt``), the
    task is cancelled. An exception the chain raises is raised here.
    ``KeyboardInterrupt`` and ``SystemExit`` raised in it are handed over
    too; they do not stop the loop.
    """
    loop = background_loop()
    hop: _Hop[T] = _Hop()
    try:
        if _creates_tasks_from_any_thread(loop):
            # BaseEventLoop.call_soon_threadsafe is call_soon (a deque
            # append, safe from any thread) and then a self-pipe write;
            # call_soon only refuses other threads in debug mode. Creating
            # the task here is that call_soon, and the wake-up follows it.
            # The task registers itself in asyncio's task set, which
            # all_tasks() expects other threads to change.
            hop.task = asyncio.Task(hop.run(coroutine), loop=loop)
            loop.call_soon_threadsafe(_nothing)
        else:
            loop.call_soon_threadsafe(hop.start, loop, coroutine)
    except BaseException:
        coroutine.close()
        raise
    try:
        hop.done.acquire()
    except BaseException:
        loop.call_soon_threadsafe(hop.cancel)
        raise
    error = hop.error
    if error is not None:
        hop.error = None
        raise error
    return hop.result  # type: ignore[return-value]  # set when no error was


_call_soon = asyncio.BaseEventLoop.call_soon
_call_soon_threadsafe = asyncio.BaseEventLoop.call_soon_threadsafe


def _creates_tasks_from_any_thread(loop: asyncio.AbstractEventLoop) -> bool:
    kind = type(loop)
    return (
        isinstance(loop, asyncio.BaseEventLoop)
        and kind.call_soon is _call_soon
        and kind.call_soon_threadsafe is _call_soon_threadsafe
        and not loop.get_debug()
        and not loop.is_closed()
        and loop.get_task_factory() is None  # else create_task, on the loop, must make it
    )


def _nothing() -> None:
    return None


class _Hop(Generic[T]):
    """One call handed to the background loop. Its caller waits on ``done``."""

    __slots__ = ("cancelled", "done", "error", "result", "task")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False

    def start(self, loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> None:
        """On the loop: the task, when it could not be created on the caller's thread."""
        if self.cancelled:
            coroutine.close()
            self.done.release()
            return
        self.task = loop.create_task(self.run(coroutine))

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> None:
        try:
            self.result = await coroutine
        except (asyncio.CancelledError, GeneratorExit) as exc:
            self.error = exc
            self.done.release()
            raise  # the task ends cancelled (or closed), as it was
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
            self.done.release()
        else:
            self.done.release()

    def cancel(self) -> None:
        """On the loop: the caller stopped waiting."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


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
