"""PluginManager: life cycle, thread safety, coexisting managers, and sync callers sharing async clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mcp_plugin_mw import GlobalContext, HookType, PluginConfig
from mcp_plugin_mw.models import Outcome
from tests.conftest import in_thread
from tests.sample_plugins import BOUND, AsyncLifecycle, Lifecycle, Upper, entry, tool_post, tool_pre

LIFECYCLE_CLASSES = ["Lifecycle", "AsyncLifecycle"]


def run_threads(count: int, target: Any) -> None:
    """Start ``count`` threads on ``target(index)`` together; fail if any is still running after ``BOUND``."""
    threads = [threading.Thread(target=target, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND * 2)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"


# --------------------------------------------------------------------------
# initialize / shutdown
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LIFECYCLE_CLASSES)
async def test_initialize_and_shutdown_run_once(make_manager, call, cls):
    manager = make_manager([entry("life", cls)])
    (plugin,) = manager.plugins
    assert plugin.initialized == 0  # not at construction
    for _ in range(3):
        await call(manager, "tool_pre_invoke", tool_pre())
    assert plugin.initialized == 1
    assert plugin.hook_saw_initialized == [1, 1, 1]
    assert plugin.shut_down == 0
    manager.close()
    manager.close()
    assert plugin.shut_down == 1
    assert plugin.initialized == 1


@pytest.mark.parametrize("cls", LIFECYCLE_CLASSES)
async def test_aclose_shuts_down_once(make_manager, cls):
    manager = make_manager([entry("life", cls)])
    (plugin,) = manager.plugins
    await manager.ainitialize()
    await manager.ainitialize()
    manager.initialize()
    assert plugin.initialized == 1
    await manager.aclose()
    await manager.aclose()
    manager.close()
    assert plugin.shut_down == 1


@pytest.mark.parametrize("cls", LIFECYCLE_CLASSES)
def test_concurrent_first_calls_from_threads_initialize_once(make_manager, cls):
    manager = make_manager([entry("life", cls, config={"init_delay": 0.05})])
    (plugin,) = manager.plugins
    barrier = threading.Barrier(16, timeout=BOUND)
    results: list[Any] = []

    def work(index: int) -> None:
        barrier.wait()
        results.append(manager.invoke_sync("tool_pre_invoke", tool_pre(str(index))))

    run_threads(16, work)
    assert len(results) == 16
    assert plugin.initialized == 1
    # No hook ran before initialize had finished.
    assert plugin.hook_saw_initialized == [1] * 16


@pytest.mark.parametrize("cls", LIFECYCLE_CLASSES)
async def test_concurrent_first_calls_in_a_loop_initialize_once(make_manager, cls):
    manager = make_manager([entry("life", cls, config={"init_delay": 0.05})])
    (plugin,) = manager.plugins
    results = await asyncio.wait_for(
        asyncio.gather(*(manager.invoke("tool_pre_invoke", tool_pre(str(i))) for i in range(10))), BOUND
    )
    assert len(results) == 10
    assert plugin.initialized == 1
    assert plugin.hook_saw_initialized == [1] * 10


async def test_concurrent_first_calls_from_threads_and_a_loop_initialize_once(make_manager):
    manager = make_manager([entry("sync", "Lifecycle", config={"init_delay": 0.05}), entry("async", "AsyncLifecycle")])
    threads = [in_thread(manager.invoke_sync, "tool_pre_invoke", tool_pre()) for _ in range(4)]
    awaited = [manager.invoke("tool_pre_invoke", tool_pre()) for _ in range(4)]
    await asyncio.wait_for(asyncio.gather(*threads, *awaited), BOUND)
    assert [plugin.initialized for plugin in manager.plugins] == [1, 1]


def test_never_started_manager_does_not_shut_plugins_down(make_manager):
    manager = make_manager([entry("life", "Lifecycle")])
    manager.close()
    assert manager.plugins[0].initialized == 0
    assert manager.plugins[0].shut_down == 0


def test_context_manager(make_manager):
    manager = make_manager([entry("sync", "Lifecycle"), entry("async", "AsyncLifecycle")])
    with manager as entered:
        assert entered is manager
        assert [plugin.initialized for plugin in manager.plugins] == [1, 1]
        manager.invoke_sync("tool_pre_invoke", tool_pre())
        assert [plugin.shut_down for plugin in manager.plugins] == [0, 0]
    assert [plugin.shut_down for plugin in manager.plugins] == [1, 1]
    with pytest.raises(RuntimeError, match="closed"):
        manager.invoke_sync("tool_pre_invoke", tool_pre())


async def test_async_context_manager(make_manager):
    manager = make_manager([entry("sync", "Lifecycle"), entry("async", "AsyncLifecycle")])
    async with manager as entered:
        assert entered is manager
        assert [plugin.initialized for plugin in manager.plugins] == [1, 1]
        await manager.invoke("tool_pre_invoke", tool_pre())
    assert [plugin.shut_down for plugin in manager.plugins] == [1, 1]
    with pytest.raises(RuntimeError, match="closed"):
        await manager.invoke("tool_pre_invoke", tool_pre())


def test_context_manager_closes_on_error(make_manager):
    manager = make_manager([entry("life", "Lifecycle")])
    with pytest.raises(KeyError), manager:
        raise KeyError("boom")
    assert manager.plugins[0].shut_down == 1


@pytest.mark.parametrize("closer", ["close", "aclose"])
@pytest.mark.parametrize("started", [True, False])
async def test_invocation_after_close_raises(make_manager, closer, started):
    manager = make_manager([entry("upper", "Upper")])
    if started:
        await manager.invoke("tool_pre_invoke", tool_pre())
    if closer == "close":
        manager.close()
    else:
        await manager.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await manager.invoke("tool_pre_invoke", tool_pre())
    with pytest.raises(RuntimeError, match="closed"):
        manager.invoke_sync("tool_post_invoke", tool_post())
    with pytest.raises(RuntimeError, match="closed"):
        manager.initialize()
    with pytest.raises(RuntimeError, match="closed"):
        await manager.ainitialize()


async def test_initialize_failure_is_raised_and_never_passes_traffic(make_manager, call):
    manager = make_manager([entry("flaky", "FailingInit")])
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"plugin 'flaky' failed to initialize: cannot connect"):
            await call(manager, "tool_pre_invoke", tool_pre())


async def test_one_failing_shutdown_does_not_keep_the_others_open(make_manager, caplog):
    manager = make_manager(
        [entry("first", "Lifecycle"), entry("bad", "FailingShutdown"), entry("last", "AsyncLifecycle")]
    )
    await manager.invoke("tool_pre_invoke", tool_pre())
    await manager.aclose()
    first, bad, last = manager.plugins
    assert (first.shut_down, bad.shut_down, last.shut_down) == (1, 1, 1)
    assert any("bad" in record.getMessage() and "shut down" in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------
# register, has_hooks_for, coexisting managers
# --------------------------------------------------------------------------


async def test_register(make_manager, call):
    manager = make_manager()
    assert not manager.has_hooks_for("tool_pre_invoke")
    manager.register(Upper(PluginConfig(name="upper", kind="tests.sample_plugins.Upper")))
    assert manager.has_hooks_for("tool_pre_invoke")
    result = await call(manager, "tool_pre_invoke", tool_pre("x"))
    assert result.modified_payload.args == {"text": "X"}
    assert [plugin.name for plugin in manager.plugins] == ["upper"]


def test_register_duplicate_name(make_manager):
    manager = make_manager([entry("upper", "Upper")])
    with pytest.raises(ValueError, match="'upper' is already registered"):
        manager.register(Upper(PluginConfig(name="upper", kind="x.Y")))


def test_register_a_plugin_listing_a_hook_it_lacks_leaves_the_manager_intact(make_manager):
    manager = make_manager([entry("upper", "Upper")])
    with pytest.raises(ValueError, match="prompt_pre_fetch"):
        manager.register(Upper(PluginConfig(name="other", kind="x.Y", hooks=["prompt_pre_fetch"])))
    assert [plugin.name for plugin in manager.plugins] == ["upper"]
    assert manager.invoke_sync("tool_pre_invoke", tool_pre("x")).modified_payload.args == {"text": "X"}


@pytest.mark.parametrize("cls", [Lifecycle, AsyncLifecycle])
async def test_register_after_start_initializes_at_once(make_manager, cls):
    manager = make_manager([entry("upper", "Upper")])
    manager.invoke_sync("tool_pre_invoke", tool_pre())
    plugin = cls(PluginConfig(name="late", kind="x.Y"))
    manager.register(plugin)
    assert plugin.initialized == 1
    manager.invoke_sync("tool_pre_invoke", tool_pre())
    await manager.invoke("tool_pre_invoke", tool_pre())
    assert plugin.initialized == 1
    assert plugin.hook_saw_initialized == [1, 1]
    manager.close()
    assert plugin.shut_down == 1


def test_registered_before_start_initializes_with_the_others(make_manager):
    manager = make_manager([entry("life", "Lifecycle")])
    plugin = AsyncLifecycle(PluginConfig(name="late", kind="x.Y"))
    manager.register(plugin)
    assert plugin.initialized == 0
    manager.invoke_sync("tool_pre_invoke", tool_pre())
    assert plugin.initialized == 1


async def test_hook_names_as_strings_or_enums(make_manager):
    manager = make_manager([entry("upper", "Upper")])
    by_name = await manager.invoke("tool_pre_invoke", tool_pre("x"))
    by_enum = manager.invoke_sync(HookType.TOOL_PRE_INVOKE, tool_pre("x"))
    assert by_name.modified_payload == by_enum.modified_payload
    with pytest.raises(ValueError, match="tool_pre_call"):
        await manager.invoke("tool_pre_call", tool_pre())


async def test_without_a_context_each_call_gets_its_own(make_manager):
    manager = make_manager([entry("stateful", "Stateful")])
    await manager.invoke("tool_pre_invoke", tool_pre("question"))
    result = manager.invoke_sync("tool_post_invoke", tool_post())
    assert result.metadata == {"seen": {"pre_text": None, "calls": 1}}


async def test_state_carries_across_the_sync_and_async_paths(make_manager):
    manager = make_manager([entry("stateful", "Stateful")])
    context = GlobalContext(request_id="r")
    manager.invoke_sync("tool_pre_invoke", tool_pre("question"), context)
    result = await manager.invoke("tool_post_invoke", tool_post(), context)
    assert result.metadata == {"seen": {"pre_text": "question", "calls": 2}}


async def test_managers_coexist(make_manager):
    first = make_manager([entry("append", "Append", config={"suffix": "-1"}), entry("life", "Lifecycle")])
    second = make_manager([entry("append", "Append", config={"suffix": "-2"}), entry("life", "Lifecycle")])
    third = make_manager([entry("blocker", "Blocker")])
    assert (await first.invoke("tool_pre_invoke", tool_pre("x"))).modified_payload.args == {"text": "x-1"}
    assert second.invoke_sync("tool_pre_invoke", tool_pre("x")).modified_payload.args == {"text": "x-2"}
    assert not third.invoke_sync("tool_pre_invoke", tool_pre("x")).continue_processing
    assert first.plugins[0] is not second.plugins[0]

    first.close()
    assert first.plugins[1].shut_down == 1
    assert second.plugins[1].shut_down == 0
    assert (await second.invoke("tool_pre_invoke", tool_pre("y"))).modified_payload.args == {"text": "y-2"}
    with pytest.raises(RuntimeError):
        first.invoke_sync("tool_pre_invoke", tool_pre("y"))


def test_repr(make_manager):
    assert repr(make_manager([entry("a", "Upper"), entry("b", "Tag")])) == "<PluginManager [a, b]>"


# --------------------------------------------------------------------------
# Sync callers on many threads, async plugins sharing one client
# --------------------------------------------------------------------------


class _LookupHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        body = f"srv({query['q'][0]})".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def lookup_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LookupHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()
    thread.join(BOUND)


def test_invoke_sync_from_many_threads_with_a_shared_async_client(make_manager, lookup_url):
    manager = make_manager(
        [
            entry("append_a", "Append", priority=10, config={"suffix": "-a"}),
            entry("lookup", "HttpLookup", priority=20, config={"url": lookup_url}),
            entry("append_b", "BlockingAppend", priority=30, config={"suffix": "-b"}),
            entry("append_c", "AsyncAppend", priority=40, config={"suffix": "-c"}),
            entry("observe", "AsyncTag", category="observability"),
        ]
    )
    lookup = manager.plugins[1]
    calls_per_thread = 5
    barrier = threading.Barrier(16, timeout=BOUND)
    results: dict[tuple[int, int], Any] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            for call in range(calls_per_thread):
                text = f"t{index}-{call}"
                context = GlobalContext(request_id=text)
                results[index, call] = manager.invoke_sync("tool_pre_invoke", tool_pre(text), context)
        except BaseException as exc:
            errors.append(exc)

    run_threads(16, work)
    assert errors == []
    assert len(results) == 16 * calls_per_thread
    for (index, call), result in results.items():
        assert result.continue_processing
        assert result.modified_payload.args == {"text": f"srv(t{index}-{call}-a)-b-c"}
        assert [record.outcome for record in result.records] == [Outcome.PASSED] + [Outcome.MODIFIED] * 4
    # One client, made once, used by every call.
    assert lookup.clients_created == 1
    assert len(lookup.clients_used) == 16 * calls_per_thread
    assert all(client is lookup.client for client in lookup.clients_used)
    manager.close()
    assert lookup.closed


def test_close_after_a_failed_start_shuts_down_what_did_start() -> None:
    """A plugin that started before another failed is still shut down by close()."""
    import mcp_plugin_mw as mw

    events: list[str] = []

    class Starts(mw.Plugin):
        def initialize(self) -> None:
            events.append("start")

        def shutdown(self) -> None:
            events.append("stop")

        def tool_pre_invoke(self, payload: object, context: object) -> None:
            return None

    class Fails(Starts):
        def initialize(self) -> None:
            raise OSError("no port")

    manager = mw.PluginManager({})
    manager.register(Starts(mw.PluginConfig(name="ok", kind="x.Starts")))
    manager.register(Fails(mw.PluginConfig(name="bad", kind="x.Fails")))
    with pytest.raises(RuntimeError, match="plugin 'bad' failed to initialize: no port"):
        manager.initialize()
    manager.close()
    assert events == ["start", "stop"]
