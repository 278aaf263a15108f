"""
One built-in plugin against its cpex Rust counterpart
=====================================================

What ``pii.py`` and ``secrets_detection.py`` share: the same
``tool_pre_invoke`` payload through our ``PluginManager`` (``invoke_sync``,
as a WSGI app calls it, and ``invoke``) and through cpex 0.1.4's
``PluginManager.invoke_hook``, both redacting, timed side by side by
``harness.py`` on one event loop. Before timing, both outputs are checked to
have lost what they must redact, so that neither side skips the work. The
ratio is cpex's time over ours per round; the target is at least 1.0x at
every size. cpex's manager refuses arguments over 1 000 000 characters: for
the 1 MB (MiB) run its ``MAX_PAYLOAD_SIZE`` is raised to 2 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import MIN_ROUNDS, acalls_for, acompare

import mcp_plugin_mw as mw

TARGET = 1.0


@dataclass(frozen=True)
class Contest:
    """Our plugin kind and cpex's, the text at each size, and what must be gone from the output."""

    name: str
    kind: str
    cpex_kind: str
    cpex_module: str
    cpex_config: dict[str, Any]
    text_of: Callable[[int], str]
    redacted: Callable[[str], list[str]]
    config: dict[str, Any] = field(default_factory=dict)


def label_of(kilobytes: int) -> str:
    return f"{kilobytes // 1024} MB" if kilobytes >= 1024 else f"{kilobytes} KB"


def cpex_manager(contest: Contest, directory: Path) -> Any:
    import cpex.framework.manager as cpex_module
    from cpex.framework import PluginManager

    cpex_module.MAX_PAYLOAD_SIZE = max(cpex_module.MAX_PAYLOAD_SIZE, 2 * 1024 * 1024)
    path = directory / f"cpex_{contest.name}.yaml"
    entry = {
        "name": "p",
        "kind": contest.cpex_kind,
        "hooks": ["tool_pre_invoke"],
        "mode": "sequential",
        "config": contest.cpex_config,
    }
    path.write_text(yaml.safe_dump({"plugins": [entry], "plugin_dirs": []}))
    PluginManager.reset()
    return PluginManager(str(path), timeout=30)


async def measure(contest: Contest, kilobytes: int, options: Any, directory: Path) -> dict[str, Any]:
    import cpex.framework as cpex

    text = contest.text_of(kilobytes * 1024)
    gone = contest.redacted(text)
    entry = {"name": "p", "kind": contest.kind, "hooks": ["tool_pre_invoke"], "config": contest.config}
    ours = mw.PluginManager({"plugins": [entry]})
    theirs = cpex_manager(contest, directory)
    await theirs.initialize()
    hook = mw.HookType.TOOL_PRE_INVOKE
    payload = mw.ToolPreInvokePayload(name="search", args={"query": text})
    cpex_payload = cpex.ToolPreInvokePayload(name="search", args={"query": text})

    mine = ours.invoke_sync(hook, payload).modified_payload
    their = (await theirs.invoke_hook("tool_pre_invoke", cpex_payload, cpex.GlobalContext(request_id="w")))[0]
    for side, changed in (("ours", mine), ("cpex", their.modified_payload)):
        if changed is None or any(value in changed.args["query"] for value in gone):
            raise SystemExit(f"{contest.name} {label_of(kilobytes)}: {side} did not redact")

    async def ours_sync() -> None:
        ours.invoke_sync(hook, payload, mw.GlobalContext(request_id="r"))

    async def ours_async() -> None:
        await ours.invoke(hook, payload, mw.GlobalContext(request_id="r"))

    async def cpex_call() -> None:
        await theirs.invoke_hook("tool_pre_invoke", cpex_payload, cpex.GlobalContext(request_id="r"))

    runners = {"ours invoke_sync": ours_sync, "ours invoke": ours_async, "cpex invoke_hook": cpex_call}
    seconds = 0.1 if options.quick else 0.4
    calls = await acalls_for(runners, seconds, low=2, high=20_000)
    try:
        return await acompare(
            runners,
            rounds=options.rounds,
            calls_per_round=calls,
            baseline="ours invoke_sync",
            warmup=min(calls, 20),
            title=f"{contest.name}, {label_of(kilobytes)} ({len(text)} chars, {len(gone)} values to redact)",
        )
    finally:
        await theirs.shutdown()
        await ours.aclose()


def main(contest: Contest, doc: str | None) -> None:
    """Parse the command line, run every size, print one row per size."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024], help="payload sizes in KB")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--quick", action="store_true", help="a quarter of the time per run")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    options = parser.parse_args()
    if options.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}")
    try:
        import cpex.framework  # noqa: F401

        __import__(contest.cpex_module)
    except ImportError:
        raise SystemExit(f"{contest.name} needs cpex and {contest.cpex_module} (pip install -e '.[bench]')") from None
    print(f"python {sys.version.split()[0]}, {options.rounds} rounds{', quick' if options.quick else ''}\n")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kilobytes in options.sizes:
            results[label_of(kilobytes)] = asyncio.run(measure(contest, kilobytes, options, Path(tmp)))
            print()
    width = len(contest.name) + 32
    print(f"{'measure':<{width}} {'ours us':>9} {'cpex us':>9} {'cpex/ours':>10} {'min-max':>13}  target   verdict")
    rows = []
    for label, figures in results.items():
        runners = figures["runners"]
        ratio = runners["cpex invoke_hook"]["ratio"]
        verdict = "PASS" if ratio["median"] >= TARGET else "MISS"
        rows.append({"measure": f"{contest.name} {label}", **ratio, "target": f">= {TARGET}x", "verdict": verdict})
        print(
            f"{contest.name + ' ' + label + ', cpex / ours invoke_sync':<{width}}"
            f" {runners['ours invoke_sync']['us_per_call']['median']:9.1f}"
            f" {runners['cpex invoke_hook']['us_per_call']['median']:9.1f}"
            f" {ratio['median']:9.2f}x {ratio['min']:6.2f}-{ratio['max']:<6.2f}  >= {TARGET}x  {verdict}"
        )
    if options.json:
        Path(options.json).write_text(json.dumps({"rows": rows, "sizes": results}, indent=1))
