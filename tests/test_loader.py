"""Turning ``kind`` into a plugin: class paths, entry points, registered kinds, and the errors."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, EntryPoints

import pytest

from mcp_plugin_mw import Category, ConfigError, HookType, Plugin, PluginConfig, PluginManager, loader
from mcp_plugin_mw.loader import ENTRY_POINT_GROUP, PluginLoadError, load_plugin, register_kind, resolve_class
from tests import sample_plugins
from tests.sample_plugins import entry, tool_pre


def load_problems(plugins: list[dict]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        PluginManager({"plugins": plugins}, environ={})
    return caught.value.problems


@pytest.mark.parametrize("kind", ["tests.sample_plugins.Upper", "tests.sample_plugins:Upper"])
def test_class_paths(kind):
    assert resolve_class(kind) is sample_plugins.Upper


def test_entry_point_names(monkeypatch):
    points = EntryPoints([EntryPoint(name="upper", value="tests.sample_plugins:Upper", group=ENTRY_POINT_GROUP)])
    monkeypatch.setattr(loader, "entry_points", lambda **selection: points.select(**selection))
    assert resolve_class("upper") is sample_plugins.Upper
    manager = PluginManager({"plugins": [{"name": "u", "kind": "upper"}]}, environ={})
    try:
        assert manager.invoke_sync("tool_pre_invoke", tool_pre("x")).modified_payload.args == {"text": "X"}
    finally:
        manager.close()
    with pytest.raises(PluginLoadError, match=r"unknown kind 'lower': .* \(installed: upper\)"):
        resolve_class("lower")


def test_entry_point_that_fails_to_load(monkeypatch):
    points = EntryPoints([EntryPoint(name="gone", value="no_such_pkg_mw:Thing", group=ENTRY_POINT_GROUP)])
    monkeypatch.setattr(loader, "entry_points", lambda **selection: points.select(**selection))
    with pytest.raises(PluginLoadError) as caught:
        resolve_class("gone")
    assert str(caught.value).startswith("entry point 'gone' (no_such_pkg_mw:Thing) failed to load: ModuleNotFoundError")


def test_registered_kinds():
    built: list[PluginConfig] = []

    def factory(config: PluginConfig) -> Plugin:
        built.append(config)
        return sample_plugins.Upper(config.model_copy(update={"hooks": [HookType.TOOL_PRE_INVOKE]}))

    register_kind("test-registered", factory)
    try:
        manager = PluginManager({"plugins": [{"name": "r", "kind": "test-registered", "config": {"k": 1}}]}, environ={})
        try:
            assert [config.config for config in built] == [{"k": 1}]
            assert manager.invoke_sync("tool_pre_invoke", tool_pre("x")).modified_payload.args == {"text": "X"}
        finally:
            manager.close()
    finally:
        loader._KINDS.pop("test-registered", None)


def test_hooks_default_to_the_methods_the_class_defines():
    plugin = load_plugin(PluginConfig(name="a", kind="tests.sample_plugins.Upper"))
    assert plugin.hooks == [HookType.TOOL_PRE_INVOKE, HookType.TOOL_POST_INVOKE]
    assert plugin.plugin_config.hooks == [HookType.TOOL_PRE_INVOKE, HookType.TOOL_POST_INVOKE]


def test_listed_hooks_narrow_the_subscription():
    plugin = load_plugin(PluginConfig(name="a", kind="tests.sample_plugins.Upper", hooks=["tool_post_invoke"]))
    assert plugin.hooks == [HookType.TOOL_POST_INVOKE]


def test_category_defaults_to_the_class_and_config_wins():
    assert load_plugin(PluginConfig(name="a", kind="tests.sample_plugins.Observer")).plugin_config.category is (
        Category.OBSERVABILITY
    )
    assert load_plugin(PluginConfig(name="a", kind="tests.sample_plugins.Upper")).plugin_config.category is (
        Category.CONTENT
    )
    configured = PluginConfig(name="a", kind="tests.sample_plugins.Observer", category="audit")
    assert load_plugin(configured).plugin_config.category is Category.AUDIT


def test_plugin_attributes():
    plugin = load_plugin(
        PluginConfig(name="p", kind="tests.sample_plugins.Upper", priority=3, mode="permissive", config={"a": 1})
    )
    assert (plugin.name, plugin.priority, plugin.mode, plugin.config) == ("p", 3, "permissive", {"a": 1})
    assert repr(plugin) == "<Upper 'p'>"


# --------------------------------------------------------------------------
# Errors, each with its message
# --------------------------------------------------------------------------


def test_module_not_importable_names_the_module():
    (problem,) = load_problems([{"name": "a", "kind": "no_such_pkg_mw.plugins.Thing"}])
    assert problem.startswith(
        "plugins[0] (a): cannot import module 'no_such_pkg_mw.plugins': "
        "ModuleNotFoundError: No module named 'no_such_pkg_mw' (looked on sys.path: "
    )


def test_module_that_fails_on_import(tmp_path, monkeypatch):
    (tmp_path / "mw_test_needs_lib.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert load_problems([{"name": "a", "kind": "mw_test_needs_lib.Thing"}]) == [
            "plugins[0] (a): cannot import module 'mw_test_needs_lib': ImportError: needs libfoo"
        ]
    finally:
        sys.modules.pop("mw_test_needs_lib", None)


def test_missing_class_in_module():
    assert load_problems([entry("a", "Uper")]) == [
        "plugins[0] (a): module 'tests.sample_plugins' has no attribute 'Uper'; did you mean 'Upper'?"
    ]


def test_not_a_plugin_class():
    assert load_problems([entry("a", "NotAPlugin"), entry("b", "BOUND")]) == [
        "plugins[0] (a): 'tests.sample_plugins.NotAPlugin' is not a subclass of mcp_plugin_mw.Plugin",
        "plugins[1] (b): 'tests.sample_plugins.BOUND' is not a subclass of mcp_plugin_mw.Plugin",
    ]


def test_unknown_bare_kind():
    (problem,) = load_problems([{"name": "a", "kind": "nonexistent"}])
    assert problem.startswith(
        f"plugins[0] (a): unknown kind 'nonexistent': not a class path, not an entry point in '{ENTRY_POINT_GROUP}'"
    )


@pytest.mark.parametrize("kind", [".Upper", "tests.sample_plugins:", ":Upper"])
def test_malformed_class_path(kind):
    assert load_problems([{"name": "a", "kind": kind}]) == [
        f"plugins[0] (a): {kind!r} is not a class path of the form package.module.ClassName"
    ]


def test_constructor_raising():
    assert load_problems([entry("a", "Exploding")]) == [
        "plugins[0] (a): Exploding(...) raised RuntimeError: constructor exploded"
    ]


def test_hook_listed_but_not_implemented():
    problems = load_problems(
        [
            entry("one", "AsyncAppend", hooks=["tool_pre_invoke", "tool_post_invoke"]),
            entry("two", "Upper", hooks=["prompt_pre_fetch", "http_pre_request"]),
        ]
    )
    assert problems == [
        "plugins[0] (one): hooks tool_post_invoke listed but AsyncAppend does not implement it "
        "(it implements: tool_pre_invoke)",
        "plugins[1] (two): hooks prompt_pre_fetch, http_pre_request listed but Upper does not implement them "
        "(it implements: tool_pre_invoke, tool_post_invoke)",
    ]


def test_class_with_no_hooks():
    assert load_problems([entry("a", "NoHooks")]) == ["plugins[0] (a): NoHooks implements no hook methods"]


def test_every_broken_plugin_is_reported_at_once():
    problems = load_problems(
        [
            entry("fine", "Upper"),
            {"name": "missing", "kind": "no_such_pkg_mw.X"},
            entry("exploding", "Exploding"),
            entry("unimplemented", "Tag", hooks=["tool_pre_invoke"]),
            entry("nohooks", "NoHooks"),
        ]
    )
    assert [problem.split(":")[0] for problem in problems] == [
        "plugins[1] (missing)",
        "plugins[2] (exploding)",
        "plugins[4] (nohooks)",
    ]


def test_disabled_plugins_are_still_loaded_and_checked():
    # A disabled entry with a broken kind is still a broken configuration.
    (problem,) = load_problems([{"name": "a", "kind": "no_such_pkg_mw.X", "mode": "disabled"}])
    assert problem.startswith(
        "plugins[0] (a): cannot import module 'no_such_pkg_mw': ModuleNotFoundError: No module named 'no_such_pkg_mw'"
    )
