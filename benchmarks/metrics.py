"""
What counting costs: the same request with metrics off and on
=============================================================

The hot path's ASGI row (``hot_path.py asgi``: Starlette ``/mcp`` in process,
1 KB ``tools/call`` and 1 KB result, no-op plugins on ``tool_pre_invoke`` and
``tool_post_invoke``) timed side by side by ``harness.py`` with:

``off``
    a manager nothing observes (metrics never enabled: no observer at all);
``on``
    ``mcp_plugin_mw.metrics.enable(manager, registry)``, which is also what
    ``mw.admin_app(manager, ...)`` attaches: one observer counting each call
    in plain lists (``metrics.Tally``), turned into the four families only
    when scraped;
``objects``
    the same counts kept in prometheus-client's own counter and histogram
    objects, one update per call (what multiprocess mode, with
    ``PROMETHEUS_MULTIPROC_DIR``, does; here with in-memory values, so a lower
    bound of its cost).

::

    python benchmarks/metrics.py [--plugins 5] [--rounds 7] [--quick] [--json FILE]

It prints each runner's µs per request and its per-round ratio to ``off``,
and the added µs per request and per plugin call; then the same three
managers' ``invoke_sync`` alone, where the observer's share is largest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MIN_ROUNDS, acalls_for, acompare, calls_for, compare, per_round
from hot_path import PRE_POST, REQUEST_1K, TEXT_1K, asgi_caller, budget, check_asgi, config, starlette_app
from prometheus_client import CollectorRegistry

import mcp_plugin_mw as mw
from mcp_plugin_mw import metrics


def build(options: Any) -> tuple[dict[str, mw.PluginManager], CollectorRegistry]:
    managers = {
        name: mw.PluginManager(config(options.plugins, PRE_POST), environ={}) for name in ("off", "on", "objects")
    }
    registry = CollectorRegistry()
    metrics.enable(managers["on"], registry)
    managers["objects"].add_observer(metrics._Observer(metrics._Families(CollectorRegistry())))
    return managers, registry


def added(figures: dict[str, Any], unit: str, per: int) -> None:
    """Print each runner's ratio to ``off`` and its added µs per ``unit`` and per plugin call."""
    for name in ("on", "objects"):
        extra = per_round(figures, lambda t, name=name: t[name] - t["off"])
        figures["runners"][name]["added_us"] = extra
        ratio = figures["runners"][name]["ratio"]
        print(
            f"  {name}: {ratio['median']:.3f}x off [{ratio['min']:.3f}-{ratio['max']:.3f}], "
            f"+{extra['median']:.2f} us per {unit}, +{extra['median'] / per:.2f} us per plugin call"
        )


def run_invoke(options: Any) -> dict[str, Any]:
    """The hook alone: ``invoke_sync`` of ``tool_pre_invoke`` (no HTTP, no mapping), where the observer shows most."""
    managers, _registry = build(options)
    payload = mw.ToolPreInvokePayload(name="search", args={"query": "q"})
    context = mw.GlobalContext(request_id="1")
    runners = {
        name: (lambda manager=manager: manager.invoke_sync("tool_pre_invoke", payload, context) and None)
        for name, manager in managers.items()
    }
    calls = calls_for(runners, budget(options.quick, 0.3), high=200_000)
    title = f"invoke_sync, {options.plugins} no-op plugins"
    figures = compare(runners, rounds=options.rounds, calls_per_round=calls, baseline="off", title=title)
    added(figures, "invocation", options.plugins)
    for manager in managers.values():
        manager.close()
    return figures


async def run(options: Any) -> dict[str, Any]:
    managers, registry = build(options)
    runners = {
        name: asgi_caller(mw.PluginMiddleware(starlette_app(TEXT_1K), manager=manager), REQUEST_1K)
        for name, manager in managers.items()
    }
    for name, call in runners.items():
        await check_asgi(name, call)
    calls = await acalls_for(runners, budget(options.quick, 0.4), high=20_000)
    title = f"metrics off vs on, {options.plugins} no-op plugins per direction, 1 KB tools/call"
    figures = await acompare(runners, rounds=options.rounds, calls_per_round=calls, baseline="off", title=title)
    added(figures, "request", 2 * options.plugins)  # both hooks ran every plugin once per request
    counted = registry.get_sample_value(
        "mcp_plugin_mw_hook_invocations_total", {"hook": "tool_pre_invoke", "outcome": "passed"}
    )
    print(f"  (the on runner counted {counted:.0f} tool_pre_invoke invocations)")
    for manager in managers.values():
        await manager.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins", type=int, default=5, help="no-op plugins per direction")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--quick", action="store_true", help="shorter runs (the same number of rounds)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    options = parser.parse_args()
    figures = {"asgi": asyncio.run(run(options))}
    print()
    figures["invoke"] = run_invoke(options)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
