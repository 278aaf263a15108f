"""Fixtures shared by the core tests (executor, manager, config, loader, telemetry)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from mcp_plugin_mw import GlobalContext, HookType, PluginManager
from mcp_plugin_mw.models import HookResult
from tests.sample_plugins import BOUND

ManagerFactory = Callable[..., PluginManager]
Call = Callable[..., Awaitable[HookResult]]


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on a fresh daemon thread and wait at most ``BOUND`` seconds.

    Unlike ``asyncio.to_thread``, a call that never returns cannot hang the
    event loop's shutdown: the daemon thread is simply abandoned.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)

    def run() -> None:
        try:
            outcome, error = fn(*args), None
        except BaseException as exc:
            outcome, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, outcome, error)
        except RuntimeError:  # the test gave up waiting and its loop is closed
            pass

    threading.Thread(target=run, daemon=True).start()
    return await asyncio.wait_for(future, BOUND)


@pytest.fixture
def make_manager() -> Iterator[ManagerFactory]:
    """Build managers from ``plugins:`` entries and settings; all are closed at teardown.

    The environment is empty unless ``environ=`` is given, so the test
    runner's own ``MCP_PLUGIN_MW_*`` variables never leak in.
    """
    made: list[PluginManager] = []

    def make(
        plugins: list[dict[str, Any]] | None = None,
        *,
        environ: dict[str, str] | None = None,
        settings: dict[str, Any] | None = None,
        **plugin_settings: Any,
    ) -> PluginManager:
        config = {"plugin_settings": plugin_settings, "plugins": plugins or []}
        manager = PluginManager(config, environ=environ or {}, settings=settings)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that stuck plugins wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(params=["invoke", "invoke_sync"])
def call(request: pytest.FixtureRequest) -> Call:
    """Invoke a hook through ``await manager.invoke`` or ``manager.invoke_sync`` (from a thread).

    Either way the wait is bounded: a hang fails the test instead of the run.
    """

    async def call(
        manager: PluginManager, hook: HookType | str, payload: Any, context: GlobalContext | None = None
    ) -> HookResult:
        if request.param == "invoke":
            return await asyncio.wait_for(manager.invoke(hook, payload, context), BOUND)
        return await in_thread(manager.invoke_sync, hook, payload, context)

    return call


# The lenient app and the middlewares denying one tool, for the property and fuzz tests.
from tests.fail_closed_plugins import deny_asgi, deny_wsgi, lenient, loop  # noqa: E402, F401

# A real Redis server for the rate limiter tests.
from tests.redis_fixture import redis_server, redis_url  # noqa: E402, F401
