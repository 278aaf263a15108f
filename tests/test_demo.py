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
