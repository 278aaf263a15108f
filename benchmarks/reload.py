"""
Reload latency
==============

How long ``PluginManager.reload`` takes with 5 in-process plugins, and what a
reload costs the calls running beside it. Three comparisons through
``benchmarks/harness.py`` (runners alternating inside each round, rotating
who goes first, at least 7 rounds, median and min-max of the per-round
ratio):

1. ``reload`` to the same configuration (every plugin kept) against one that
   replaces all five (each loaded and started anew);
2. ``invoke_sync`` of a 5-plugin chain against the same call while another
   thread reloads without pause.

Usage::

    python benchmarks/reload.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MIN_ROUNDS, compare

import mcp_plugin_mw as mw


class Noop(mw.Plugin):
    def tool_pre_invoke(self, payload: Any, context: Any) -> None:
        return None


def config(tag: str) -> dict[str, Any]:
    # A different ``config:`` makes a different entry: the plugin is replaced.
    return {"plugins": [{"name": f"p{i}", "kind": f"{__name__}.Noop", "config": {"tag": tag}} for i in range(5)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    options = parser.parse_args()

    manager = mw.PluginManager(config("a"))
    manager.initialize()
    flip = iter(range(10**9))

    def kept() -> None:
        manager.reload(config("a"))

    def replaced() -> None:
        manager.reload(config("b" if next(flip) % 2 else "a"))

    figures = compare(
        {"reload, 5 kept": kept, "reload, 5 replaced": replaced},
        rounds=options.rounds,
        calls_per_round=200,
        baseline="reload, 5 kept",
        title="reload latency, 5 plugins",
    )
    payload = mw.ToolPreInvokePayload(name="echo", args={"q": "x"})
    manager.reload(config("a"))
    busy = threading.Event()

    def reloading() -> None:
        while busy.is_set():
            manager.reload(config("b" if next(flip) % 2 else "a"))

    def quiet_call() -> None:
        manager.invoke_sync("tool_pre_invoke", payload, mw.GlobalContext(request_id="r"))

    # The second runner starts the reloading thread on its first call of a
    # round and stops it on the last, so that only its calls run beside it.
    state = {"calls": 0}
    calls = 2000

    def call_during_reloads() -> None:
        if state["calls"] % calls == 0:
            busy.set()
            thread = threading.Thread(target=reloading, daemon=True)
            thread.start()
            state["thread"] = thread  # type: ignore[assignment]
        manager.invoke_sync("tool_pre_invoke", payload, mw.GlobalContext(request_id="r"))
        state["calls"] += 1
        if state["calls"] % calls == 0:
            busy.clear()
            state["thread"].join()  # type: ignore[attr-defined]

    during = compare(
        {"invoke": quiet_call, "invoke while reloading": call_during_reloads},
        rounds=options.rounds,
        calls_per_round=calls,
        baseline="invoke",
        warmup=0,
        title="invoke_sync, 5 plugins, beside a thread reloading without pause",
    )
    manager.close()
    kept_us = figures["runners"]["reload, 5 kept"]["us_per_call"]["median"]
    replaced_us = figures["runners"]["reload, 5 replaced"]["us_per_call"]["median"]
    ratio = during["runners"]["invoke while reloading"]["ratio"]
    print(f"\nreload with 5 plugins kept: {kept_us:.0f} us; with 5 replaced: {replaced_us:.0f} us")
    print(f"invoke beside reloads / quiet: {ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]")


if __name__ == "__main__":
    main()
