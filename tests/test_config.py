"""Configuration loading (DESIGN §5): files, ${VAR} expansion, env overrides, validation messages."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

import mcp_plugin_mw as mw
from mcp_plugin_mw import Config, ConfigError, PluginConfig, PluginManager, PluginMode
from mcp_plugin_mw.config import load_config
from tests.sample_plugins import entry, tool_pre


def problems_of(source: Any, **kwargs: Any) -> list[str]:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as caught:
        load_config(source, **kwargs)
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "plugins.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD_YAML = """\
plugin_settings:
  plugin_timeout: 5
  fail_on_plugin_error: true
  excluded_urls: ["^/health$"]
plugins:
  - name: upper
    kind: tests.sample_plugins.Upper
    hooks: [tool_pre_invoke]
    flow: request
    priority: 10
    timeout: 2
    conditions: [{tools: [search], user_patterns: ["^admin_"]}]
  - name: tag
    kind: tests.sample_plugins:Tag
    category: audit
    mode: permissive
"""


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


@pytest.mark.parametrize("as_type", [str, Path])
def test_loads_a_yaml_file(tmp_path, as_type):
    config = load_config(as_type(write(tmp_path, GOOD_YAML)), environ={})
    assert config.plugin_settings.plugin_timeout == 5
    assert config.plugin_settings.fail_on_plugin_error is True
    assert config.plugin_settings.excluded_urls == ["^/health$"]
    upper, tag = config.plugins
    assert upper.name == "upper"
    assert upper.hooks == [mw.HookType.TOOL_PRE_INVOKE]
    assert upper.flow is mw.Flow.REQUEST
    assert upper.priority == 10
    assert upper.timeout == 2
    assert upper.conditions[0].tools == ["search"]
    assert upper.conditions[0].user_patterns == ["^admin_"]
    assert tag.category is mw.Category.AUDIT
    assert tag.mode is PluginMode.PERMISSIVE
    assert tag.flow is mw.Flow.BOTH  # default


def test_defaults():
    config = load_config(None, environ={})
    settings = config.plugin_settings
    assert config.plugins == []
    assert settings.enabled is True
    assert settings.plugin_timeout == 30
    assert settings.fail_on_plugin_error is False
    assert settings.max_body_bytes == 1048576
    assert settings.parallel_execution_within_band is False
    assert settings.excluded_urls == []
    plugin = PluginConfig(name="p", kind="a.B")
    assert (plugin.mode, plugin.flow, plugin.priority, plugin.timeout) == (PluginMode.ENFORCE, mw.Flow.BOTH, 100, None)


def test_an_empty_file_is_an_empty_config(tmp_path):
    assert load_config(write(tmp_path, "# nothing yet\n"), environ={}).plugins == []


def test_mapping_and_config_sources_are_equivalent(tmp_path):
    from_file = load_config(write(tmp_path, GOOD_YAML), environ={})
    from_mapping = load_config(from_file.model_dump(), environ={})
    from_object = load_config(from_file, environ={})
    assert from_mapping == from_file
    assert from_object == from_file


def test_a_config_object_using_required_loads(make_manager):
    # PluginConfig(required=True) sets mode itself; loading that object again
    # must not see "both required and mode".
    source = Config(plugins=[PluginConfig(name="upper", kind="tests.sample_plugins.Upper", required=False)])
    config = load_config(source, environ={})
    assert config.plugins[0].mode is PluginMode.ENFORCE_IGNORE_ERROR
    manager = PluginManager(source, environ={})
    try:
        assert manager.plugins[0].mode is PluginMode.ENFORCE_IGNORE_ERROR
    finally:
        manager.close()


def test_the_source_mapping_is_not_mutated():
    source = {"plugin_settings": {"plugin_timeout": 3}, "plugins": [{"name": "a", "kind": "${K:-x.Y}"}]}
    load_config(source, settings={"plugin_timeout": 9}, environ={"MCP_PLUGIN_MW_MAX_BODY_BYTES": "10"})
    assert source == {"plugin_settings": {"plugin_timeout": 3}, "plugins": [{"name": "a", "kind": "${K:-x.Y}"}]}


@pytest.mark.parametrize(("required", "mode"), [(True, PluginMode.ENFORCE), (False, PluginMode.ENFORCE_IGNORE_ERROR)])
def test_required_is_shorthand_for_mode(required, mode):
    config = load_config(
        {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "required": required}]}, environ={}
    )
    assert config.plugins[0].mode is mode


# --------------------------------------------------------------------------
# ${VAR} expansion
# --------------------------------------------------------------------------


def _expanded(value: Any, environ: dict[str, str]) -> Any:
    config = load_config(
        {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "config": {"value": value}}]}, environ=environ
    )
    return config.plugins[0].config["value"]


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${HOST}", {"HOST": "example.org"}, "example.org"),
        ("https://${HOST}:${PORT}/x", {"HOST": "h", "PORT": "8"}, "https://h:8/x"),
        ("${PORT:-8080}", {}, "8080"),
        ("${PORT:-8080}", {"PORT": "9090"}, "9090"),
        ("${PORT:-}", {}, ""),
        ("${PORT:-8080}", {"PORT": ""}, "8080"),  # :- also covers set-but-empty, as in the shell
        ("${EMPTY}", {"EMPTY": ""}, ""),  # set-but-empty with no default is not an error
        ("$${HOST}", {}, "${HOST}"),  # literal
        ("$${HOST} is ${HOST}", {"HOST": "h"}, "${HOST} is h"),
        ("price: $5 {x}", {}, "price: $5 {x}"),  # only ${...} is special
        (["${A}", {"deep": ["${B:-b}"]}], {"A": "a"}, ["a", {"deep": ["b"]}]),
        (42, {}, 42),
    ],
)
def test_variable_expansion(value, environ, expected):
    assert _expanded(value, environ) == expected


def test_expanded_values_are_validated_like_written_ones():
    config = load_config(
        {
            "plugin_settings": {"plugin_timeout": "${T}"},
            "plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "priority": "${P:-7}"}],
        },
        environ={"T": "2.5"},
    )
    assert config.plugin_settings.plugin_timeout == 2.5
    assert config.plugins[0].priority == 7


def test_expansion_in_a_file(tmp_path):
    path = write(tmp_path, "plugins:\n  - name: a\n    kind: ${KIND}\n    config: {url: '${URL:-http://localhost}'}\n")
    config = load_config(path, environ={"KIND": "pkg.mod.Cls"})
    assert config.plugins[0].kind == "pkg.mod.Cls"
    assert config.plugins[0].config == {"url": "http://localhost"}


def test_missing_variable_is_an_error_naming_it_and_where():
    problems = problems_of(
        {
            "plugins": [
                {
                    "name": "a",
                    "kind": "tests.sample_plugins.Upper",
                    "config": {"url": "${API_URL}", "keys": ["${API_KEY}"]},
                }
            ]
        }
    )
    assert problems == [
        "plugins[0].config.url: environment variable API_URL is not set and has no default",
        "plugins[0].config.keys[0]: environment variable API_KEY is not set and has no default",
    ]


def test_os_environ_is_the_default_environment(monkeypatch):
    monkeypatch.setenv("MW_TEST_KIND", "from.os.Environ")
    monkeypatch.setenv("MCP_PLUGIN_MW_PLUGIN_TIMEOUT", "4")
    config = load_config({"plugins": [{"name": "a", "kind": "${MW_TEST_KIND}"}]})
    assert config.plugins[0].kind == "from.os.Environ"
    assert config.plugin_settings.plugin_timeout == 4


# --------------------------------------------------------------------------
# Environment overrides and precedence
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_file", "env", "setting", "expected"),
    [
        (None, None, None, 30.0),  # default
        (5, None, None, 5.0),  # file > default
        (5, "7", None, 7.0),  # env > file
        (None, "7", None, 7.0),
        (5, "7", 9, 9.0),  # constructor > env
        (5, None, 9, 9.0),
    ],
)
def test_precedence(make_manager, in_file, env, setting, expected):
    source: dict[str, Any] = {"plugin_settings": {} if in_file is None else {"plugin_timeout": in_file}}
    environ = {} if env is None else {"MCP_PLUGIN_MW_PLUGIN_TIMEOUT": env}
    settings = None if setting is None else {"plugin_timeout": setting}
    assert load_config(source, environ=environ, settings=settings).plugin_settings.plugin_timeout == expected
    manager = PluginManager(source, environ=environ, settings=settings)
    try:
        assert manager.settings.plugin_timeout == expected
    finally:
        manager.close()


async def test_env_plugin_timeout_reaches_the_executor(make_manager):
    manager = make_manager(
        [entry("sleeper", "Sleeper", mode="permissive")],
        environ={"MCP_PLUGIN_MW_PLUGIN_TIMEOUT": "0.05"},
    )
    result = await manager.invoke("tool_pre_invoke", tool_pre())
    assert result.records[0].error == "timed out after 0.05s"


def test_each_setting_variable():
    config = load_config(
        {"plugin_settings": {"max_body_bytes": 5, "excluded_urls": ["^/file$"]}},
        environ={
            "MCP_PLUGIN_MW_ENABLED": "false",
            "MCP_PLUGIN_MW_MAX_BODY_BYTES": "2048",
            "MCP_PLUGIN_MW_EXCLUDED_URLS": "^/health$, ^/metrics$,",
            "MCP_PLUGIN_MW_PLUGIN_TIMEOUT": "1.5",
        },
    )
    settings = config.plugin_settings
    assert settings.enabled is False
    assert settings.max_body_bytes == 2048
    assert settings.excluded_urls == ["^/health$", "^/metrics$"]
    assert settings.plugin_timeout == 1.5


def test_empty_env_variables_do_not_override():
    config = load_config({"plugin_settings": {"plugin_timeout": 3}}, environ={"MCP_PLUGIN_MW_PLUGIN_TIMEOUT": " "})
    assert config.plugin_settings.plugin_timeout == 3


def test_log_level_variable_sets_the_package_logger():
    logger = logging.getLogger("mcp_plugin_mw")
    before = logger.level
    try:
        config = load_config(None, environ={"MCP_PLUGIN_MW_LOG_LEVEL": "debug"})
        assert config.plugin_settings.log_level == "debug"
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(before)


def test_bad_env_value_names_the_variable():
    problems = problems_of(None, environ={"MCP_PLUGIN_MW_PLUGIN_TIMEOUT": "soon", "MCP_PLUGIN_MW_ENABLED": "maybe"})
    assert len(problems) == 2
    assert any(p.startswith("MCP_PLUGIN_MW_PLUGIN_TIMEOUT (plugin_settings.plugin_timeout): ") for p in problems)
    assert any(p.startswith("MCP_PLUGIN_MW_ENABLED (plugin_settings.enabled): ") for p in problems)


def test_bad_constructor_setting_is_reported_as_such():
    problems = problems_of(None, settings={"max_body_bytes": 0})
    assert problems == ["setting 'max_body_bytes' (plugin_settings.max_body_bytes): Input should be greater than 0"]


def test_unknown_log_level():
    assert problems_of(None, environ={"MCP_PLUGIN_MW_LOG_LEVEL": "LOUD"}) == [
        "plugin_settings.log_level: unknown level 'LOUD'"
    ]


async def test_enabled_false_runs_no_plugin(make_manager):
    plugins = [entry("blocker", "Blocker")]
    manager = make_manager(plugins, environ={"MCP_PLUGIN_MW_ENABLED": "false"})
    assert manager.plugins == []
    assert not manager.has_hooks_for("tool_pre_invoke")
    assert (await manager.invoke("tool_pre_invoke", tool_pre())).continue_processing
    assert manager.invoke_sync("tool_pre_invoke", tool_pre()).continue_processing
    # The constructor wins over the environment.
    forced = make_manager(plugins, environ={"MCP_PLUGIN_MW_ENABLED": "false"}, settings={"enabled": True})
    assert not forced.invoke_sync("tool_pre_invoke", tool_pre()).continue_processing


async def test_disabled_plugins_by_name(make_manager):
    manager = make_manager(
        [
            entry("blocker", "Blocker"),
            entry("upper", "Upper", hooks=["tool_pre_invoke"]),
            entry("other", "Blocker", hooks=["tool_post_invoke"]),
        ],
        environ={"MCP_PLUGIN_MW_DISABLED_PLUGINS": "blocker, other"},
    )
    modes = {plugin.name: plugin.mode for plugin in manager.plugins}
    assert modes == {"blocker": PluginMode.DISABLED, "upper": PluginMode.ENFORCE, "other": PluginMode.DISABLED}
    result = await manager.invoke("tool_pre_invoke", tool_pre("x"))
    assert result.continue_processing
    assert result.modified_payload.args == {"text": "X"}
    assert not manager.has_hooks_for("tool_post_invoke")


def test_disabled_plugins_star_disables_all(make_manager):
    manager = make_manager(
        [entry("blocker", "Blocker"), entry("upper", "Upper")], environ={"MCP_PLUGIN_MW_DISABLED_PLUGINS": "*"}
    )
    assert {plugin.mode for plugin in manager.plugins} == {PluginMode.DISABLED}
    assert not manager.has_hooks_for("tool_pre_invoke")
    assert manager.invoke_sync("tool_pre_invoke", tool_pre()).modified_payload is None


def test_disabled_plugins_unknown_name_is_an_error():
    problems = problems_of(
        {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper"}]},
        environ={"MCP_PLUGIN_MW_DISABLED_PLUGINS": "a,ghost"},
    )
    assert problems == ["MCP_PLUGIN_MW_DISABLED_PLUGINS: no plugin named 'ghost'"]


def test_config_variable_names_the_file(tmp_path, make_manager):
    path = write(tmp_path, GOOD_YAML)
    config = load_config(None, environ={"MCP_PLUGIN_MW_CONFIG": str(path)})
    assert [plugin.name for plugin in config.plugins] == ["upper", "tag"]
    manager = PluginManager(environ={"MCP_PLUGIN_MW_CONFIG": str(path)})
    try:
        assert [plugin.name for plugin in manager.plugins] == ["upper", "tag"]
    finally:
        manager.close()


def test_explicit_source_wins_over_config_variable(tmp_path):
    path = write(tmp_path, GOOD_YAML)
    config = load_config({"plugins": []}, environ={"MCP_PLUGIN_MW_CONFIG": str(path)})
    assert config.plugins == []


def test_config_variable_naming_a_missing_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert problems_of(None, environ={"MCP_PLUGIN_MW_CONFIG": str(missing)}) == [f"{missing}: file not found"]


# --------------------------------------------------------------------------
# Bad configurations, each with its message
# --------------------------------------------------------------------------


def test_file_not_found(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, environ={})
    assert caught.value.problems == [f"{missing}: file not found"]
    assert caught.value.source == str(missing)
    assert str(missing) in str(caught.value)


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "plugins:\n  - name: a\n    kind: [unclosed\n  - name: b\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:4:9: YAML syntax error: ")
    assert "expected ',' or ']'" in problem


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "- just\n- a list\n")
    assert problems_of(path) == [f"{path}: expected a mapping at the top, got list"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "bogus": 1}]},
            "plugins[0].bogus: unknown key",
        ),
        (
            {"plugin_settings": {"plugin_timout": 1}},
            "plugin_settings.plugin_timout: unknown key (did you mean 'plugin_timeout'?)",
        ),
        ({"plugin": []}, "plugin: unknown key (did you mean 'plugins'?)"),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "conditions": [{"tool": ["t"]}]}]},
            "plugins[0].conditions[0].tool: unknown key (did you mean 'tools'?)",
        ),
        ({"plugins": [{"name": "a"}]}, "plugins[0].kind: required key is missing"),
        (
            {"plugins": [{"name": "", "kind": "tests.sample_plugins.Upper"}]},
            "plugins[0].name: String should have at least 1 character",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "priority": "high"}]},
            "plugins[0].priority: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "timeout": 0}]},
            "plugins[0].timeout: Input should be greater than 0",
        ),
        ({"plugins": {"name": "a"}}, "plugins: Input should be a valid list"),
        (
            {
                "plugins": [
                    {"name": "a", "kind": "tests.sample_plugins.Upper", "hooks": ["tool_pre_invoke", "tool_pre_call"]}
                ]
            },
            "plugins[0].hooks[1]: Input should be 'tool_pre_invoke', 'tool_post_invoke', 'prompt_pre_fetch', "
            "'prompt_post_fetch', 'resource_pre_fetch', 'resource_post_fetch', 'http_pre_request', "
            "'http_post_request', 'tool_post_list', 'prompt_post_list', 'resource_post_list', 'server_message' or "
            "'client_message'",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "mode": "strict"}]},
            "plugins[0].mode: Input should be 'enforce', 'enforce_ignore_error', 'permissive' or 'disabled'",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "flow": "sideways"}]},
            "plugins[0].flow: Input should be 'request', 'response' or 'both'",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "category": "misc"}]},
            "plugins[0].category: Input should be 'observability', 'authentication', 'authorization', "
            "'rate_limiting', 'validation', 'content' or 'audit'",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "required": True, "mode": "permissive"}]},
            "plugins[0]: give either 'required' or 'mode', not both",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "hooks": []}]},
            "plugins[0].hooks: empty list; omit it to use the hooks the class implements",
        ),
        (
            {
                "plugins": [
                    {"name": "a", "kind": "tests.sample_plugins.Upper"},
                    {"name": "a", "kind": "tests.sample_plugins.Tag"},
                ]
            },
            "plugins[1].name: duplicate name 'a' (also plugins[0])",
        ),
    ],
)
def test_bad_config_messages(source, expected):
    assert problems_of(source) == [expected]


def test_invalid_regular_expressions_are_reported():
    problems = problems_of(
        {
            "plugin_settings": {"excluded_urls": ["^/ok$", "(["]},
            "plugins": [
                {"name": "a", "kind": "tests.sample_plugins.Upper", "conditions": [{}, {"user_patterns": ["*admin"]}]}
            ],
        }
    )
    assert len(problems) == 2
    assert problems[0].startswith("plugins[0].conditions[1].user_patterns[0]: invalid regular expression '*admin': ")
    assert problems[1].startswith("plugin_settings.excluded_urls[1]: invalid regular expression '([': ")


def test_several_problems_are_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        """\
plugin_settings:
  plugin_timeout: soon
  colour: blue
plugins:
  - name: a
    kind: tests.sample_plugins.Upper
    mode: strict
  - name: b
    kind: tests.sample_plugins.Upper
    hooks: [nope]
    flow: sideways
  - name: c
    kind: tests.sample_plugins.Upper
    required: true
    mode: enforce
extra: 1
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    problems = caught.value.problems
    assert sorted(problems) == sorted(
        [
            "plugin_settings.plugin_timeout: Input should be a valid number, unable to parse string as a number",
            "plugin_settings.colour: unknown key",
            "plugins[0].mode: Input should be 'enforce', 'enforce_ignore_error', 'permissive' or 'disabled'",
            "plugins[1].hooks[0]: Input should be 'tool_pre_invoke', 'tool_post_invoke', 'prompt_pre_fetch', "
            "'prompt_post_fetch', 'resource_pre_fetch', 'resource_post_fetch', 'http_pre_request', "
            "'http_post_request', 'tool_post_list', 'prompt_post_list', 'resource_post_list', 'server_message' or "
            "'client_message'",
            "plugins[1].flow: Input should be 'request', 'response' or 'both'",
            "plugins[2]: give either 'required' or 'mode', not both",
            "extra: unknown key",
        ]
    )
    message = str(caught.value)
    assert message.startswith(f"invalid plugin configuration in {path} (7 problems):\n")
    assert all(f"  {problem}" in message.splitlines() for problem in problems)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(1 problem\)"):
        load_config({"bogus": 1}, environ={})


def test_the_manager_reports_config_errors(tmp_path):
    with pytest.raises(ConfigError) as caught:
        PluginManager(tmp_path / "absent.yaml", environ={})
    assert caught.value.problems == [f"{tmp_path / 'absent.yaml'}: file not found"]


def test_every_problem_in_one_pass_including_the_plugins(tmp_path):
    # Schema errors used to hide duplicate names, class paths and plugins' own keys until a later run.
    source = {
        "plugin_settings": {"plugin_timout": 1},
        "plugins": [
            {"name": "a", "kind": "tests.sample_plugins.Upper", "mode": "strict"},
            {"name": "b", "kind": "tests.sample_plugins.Upper"},
            {"name": "b", "kind": "tests.sample_plugins.Uper"},
            {"name": "c", "kind": "deny_list", "config": {"term": ["x"]}},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        PluginManager(source, environ={})
    problems = caught.value.problems
    assert problems[0] == "plugin_settings.plugin_timout: unknown key (did you mean 'plugin_timeout'?)"
    assert problems[1].startswith("plugins[0].mode: Input should be")
    assert problems[2] == "plugins[2].name: duplicate name 'b' (also plugins[1])"
    assert problems[3] == (
        "plugins[2] (b): module 'tests.sample_plugins' has no attribute 'Uper'; did you mean 'Upper'?"
    )
    assert problems[4].startswith("plugins[3] (c): DenyListPlugin(...) raised ValueError: ")
    assert "config.term: Extra inputs are not permitted (did you mean 'terms'?)" in problems[4]
    assert len(problems) == 5


def test_semantic_problems_come_with_the_plugins_problems():
    with pytest.raises(ConfigError) as caught:
        load_config(
            {"plugins": [{"name": "a", "kind": "no_such_pkg_mw.X"}, {"name": "a", "kind": "tests.sample_plugins.Tag"}]},
            environ={},
        )
    assert caught.value.problems[0] == "plugins[1].name: duplicate name 'a' (also plugins[0])"
    assert caught.value.problems[1].startswith("plugins[0] (a): cannot import module 'no_such_pkg_mw'")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"plugin_timeout": 1}, "plugin_timeout: unknown key (did you mean 'plugin_settings.plugin_timeout'?)"),
        ({"plugin_setings": {}}, "plugin_setings: unknown key (did you mean 'plugin_settings'?)"),
        ({"plugin_timout": 1}, "plugin_timout: unknown key (did you mean 'plugin_settings.plugin_timeout'?)"),
        (
            {"plugin_settings": {"pending_calls": {"backend": "memory", "ttll": 1}}},
            "plugin_settings.pending_calls.ttll: unknown key (did you mean 'ttl'?)",
        ),
        (
            {"plugins": [{"name": "a", "kind": "tests.sample_plugins.Upper", "prority": 1}]},
            "plugins[0].prority: unknown key (did you mean 'priority'?)",
        ),
    ],
)
def test_unknown_keys_say_what_they_resemble(source, expected):
    assert problems_of(source) == [expected]


def test_class_paths_resolve_from_the_yaml_folder_on_reload(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "mw_test_beside_yaml.py").write_text(
        "import mcp_plugin_mw as mw\n\n\nclass P(mw.Plugin):\n    def tool_pre_invoke(self, payload, context):\n"
        "        return None\n",
        encoding="utf-8",
    )
    path = write(folder, "plugins:\n  - name: p\n    kind: mw_test_beside_yaml.P\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    try:
        manager = PluginManager(path, environ={})
        try:
            assert [type(plugin).__name__ for plugin in manager.plugins] == ["P"]
            sys.modules.pop("mw_test_beside_yaml")
            path.write_text("plugins:\n  - name: q\n    kind: mw_test_beside_yaml.P\n", encoding="utf-8")
            manager.reload()
            assert [plugin.name for plugin in manager.plugins] == ["q"]
        finally:
            manager.close()
    finally:
        sys.modules.pop("mw_test_beside_yaml", None)
    assert str(folder) not in sys.path
