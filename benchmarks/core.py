"""
Core executor: mcp-plugin-mw vs cpex on the same no-op work
===========================================================

Runs N no-op plugins on ``tool_pre_invoke`` through our ``PluginManager``
(sync ``invoke_sync`` and async ``invoke``, with sync and async plugins) and
through cpex 0.1.x's ``PluginManager.invoke_hook`` (async only), side by
side in one process, and prints microseconds per call and the ratios.

    python benchmarks/core.py [--calls 20000] [--plugins 1 5]

cpex is optional: without it only our rows are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import mcp_plugin_mw as mw


class SyncNoop(mw.Plugin):
    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        return mw.PluginResult()


class AsyncNoop(mw.Plugin):
    async def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        return mw.PluginResult()


PAYLOAD_ARGS = {"text": "hello world", "count": 3}


def ours(kind: type[mw.Plugin], count: int) -> mw.PluginManager:
    manager = mw.PluginManager({})
    for index in range(count):
        manager.register(kind(mw.PluginConfig(name=f"p{index}", kind=f"{__name__}.{kind.__name__}")))
    return manager


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """Median of several timed rounds, in microseconds per call."""
    return statistics.median(run() for _ in range(repeats))


def time_sync(manager: mw.PluginManager, calls: int) -> float:
    payload = mw.ToolPreInvokePayload(name="echo", args=PAYLOAD_ARGS)
    start = time.perf_counter()
    for index in range(calls):
        manager.invoke_sync("tool_pre_invoke", payload, mw.GlobalContext(request_id=str(index)))
    return (time.perf_counter() - start) / calls * 1e6


def time_async(invoke: Callable[[int], Awaitable[object]], calls: int) -> float:
    async def run() -> float:
        await invoke(-1)  # warm up: initialize
        start = time.perf_counter()
        for index in range(calls):
            await invoke(index)
        return (time.perf_counter() - start) / calls * 1e6

    return asyncio.run(run())


def cpex_manager(count: int, directory: Path) -> object | None:
    try:
        from cpex.framework import PluginManager
    except ImportError:
        return None
    module = directory / "cpex_noop.py"
    module.write_text(
        "from cpex.framework import Plugin, PluginResult\n"
        "class Noop(Plugin):\n"
        "    async def tool_pre_invoke(self, payload, context):\n"
        "        return PluginResult(continue_processing=True)\n"
    )
    entries = "".join(
        f"  - name: p{index}\n    kind: cpex_noop.Noop\n    hooks: [tool_pre_invoke]\n"
        f"    mode: sequential\n    priority: {index}\n"
        for index in range(count)
    )
    config = directory / f"cpex_{count}.yaml"
    config.write_text(f"plugins:\n{entries}plugin_dirs: []\n")
    sys.path.insert(0, str(directory))
    PluginManager.reset()
    return PluginManager(str(config), timeout=30)


def time_cpex(manager: object, calls: int) -> float:
    from cpex.framework import GlobalContext, ToolPreInvokePayload

    payload = ToolPreInvokePayload(name="echo", args=PAYLOAD_ARGS)

    async def run() -> float:
        await manager.initialize()  # type: ignore[attr-defined]
        start = time.perf_counter()
        for index in range(calls):
            await manager.invoke_hook("tool_pre_invoke", payload, GlobalContext(request_id=str(index)))  # type: ignore[attr-defined]
        elapsed = (time.perf_counter() - start) / calls * 1e6
        await manager.shutdown()  # type: ignore[attr-defined]
        return elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plugins", type=int, nargs="+", default=[1, 5])
    options = parser.parse_args()
    calls, repeats = options.calls, options.repeats
    print(f"{'plugins':>7}  {'runner':<34} {'us/call':>9} {'us/plugin':>10} {'cpex/this':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in options.plugins:
            rows: list[tuple[str, float]] = []
            sync_manager = ours(SyncNoop, count)
            rows.append(("ours invoke_sync, sync plugins", best_of(repeats, lambda: time_sync(sync_manager, calls))))
            async_manager = ours(AsyncNoop, count)
            rows.append(("ours invoke_sync, async plugins", best_of(repeats, lambda: time_sync(async_manager, calls // 10))))
            payload = mw.ToolPreInvokePayload(name="echo", args=PAYLOAD_ARGS)
            for label, manager in (("ours invoke, sync plugins", sync_manager), ("ours invoke, async plugins", async_manager)):
                rows.append((label, best_of(repeats, lambda m=manager: time_async(
                    lambda i, m=m: m.invoke("tool_pre_invoke", payload, mw.GlobalContext(request_id=str(i))), calls))))
            baseline = None
            cpex = cpex_manager(count, Path(tmp))
            if cpex is not None:
                baseline = best_of(repeats, lambda: time_cpex(cpex_manager(count, Path(tmp)), calls // 4))
                rows.append(("cpex 0.1.x invoke_hook, async", baseline))
            for label, micros in rows:
                ratio = f"{baseline / micros:9.1f}x" if baseline else "        -"
                print(f"{count:>7}  {label:<34} {micros:9.2f} {micros / count:10.2f} {ratio:>10}")


if __name__ == "__main__":
    main()
