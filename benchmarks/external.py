"""
External plugins: per-call cost of each transport against in process
====================================================================

One plugin (``Upper``, which upper-cases a tool argument) on
``tool_pre_invoke``, run in process, as a sidecar (``transport: http``,
hosted by ``mcp-plugin-mw serve-plugin`` on 127.0.0.1) and as a supervised
child process (``transport: subprocess``, the same server), and, written
against cpex's API, hosted by cpex's own MCP plugin server runtime
(``transport: mcp``), side by side in one run. Each is called through ``PluginManager.invoke`` (an ASGI app's
path) and ``invoke_sync`` (a WSGI app's path); prints microseconds per call
and how many times the in-process cost each transport takes.

    pip install -e '.[external,serve,cpex,mcp]'
    python benchmarks/external.py [--calls 500] [--repeats 3]

Each row of :data:`ROWS` is a function that returns the plugin entry for its
transport (starting on the exit stack whatever it needs, and stopping it when
the stack closes); add one to compare another transport.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp_plugin_mw as mw

HERE = Path(__file__).resolve().parent
CLASS = "external:Upper"
"""This module's plugin, as ``serve-plugin --app-dir benchmarks`` imports it."""
SERVE = [
    sys.executable,
    "-c",
    "from mcp_plugin_mw.cli import main; main()",
    "serve-plugin",
    CLASS,
    "--app-dir",
    str(HERE),
]
BOUND = 20.0
"""Seconds any start-up may take."""

Row = Callable[[contextlib.ExitStack], dict[str, Any]]


class Upper(mw.Plugin):
    """Upper-cases the ``text`` argument."""

    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        args = {**payload.args, "text": str(payload.args.get("text", "")).upper()}
        return mw.PluginResult(modified_payload=payload.model_copy(update={"args": args}))


# --------------------------------------------------------------------------
# Rows: one function per transport
# --------------------------------------------------------------------------


def in_process(stack: contextlib.ExitStack) -> dict[str, Any]:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return {"kind": CLASS}


def http_sidecar(stack: contextlib.ExitStack) -> dict[str, Any]:
    process = subprocess.Popen(SERVE, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, process_group=0)
    stack.callback(_stop, process)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], BOUND)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("PORT="):
        raise RuntimeError(f"serve-plugin printed {line!r}, expected PORT=<n>")
    return {"kind": "external", "transport": "http", "url": f"http://127.0.0.1:{int(line[5:])}", "health_interval": 0}


def subprocess_child(stack: contextlib.ExitStack) -> dict[str, Any]:
    return {"kind": "external", "transport": "subprocess", "exec": SERVE[0], "args": SERVE[1:], "health_interval": 0}


def mcp_server(stack: contextlib.ExitStack) -> dict[str, Any]:
    # The same plugin written for cpex, hosted by cpex's own MCP plugin server
    # runtime (pip install -e '.[cpex,mcp]'); its helpers live with the tests.
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from tests.external_foreign.cpex_server import CpexServer

    directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    plugin = {"name": "upper", "kind": "tests.external_foreign.cpex_plugins.Upper", "hooks": ["tool_pre_invoke"]}
    server = CpexServer(directory, [plugin]).start(timeout=BOUND)
    stack.callback(server.stop)
    return {"kind": "external", "transport": "mcp", "mcp": {"proto": "STREAMABLEHTTP", "url": server.url}}


ROWS: dict[str, Row] = {
    "in process": in_process,
    "transport: http (sidecar)": http_sidecar,
    "transport: subprocess": subprocess_child,
    "transport: mcp (cpex server)": mcp_server,
    # kind: mcpd runs on the HTTP hooks only: see benchmarks/external_foreign.py.
}


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(BOUND)


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

PAYLOAD = mw.ToolPreInvokePayload(name="echo", args={"text": "hello world", "count": 3})


def time_sync(manager: mw.PluginManager, calls: int) -> float:
    start = time.perf_counter()
    for index in range(calls):
        manager.invoke_sync("tool_pre_invoke", PAYLOAD, mw.GlobalContext(request_id=str(index)))
    return (time.perf_counter() - start) / calls * 1e6


async def time_async(manager: mw.PluginManager, calls: int) -> float:
    start = time.perf_counter()
    for index in range(calls):
        await manager.invoke("tool_pre_invoke", PAYLOAD, mw.GlobalContext(request_id=str(index)))
    return (time.perf_counter() - start) / calls * 1e6


def start(entry: dict[str, Any]) -> mw.PluginManager:
    """A started manager running the plugin as ``entry`` says, checked once."""
    config = {"plugins": [{"name": "upper", "hooks": ["tool_pre_invoke"], "timeout": BOUND, **entry}]}
    manager = mw.PluginManager(config, environ={})
    manager.initialize()
    check = manager.invoke_sync("tool_pre_invoke", PAYLOAD).modified_payload
    if check is None or check.args["text"] != "HELLO WORLD":
        raise RuntimeError(f"the plugin did not answer as expected: {check}")
    return manager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="calls per round (default 500)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per row; the median is shown (default 5)")
    options = parser.parse_args()
    calls, repeats = options.calls, options.repeats
    sync: dict[str, list[float]] = {label: [] for label in ROWS}
    async_: dict[str, list[float]] = {label: [] for label in ROWS}
    with contextlib.ExitStack() as stack:
        managers = {label: start(row(stack)) for label, row in ROWS.items()}
        # Rounds go round the rows, so that a noisy moment hits every row alike.
        for manager in managers.values():
            time_sync(manager, min(calls, 50))  # warm up
        for _ in range(repeats):
            for label, manager in managers.items():
                sync[label].append(time_sync(manager, calls))

        async def run_async() -> None:
            for manager in managers.values():
                await time_async(manager, min(calls, 50))
            for _ in range(repeats):
                for label, manager in managers.items():
                    async_[label].append(await time_async(manager, calls))
            # Closed on this loop, so that its connections close here.
            for manager in managers.values():
                await manager.aclose()

        asyncio.run(run_async())

    base_async, base_sync = statistics.median(async_["in process"]), statistics.median(sync["in process"])
    print(f"{calls} calls x {repeats} rounds, median; 'x' = times the in-process cost")
    print(f"{'transport':<28} {'invoke us':>10} {'x':>8} {'invoke_sync us':>15} {'x':>8}")
    for label in ROWS:
        micros_async, micros_sync = statistics.median(async_[label]), statistics.median(sync[label])
        print(
            f"{label:<28} {micros_async:10.1f} {micros_async / base_async:7.0f}x"
            f" {micros_sync:15.1f} {micros_sync / base_sync:7.0f}x"
        )


if __name__ == "__main__":
    main()
