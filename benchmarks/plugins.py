"""
Built-in plugins vs cpex's Rust plugins, on the same payloads
=============================================================

``pii_filter``, ``secrets_detection`` and ``deny_list`` (1000 terms) on a
``tool_pre_invoke`` payload of about 1 KB and 64 KB of text, through our
``PluginManager`` (``invoke_sync``, as a WSGI app calls it, and ``invoke``),
and cpex 0.1.x with cpex-pii-filter and cpex-secrets-detection through cpex's
``PluginManager.invoke_hook``, side by side in one run. Prints microseconds
per call and cpex/ours ratios (above 1.0: we are faster).

    pip install -e '.[bench,fast]'
    python benchmarks/plugins.py [--calls 2000]

The text is deterministic prose with a few emails, phone numbers and card
numbers per KB, and no secrets (the common case: scanning clean text); both
sides run in redact mode so that each does the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mcp_plugin_mw as mw

WORDS = (
    "the quarterly report shows revenue growth across all regions while support tickets fell "
    "customers asked about billing cycles and the new dashboard release notes mention latency "
    "improvements for search queries and faster exports of large spreadsheets to the archive"
).split()
PII = ["jane.doe@example.com", "(415) 555-0172", "4111 1111 1111 1111", "+44 20 7946 0958", "192.0.2.44"]


def text_of(size: int, seed: int = 7) -> str:
    """Prose of about ``size`` bytes with a PII item every ~300 bytes."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(PII) if rng.random() < 0.03 else rng.choice(WORDS)
        parts.append(word)
        length += len(word) + 1
    return " ".join(parts)[:size]


def deny_terms(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(5, 12))) for _ in range(count)]


OURS: dict[str, dict[str, Any]] = {
    "pii_filter": {"kind": "pii_filter", "config": {"strategy": "redact"}},
    "secrets_detection": {"kind": "secrets_detection", "config": {"action": "redact"}},
    "deny_list (1000 terms)": {"kind": "deny_list", "config": {"terms": deny_terms(1000), "whole_word": True}},
}

CPEX: dict[str, tuple[str, dict[str, Any]]] = {
    "pii_filter": (
        "cpex_pii_filter.pii_filter.PIIFilterPlugin",
        {"block_on_detection": False, "default_mask_strategy": "redact"},
    ),
    "secrets_detection": (
        "cpex_secrets_detection.secrets_detection.SecretsDetectionPlugin",
        {"block_on_detection": False, "redact": True},
    ),
}


def median_us(run: Any, repeats: int) -> float:
    return statistics.median(run() for _ in range(repeats))


def ours_manager(name: str) -> mw.PluginManager:
    entry = {"name": "p", "hooks": ["tool_pre_invoke"], **OURS[name]}
    return mw.PluginManager({"plugins": [entry]})


def time_ours_sync(manager: mw.PluginManager, text: str, calls: int) -> float:
    payload = mw.ToolPreInvokePayload(name="search", args={"query": text})
    manager.invoke_sync("tool_pre_invoke", payload)
    start = time.perf_counter()
    for index in range(calls):
        manager.invoke_sync("tool_pre_invoke", payload, mw.GlobalContext(request_id=str(index)))
    return (time.perf_counter() - start) / calls * 1e6


def time_ours_async(manager: mw.PluginManager, text: str, calls: int) -> float:
    payload = mw.ToolPreInvokePayload(name="search", args={"query": text})

    async def run() -> float:
        await manager.invoke("tool_pre_invoke", payload)
        start = time.perf_counter()
        for index in range(calls):
            await manager.invoke("tool_pre_invoke", payload, mw.GlobalContext(request_id=str(index)))
        return (time.perf_counter() - start) / calls * 1e6

    return asyncio.run(run())


def time_cpex(name: str, text: str, calls: int, directory: Path) -> float | None:
    try:
        from cpex.framework import GlobalContext, PluginManager, ToolPreInvokePayload
    except ImportError:
        return None
    kind, config = CPEX[name]
    path = directory / f"{kind.rsplit('.', 1)[-1]}.yaml"
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "plugins": [
                    {"name": "p", "kind": kind, "hooks": ["tool_pre_invoke"], "mode": "sequential", "config": config}
                ],
                "plugin_dirs": [],
            }
        )
    )
    payload = ToolPreInvokePayload(name="search", args={"query": text})

    async def run() -> float:
        PluginManager.reset()
        manager = PluginManager(str(path), timeout=30)
        await manager.initialize()
        await manager.invoke_hook("tool_pre_invoke", payload, GlobalContext(request_id="warm"))
        start = time.perf_counter()
        for index in range(calls):
            await manager.invoke_hook("tool_pre_invoke", payload, GlobalContext(request_id=str(index)))
        elapsed = (time.perf_counter() - start) / calls * 1e6
        await manager.shutdown()
        return elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement on 1 KB (64 KB uses 1/16)")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    print(f"python {sys.version.split()[0]}; median of {options.repeats} rounds")
    print(f"{'plugin':<24} {'size':>5} {'ours sync us':>13} {'ours async us':>14} {'cpex us':>9} {'cpex/ours':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in OURS:
            manager = ours_manager(name)
            for size, label in ((1024, "1 KB"), (64 * 1024, "64 KB")):
                text = text_of(size)
                calls = options.calls if size == 1024 else max(options.calls // 16, 20)
                ours_sync = median_us(lambda: time_ours_sync(manager, text, calls), options.repeats)
                ours_async = median_us(lambda: time_ours_async(manager, text, calls), options.repeats)
                cpex = None
                if name in CPEX:
                    measured = [time_cpex(name, text, calls, Path(tmp)) for _ in range(options.repeats)]
                    cpex = statistics.median(m for m in measured if m is not None) if all(measured) else None
                cpex_text = f"{cpex:9.1f}" if cpex is not None else f"{'-':>9}"
                ratio = f"{cpex / ours_sync:9.2f}x" if cpex is not None else f"{'-':>10}"
                print(f"{name:<24} {label:>5} {ours_sync:13.1f} {ours_async:14.1f} {cpex_text} {ratio}")
            manager.close()


if __name__ == "__main__":
    main()
