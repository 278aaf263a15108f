"""``mcp-plugin-mw validate FILE`` and ``mcp-plugin-mw plugins FILE``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mcp_plugin_mw.cli import main

GOOD = """\
plugin_settings:
  plugin_timeout: 5
plugins:
  - name: upper
    kind: tests.sample_plugins.Upper
    hooks: [tool_pre_invoke, tool_post_invoke]
    priority: 10
    timeout: 2
  - name: watcher
    kind: tests.sample_plugins.Observer
    flow: request
    mode: permissive
  - name: quiet
    kind: tests.sample_plugins.Tag
    category: audit
    mode: disabled
"""

BAD = """\
plugins:
  - name: a
    kind: tests.sample_plugins.Upper
    mode: strict
  - name: b
    kind: tests.sample_plugins.Upper
    bogus: 1
"""

UNLOADABLE = """\
plugins:
  - name: missing
    kind: no_such_pkg_mw.Thing
  - name: exploding
    kind: tests.sample_plugins.Exploding
"""


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plugins.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_good_file(tmp_path):
    path = write(tmp_path, GOOD)
    result = run("validate", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: OK (3 plugins, 2 active)"


def test_validate_lists_every_problem(tmp_path):
    path = write(tmp_path, BAD)
    result = run("validate", str(path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: invalid (2 problems)"
    assert lines[1].startswith("  plugins[0].mode: Input should be 'enforce'")
    assert lines[2] == "  plugins[1].bogus: unknown key"
    assert "OK" not in result.output


def test_validate_loads_the_plugins(tmp_path):
    path = write(tmp_path, UNLOADABLE)
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert "plugins[0] (missing): cannot import module 'no_such_pkg_mw'" in result.stderr
    assert "plugins[1] (exploding): Exploding(...) raised RuntimeError: constructor exploded" in result.stderr


def test_validate_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = run("validate", str(missing))
    assert result.exit_code == 1
    assert f"{missing}: file not found" in result.stderr


def test_validate_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "plugins:\n  - name: a\n    kind: [oops\n  - name: b\n")
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert f"{path}:4:9: YAML syntax error" in result.stderr


def test_plugins_table(tmp_path):
    path = write(tmp_path, GOOD)
    result = run("plugins", str(path))
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert rows == [
        ["name", "kind", "hooks", "flow", "category", "mode", "priority", "timeout"],
        [
            "upper",
            "tests.sample_plugins.Upper",
            "tool_pre_invoke,tool_post_invoke",
            "both",
            "content",
            "enforce",
            "10",
            "2s",
        ],
        [
            "watcher",
            "tests.sample_plugins.Observer",
            "tool_pre_invoke",
            "request",
            "observability",
            "permissive",
            "100",
            "5s",
        ],
        [
            "quiet",
            "tests.sample_plugins.Tag",
            ",".join(
                [
                    "tool_pre_invoke",
                    "tool_post_invoke",
                    "prompt_pre_fetch",
                    "prompt_post_fetch",
                    "resource_pre_fetch",
                    "resource_post_fetch",
                    "http_pre_request",
                    "http_post_request",
                    "tool_post_list",
                    "prompt_post_list",
                    "resource_post_list",
                    "server_message",
                    "client_message",
                ]
            ),
            "both",
            "audit",
            "disabled",
            "100",
            "5s",
        ],
    ]
    # Columns line up: every cell of a column starts at the same offset.
    lines = result.output.splitlines()
    header = lines[0]
    for column in ["kind", "hooks", "flow", "category", "mode", "priority", "timeout"]:
        offset = header.index(column)
        assert all(line[offset - 2 : offset] == "  " and line[offset] != " " for line in lines)


def test_plugins_with_a_bad_file(tmp_path):
    result = run("plugins", str(write(tmp_path, BAD)))
    assert result.exit_code == 1
    assert "plugins[1].bogus: unknown key" in result.stderr
