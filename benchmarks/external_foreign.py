"""
Foreign plugins: cost per call of kind cpex, transport mcp and kind mcpd
========================================================================

Times one no-op plugin per row through our ``PluginManager.invoke``, side by
side in one process, and prints microseconds per call and the ratio to the
same work done by a native in-process plugin:

* ``tool_pre_invoke``: a native async no-op; cpex's no-op class in process
  (``kind: cpex``); the same class hosted by cpex's own external MCP server
  runtime on 127.0.0.1, reached by our ``transport: mcp`` (streamable HTTP,
  both protocol modes, and stdio) and, for comparison, by cpex's own
  ``PluginManager`` with its ``kind: external`` client.
* ``http_pre_request`` (1 KiB body): a native async no-op and an mcpd
  plugin executable written with ``mcpd-plugins`` that answers
  ``continue: true`` (``kind: mcpd``, gRPC over a unix socket).

    python benchmarks/external_foreign.py [--calls 300] [--local-calls 20000] [--repeats 3]

Rows whose dependencies (cpex, mcp, grpcio, mcpd-plugins) are missing are
skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the foreign plugins and their hosts live with the tests

import mcp_plugin_mw as mw  # noqa: E402


class AsyncNoop(mw.Plugin):
    async def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        return None

    async def http_pre_request(self, payload: Any, context: mw.PluginContext) -> None:
        return None


TOOL = mw.ToolPreInvokePayload(name="echo", args={"text": "hello world", "count": 3})
HTTP = mw.HttpPreRequestPayload(
    method="POST", path="/echo", headers=[("content-type", "application/json")], body=b"x" * 1024
)


def time_manager(entries: list[dict[str, Any]] | None, hook: str, payload: Any, calls: int, repeats: int) -> float:
    """Median microseconds per ``invoke`` over ``repeats`` rounds of ``calls`` calls."""

    async def run() -> float:
        if entries is None:
            manager = mw.PluginManager({})
            manager.register(AsyncNoop(mw.PluginConfig(name="noop", kind=f"{__name__}.AsyncNoop", hooks=[hook])))
        else:
            manager = mw.PluginManager({"plugins": entries})
        async with manager:
            for _ in range(min(calls, 20)):  # warm up: connections, first calls
                await manager.invoke(hook, payload)
            rounds = []
            for _ in range(repeats):
                start = time.perf_counter()
                for index in range(calls):
                    result = await manager.invoke(hook, payload, mw.GlobalContext(request_id=str(index)))
                    if result.records and result.records[0].outcome.value not in ("passed", "modified"):
                        raise RuntimeError(f"the plugin failed: {result.records[0]}")
                rounds.append((time.perf_counter() - start) / calls * 1e6)
            return statistics.median(rounds)

    return asyncio.run(run())


def time_cpex_external(url: str, calls: int, repeats: int, directory: Path) -> float:
    """cpex's own PluginManager calling the same server with its ``kind: external`` client."""
    from cpex.framework import GlobalContext, PluginManager, ToolPreInvokePayload
    from cpex.framework.settings import get_ssrf_settings

    # cpex refuses plugin URLs on private addresses unless told otherwise.
    os.environ["PLUGINS_SSRF_PROTECTION_ENABLED"] = "false"
    get_ssrf_settings.cache_clear()
    config = directory / "cpex-client.yaml"
    config.write_text(
        "plugins:\n  - name: noop\n    kind: external\n    hooks: [tool_pre_invoke]\n"
        f"    mcp: {{proto: STREAMABLEHTTP, url: '{url}'}}\nplugin_dirs: []\n"
    )
    payload = ToolPreInvokePayload(name="echo", args={"text": "hello world", "count": 3})

    async def run() -> float:
        PluginManager.reset()
        manager = PluginManager(str(config), timeout=30)
        await manager.initialize()
        try:
            for _ in range(min(calls, 20)):
                await manager.invoke_hook("tool_pre_invoke", payload, GlobalContext(request_id="warm"))
            rounds = []
            for _ in range(repeats):
                start = time.perf_counter()
                for index in range(calls):
                    await manager.invoke_hook("tool_pre_invoke", payload, GlobalContext(request_id=str(index)))
                rounds.append((time.perf_counter() - start) / calls * 1e6)
            return statistics.median(rounds)
        finally:
            await manager.shutdown()

    return asyncio.run(run())


def row(rows: list[tuple[str, str, float | None, str]], hook: str, label: str, measure: Callable[[], float]) -> None:
    try:
        rows.append((hook, label, measure(), ""))
    except ImportError as exc:
        rows.append((hook, label, None, f"skipped: {exc}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls per round for out-of-process rows")
    parser.add_argument("--local-calls", type=int, default=20000, help="calls per round for in-process rows")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    calls, local, repeats = options.calls, options.local_calls, options.repeats
    rows: list[tuple[str, str, float | None, str]] = []
    noop_cpex = "tests.external_foreign.cpex_plugins.Noop"
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        tool = "tool_pre_invoke"
        row(rows, tool, "native async plugin", lambda: time_manager(None, tool, TOOL, local, repeats))
        row(
            rows,
            tool,
            "kind cpex (in process)",
            lambda: time_manager([{"name": "noop", "kind": "cpex", "plugin": noop_cpex}], tool, TOOL, local, repeats),
        )
        server = None
        try:
            from tests.external_foreign.cpex_server import CpexServer

            server = CpexServer(directory, [{"name": "noop", "kind": noop_cpex, "hooks": [tool]}]).start()
        except ImportError as exc:
            rows.append((tool, "transport mcp", None, f"skipped: {exc}"))
        if server is not None:
            try:
                for mode in ("auto", "legacy"):
                    mcp = {"proto": "STREAMABLEHTTP", "url": server.url, "mode": mode}
                    entry = {"name": "noop", "kind": "external", "transport": "mcp", "mcp": mcp, "hooks": [tool]}
                    label = f"transport mcp, HTTP, {mode}"
                    row(rows, tool, label, lambda e=entry: time_manager([e], tool, TOOL, calls, repeats))
                stdio = {"name": "noop", "kind": "external", "transport": "mcp", "mcp": server.stdio_entry()}
                stdio["hooks"] = [tool]
                row(rows, tool, "transport mcp, stdio", lambda: time_manager([stdio], tool, TOOL, calls, repeats))
                url = server.url
                row(rows, tool, "cpex's own client, HTTP", lambda: time_cpex_external(url, calls, repeats, directory))
            finally:
                server.stop()
        http = "http_pre_request"
        row(rows, http, "native async plugin", lambda: time_manager(None, http, HTTP, local, repeats))
        try:
            from tests.external_foreign.mcpd_plugins import script

            executable = str(script(directory, "PassThrough"))
            entry = {"name": "noop", "kind": "mcpd", "exec": executable, "flows": ["request"]}
            row(rows, http, "kind mcpd (gRPC, unix socket)", lambda: time_manager([entry], http, HTTP, calls, repeats))
        except ImportError as exc:
            rows.append((http, "kind mcpd", None, f"skipped: {exc}"))
    print(f"python {sys.version.split()[0]}; median of {repeats} rounds; one no-op plugin per row")
    print(f"{'hook':<17} {'runner':<32} {'us/call':>10} {'x native':>9}")
    baselines = {hook: micros for hook, label, micros, _ in rows if label == "native async plugin" and micros}
    for hook, label, micros, note in rows:
        if micros is None:
            print(f"{hook:<17} {label:<32} {note}")
            continue
        ratio = micros / baselines[hook] if hook in baselines else float("nan")
        print(f"{hook:<17} {label:<32} {micros:10.1f} {ratio:8.1f}x")


if __name__ == "__main__":
    main()
