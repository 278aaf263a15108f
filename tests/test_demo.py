"""The demo, the project's main job: ``mcp-plugin-mw demo --check``."""

from __future__ import annotations

from click.testing import CliRunner

from mcp_plugin_mw.cli import main
from mcp_plugin_mw.demo.check import run_check
from mcp_plugin_mw.demo.server import build_app


def test_demo_check_passes_and_prints_a_row_per_plugin() -> None:
    result = CliRunner().invoke(main, ["demo", "--check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for plugin in ("pii", "deny_list", "rewrite", "rate_limit", "audit"):
        row = next(line for line in lines if line.startswith(plugin + " "))
        assert row.rstrip().endswith("yes"), row


def test_demo_check_fails_when_a_plugin_misbehaves() -> None:
    # Without the rewrite plugin the regex row cannot pass, and the check must say so.
    import yaml

    from mcp_plugin_mw.demo import check as module
    from mcp_plugin_mw.demo.server import CONFIG

    config = yaml.safe_load(CONFIG.read_text())
    config["plugins"] = [p for p in config["plugins"] if p["name"] != "rewrite"]
    original = module.build_app
    module.build_app = lambda: build_app(config)  # type: ignore[assignment]
    printed: list[str] = []
    try:
        assert run_check(printed.append) is False
    finally:
        module.build_app = original  # type: ignore[assignment]
    assert any(line.startswith("rewrite ") and line.rstrip().endswith("NO") for line in printed)


def test_the_banners_recipes_run_when_pasted_into_a_shell(tmp_path) -> None:
    # `mcp-plugin-mw demo` in a real process; the lines it prints are run by bash as printed.
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from mcp_plugin_mw.demo.server import curl_recipe, python_recipe
    from tests.redis_fixture import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    server = subprocess.Popen(
        [sys.executable, "-m", "mcp_plugin_mw", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo did not start"
                time.sleep(0.1)
        # A bare tools/call is refused: the recipe's session steps are needed.
        bare = httpx.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ping", "arguments": {}}},
            headers={"accept": "application/json, text/event-stream"},
        )
        assert bare.status_code == 400
        for recipe in (curl_recipe(url), python_recipe(url)):
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", recipe],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert "Ada Lovelace, [REDACTED:EMAIL], phone [REDACTED:PHONE], SSN [REDACTED:SSN]" in done.stdout
    finally:
        server.terminate()
        banner = server.communicate(timeout=30)[0]
    assert curl_recipe(url) in banner
    assert python_recipe(url) in banner
