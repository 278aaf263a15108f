"""The ``mcp-plugin-mw`` command: validate, plugins, kinds, init, demo --config, help and completion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
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


def write(tmp_path: Path, text: str, name: str = "plugins.yaml") -> Path:
    path = tmp_path / name
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


# --------------------------------------------------------------------------
# The first hour: help, python -m, JSON, several files, $MCP_PLUGIN_MW_CONFIG,
# --app-dir, kinds, init, demo --config, completion
# --------------------------------------------------------------------------

PLUGIN_MODULE = """\
import mcp_plugin_mw as mw


class Quiet(mw.Plugin):
    \"\"\"Lets everything pass.\"\"\"

    def tool_pre_invoke(self, payload, context):
        return None
"""


@pytest.fixture
def isolated_imports(monkeypatch):
    """Put sys.path and the modules the test imports back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("cli_test_"):
            del sys.modules[name]


def test_dash_h_is_help_everywhere():
    assert run("-h").exit_code == 0
    assert "Usage: main [OPTIONS] COMMAND" in run("-h").output
    for name in main.commands:
        result = run(name, "-h")
        assert result.exit_code == 0, (name, result.output)
        assert result.output.startswith(f"Usage: main {name} "), name
        assert "-h, --help" in result.output, name


def test_python_dash_m_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "mcp_plugin_mw", "-h"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: mcp-plugin-mw [OPTIONS] COMMAND [ARGS]...")
    assert "validate" in done.stdout


def test_one_plugin_is_singular(tmp_path):
    path = write(tmp_path, "plugins:\n  - name: u\n    kind: tests.sample_plugins.Upper\n")
    assert run("validate", str(path)).output.strip() == f"{path}: OK (1 plugin, 1 active)"
    bad = write(tmp_path, "plugins:\n  - name: u\n    kind: tests.sample_plugins.Upper\n    mode: strict\n", "bad.yaml")
    assert run("validate", str(bad)).stderr.splitlines()[0] == f"{bad}: invalid (1 problem)"


def test_validate_json(tmp_path):
    good, bad = write(tmp_path, GOOD), write(tmp_path, BAD, "bad.yaml")
    result = run("validate", "--json", str(good), str(bad))
    assert result.exit_code == 1
    reports = json.loads(result.stdout)
    assert reports[0] == {"file": str(good), "ok": True, "plugins": 3, "active": 2, "problems": []}
    assert reports[1]["file"] == str(bad)
    assert reports[1]["ok"] is False
    assert "plugins[1].bogus: unknown key" in reports[1]["problems"]
    assert result.stderr == ""


def test_validate_several_files(tmp_path):
    good, bad = write(tmp_path, GOOD), write(tmp_path, BAD, "bad.yaml")
    result = run("validate", str(good), str(bad))
    assert result.exit_code == 1
    assert f"{good}: OK (3 plugins, 2 active)" in result.stdout
    assert f"{bad}: invalid (2 problems)" in result.stderr
    assert run("validate", str(good), str(good)).exit_code == 0


def test_validate_reads_the_config_variable(tmp_path):
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(main, ["validate"], env={"MCP_PLUGIN_MW_CONFIG": str(path)})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: OK (3 plugins, 2 active)"
    result = CliRunner().invoke(main, ["validate"], env={"MCP_PLUGIN_MW_CONFIG": ""})
    assert result.exit_code == 2
    assert "no FILE given and $MCP_PLUGIN_MW_CONFIG is not set" in result.stderr


def test_validate_reports_every_problem_in_one_run(tmp_path):
    # Schema errors, a duplicate name, a class path that does not import and a
    # built-in plugin's misspelt key: all on the first run, with hints.
    path = write(
        tmp_path,
        """\
plugin_settings:
  plugin_timout: 5
plugins:
  - name: a
    kind: tests.sample_plugins.Upper
    mode: strict
  - name: b
    kind: tests.sample_plugins.Upper
    hoks: [tool_pre_invoke]
  - name: b
    kind: no_such_pkg_mw.Thing
  - name: pii
    kind: pii_filter
    config: {strategi: partial}
  - name: typo
    kind: pii_filtr
""",
    )
    result = run("validate", str(path))
    assert result.exit_code == 1
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert result.stderr.splitlines()[0] == f"{path}: invalid ({len(problems)} problems)"
    expected = [
        "plugin_settings.plugin_timout: unknown key (did you mean 'plugin_timeout'?)",
        "plugins[0].mode: Input should be",
        "plugins[1].hoks: unknown key (did you mean 'hooks'?)",
        "plugins[2].name: duplicate name 'b' (also plugins[1])",
        "plugins[2] (b): cannot import module 'no_such_pkg_mw': ModuleNotFoundError",
        "plugins[3] (pii): PIIFilterPlugin(...) raised ValueError: config.strategi: Extra inputs are not permitted "
        "(did you mean 'strategy'?)",
        "plugins[4] (typo): unknown kind 'pii_filtr'",
    ]
    for start in expected:
        assert any(problem.startswith(start) for problem in problems), (start, problems)
    assert len(problems) == len(expected)
    assert any(problem.endswith("did you mean 'pii_filter'?") for problem in problems)


def test_class_paths_resolve_from_the_yaml_folder(tmp_path, monkeypatch, isolated_imports):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "cli_test_beside.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    path = write(folder, "plugins:\n  - name: q\n    kind: cli_test_beside.Quiet\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run("validate", str(path))
    assert result.exit_code == 0, result.output
    assert str(folder) not in sys.path  # only while the module was imported


def test_an_unimportable_class_path_says_where_it_looked(tmp_path, isolated_imports):
    path = write(tmp_path, "plugins:\n  - name: q\n    kind: cli_test_nowhere.Quiet\n")
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert f"(looked in the configuration's folder {tmp_path.resolve()}, then on sys.path: " in result.stderr


def test_validate_app_dir(tmp_path, isolated_imports):
    plugins_dir = tmp_path / "src"
    plugins_dir.mkdir()
    (plugins_dir / "cli_test_appdir.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    path = write(tmp_path, "plugins:\n  - name: q\n    kind: cli_test_appdir.Quiet\n")
    assert run("validate", str(path)).exit_code == 1
    sys.modules.pop("cli_test_appdir", None)
    result = run("validate", "--app-dir", str(plugins_dir), str(path))
    assert result.exit_code == 0, result.output
    assert sys.path[0] == str(plugins_dir)


def test_plugins_json(tmp_path):
    result = run("plugins", "--json", str(write(tmp_path, GOOD)))
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert listed[0] == {
        "name": "upper",
        "kind": "tests.sample_plugins.Upper",
        "hooks": ["tool_pre_invoke", "tool_post_invoke"],
        "flow": "both",
        "category": "content",
        "mode": "enforce",
        "priority": 10,
        "timeout": 2.0,
    }
    assert [plugin["name"] for plugin in listed] == ["upper", "watcher", "quiet"]
    assert listed[1]["timeout"] == 5.0


def test_kinds_lists_built_ins_and_entry_points():
    result = run("kinds")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split(None, 1)[1] for line in result.output.splitlines()}
    for kind in ("external", "cpex", "mcpd", "pii_filter", "deny_list", "rate_limiter", "audit_log"):
        assert kind in lines, kind
    from mcp_plugin_mw.plugins.pii import PIIFilterPlugin

    assert lines["pii_filter"] == PIIFilterPlugin.__doc__.strip().splitlines()[0]
    listed = json.loads(run("kinds", "--json").output)
    assert {"kind", "description"} == set(listed[0])
    assert [item["kind"] for item in listed] == list(lines)


def test_init_writes_files_that_validate(tmp_path, isolated_imports):
    target = tmp_path / "new"
    result = run("init", str(target))
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in target.iterdir()) == ["my_plugins.py", "plugins.yaml"]
    sys.modules.pop("my_plugins", None)
    checked = run("validate", str(target / "plugins.yaml"))
    assert checked.exit_code == 0, checked.output
    assert checked.output.strip() == f"{target / 'plugins.yaml'}: OK (2 plugins, 2 active)"
    sys.modules.pop("my_plugins", None)


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    (tmp_path / "plugins.yaml").write_text("# mine\n", encoding="utf-8")
    result = run("init", str(tmp_path))
    assert result.exit_code == 1
    assert "not overwriting" in result.stderr
    assert "plugins.yaml" in result.stderr
    assert (tmp_path / "plugins.yaml").read_text() == "# mine\n"
    assert not (tmp_path / "my_plugins.py").exists()
    assert run("init", "--force", str(tmp_path)).exit_code == 0
    assert (tmp_path / "plugins.yaml").read_text().startswith("# Written by `mcp-plugin-mw init`")


def test_init_defaults_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("init").exit_code == 0
    assert (tmp_path / "plugins.yaml").exists()
    assert (tmp_path / "my_plugins.py").exists()


def test_demo_config_with_a_bad_file_stops_before_serving(tmp_path):
    result = run("demo", "--config", str(write(tmp_path, BAD)))
    assert result.exit_code == 1
    assert "plugins[1].bogus: unknown key" in result.stderr
    assert "MCP server on" not in result.output


def test_demo_check_with_config(tmp_path):
    from mcp_plugin_mw.demo.server import CONFIG

    path = write(tmp_path, CONFIG.read_text(encoding="utf-8"))
    result = run("demo", "--check", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("demo server on http://127.0.0.1:")


def test_shell_completion_prints_a_script():
    result = CliRunner().invoke(main, [], prog_name="mcp-plugin-mw", env={"_MCP_PLUGIN_MW_COMPLETE": "bash_source"})
    assert result.exit_code == 0
    assert "_mcp_plugin_mw_completion()" in result.output
    assert "complete -o nosort -F _mcp_plugin_mw_completion mcp-plugin-mw" in result.output
