"""
``secrets_detection`` against cpex-secrets-detection (Rust) behind cpex's manager
================================================================================

The same ``tool_pre_invoke`` payload at 1 KB, 64 KB and 1 MB: ``plugins.text_of``
prose (with its PII items) and a secret every ~350 bytes, rotating through
an AWS access key id, a GitHub token, a Slack bot token, a Stripe secret key
and a Google API key (types both plugins detect, so both do the same
redactions), through our ``secrets_detection`` (``invoke_sync``, as a WSGI
app calls it, and ``invoke``) and through cpex 0.1.4's
``PluginManager.invoke_hook`` with cpex-secrets-detection 0.3.14
(``block_on_detection: false``, ``redact: true``), timed side by side by
``harness.py`` on one event loop. Before timing, both outputs are checked to
have lost every secret. The ratio is cpex's time over ours per round; the
target is at least 1.0x at every size. (Not ``secrets.py``: that name would
shadow the standard library's ``secrets``, which pydantic imports, for every
script in this directory. cpex's manager refuses arguments
over 1 000 000 characters: for the 1 MB (MiB) run its ``MAX_PAYLOAD_SIZE`` is
raised to 2 MiB.)

    python benchmarks/secrets_detection.py [--sizes 1 64 1024] [--rounds 7] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MIN_ROUNDS, acalls_for, acompare
from plugins import text_of

import mcp_plugin_mw as mw

TARGET = 1.0
CPEX_KIND = "cpex_secrets_detection.secrets_detection.SecretsDetectionPlugin"
CPEX_CONFIG = {"block_on_detection": False, "redact": True}
# Made up, but not placeholders: random-looking bodies of the right shapes.
SECRETS = [
    "AKIA2E0A8F3B244C9986",
    "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
]
EVERY = 350


def secret_text(size: int, seed: int = 3) -> str:
    """``text_of(size)`` with one of ``SECRETS`` after every ``EVERY`` characters, cut to ``size``."""
    rng = random.Random(seed)
    base = text_of(size)
    pieces: list[str] = []
    for position in range(0, len(base), EVERY):
        pieces.append(base[position : position + EVERY])
        pieces.append(f" {rng.choice(SECRETS)} ")
    text = "".join(pieces)[:size]
    # A secret cut short by the size is no longer that secret; end on a space.
    return text[: text.rfind(" ")]


def cpex_manager(directory: Path) -> Any:
    import cpex.framework.manager as cpex_module
    from cpex.framework import PluginManager

    # cpex refuses arguments over 1 000 000 characters; 1 MB here is 1 MiB.
    cpex_module.MAX_PAYLOAD_SIZE = max(cpex_module.MAX_PAYLOAD_SIZE, 2 * 1024 * 1024)

    path = directory / "cpex_secrets.yaml"
    entry = {"name": "p", "kind": CPEX_KIND, "hooks": ["tool_pre_invoke"], "mode": "sequential", "config": CPEX_CONFIG}
    path.write_text(yaml.safe_dump({"plugins": [entry], "plugin_dirs": []}))
    PluginManager.reset()
    return PluginManager(str(path), timeout=30)


def label_of(kilobytes: int) -> str:
    return f"{kilobytes // 1024} MB" if kilobytes >= 1024 else f"{kilobytes} KB"


async def measure(kilobytes: int, options: Any, directory: Path) -> dict[str, Any]:
    import cpex.framework as cpex

    text = secret_text(kilobytes * 1024)
    present = [secret for secret in SECRETS if secret in text]
    ours = mw.PluginManager(
        {"plugins": [{"name": "p", "kind": "secrets_detection", "hooks": ["tool_pre_invoke"], "config": {}}]}
    )
    theirs = cpex_manager(directory)
    await theirs.initialize()
    hook = mw.HookType.TOOL_PRE_INVOKE
    payload = mw.ToolPreInvokePayload(name="search", args={"query": text})
    cpex_payload = cpex.ToolPreInvokePayload(name="search", args={"query": text})

    # Both must really redact, every secret: otherwise one side may be skipping the work.
    mine = ours.invoke_sync(hook, payload).modified_payload
    their = (await theirs.invoke_hook("tool_pre_invoke", cpex_payload, cpex.GlobalContext(request_id="w")))[0]
    for side, changed in (("ours", mine), ("cpex", their.modified_payload)):
        if changed is None or any(secret in changed.args["query"] for secret in present):
            raise SystemExit(f"secrets {label_of(kilobytes)}: {side} did not redact")

    async def ours_sync() -> None:
        ours.invoke_sync(hook, payload, mw.GlobalContext(request_id="r"))

    async def ours_async() -> None:
        await ours.invoke(hook, payload, mw.GlobalContext(request_id="r"))

    async def cpex_call() -> None:
        await theirs.invoke_hook("tool_pre_invoke", cpex_payload, cpex.GlobalContext(request_id="r"))

    runners = {"ours invoke_sync": ours_sync, "ours invoke": ours_async, "cpex invoke_hook": cpex_call}
    seconds = 0.1 if options.quick else 0.4
    calls = await acalls_for(runners, seconds, low=2, high=20_000)
    count = sum(text.count(secret) for secret in SECRETS)
    try:
        return await acompare(
            runners,
            rounds=options.rounds,
            calls_per_round=calls,
            baseline="ours invoke_sync",
            warmup=min(calls, 20),
            title=f"secrets_detection, {label_of(kilobytes)} ({len(text)} chars, {count} secrets)",
        )
    finally:
        await theirs.shutdown()
        await ours.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024], help="payload sizes in KB")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--quick", action="store_true", help="a quarter of the time per run")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    options = parser.parse_args()
    if options.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}")
    try:
        import cpex.framework  # noqa: F401
        import cpex_secrets_detection  # noqa: F401
    except ImportError:
        raise SystemExit(
            "secrets_detection.py needs cpex and cpex-secrets-detection (pip install -e '.[bench]')"
        ) from None
    print(f"python {sys.version.split()[0]}, {options.rounds} rounds{', quick' if options.quick else ''}\n")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kilobytes in options.sizes:
            results[label_of(kilobytes)] = asyncio.run(measure(kilobytes, options, Path(tmp)))
            print()
    print(f"{'measure':<51} {'ours us':>9} {'cpex us':>9} {'cpex/ours':>10} {'min-max':>13}  target   verdict")
    rows = []
    for label, figures in results.items():
        runners = figures["runners"]
        ratio = runners["cpex invoke_hook"]["ratio"]
        ok = "PASS" if ratio["median"] >= TARGET else "MISS"
        rows.append({"measure": f"secrets_detection {label}", **ratio, "target": f">= {TARGET}x", "verdict": ok})
        print(
            f"{'secrets_detection ' + label + ', cpex / ours invoke_sync':<51}"
            f" {runners['ours invoke_sync']['us_per_call']['median']:9.1f}"
            f" {runners['cpex invoke_hook']['us_per_call']['median']:9.1f}"
            f" {ratio['median']:9.2f}x {ratio['min']:6.2f}-{ratio['max']:<6.2f}  >= {TARGET}x  {ok}"
        )
    if options.json:
        Path(options.json).write_text(json.dumps({"rows": rows, "sizes": results}, indent=1))


if __name__ == "__main__":
    main()
