"""The policy plugins: resource_filter, size_guard, schema_guard, tool_policy, rate_limiter, audit_log.

Each plugin is tested by calling its hook methods directly, and through a
:class:`~mcp_plugin_mw.PluginManager` built from a dict configuration with
the plugin's class path, as users load it. The Redis rate limiter runs against
a real ``redis-server`` (``tests/redis_fixture.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from typing import Any

import pytest

from mcp_plugin_mw import (
    ConfigError,
    GlobalContext,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PluginConfig,
    PluginContext,
    PluginManager,
    PluginResult,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from mcp_plugin_mw.models import ExecutionRecord, HookType, Outcome, PluginViolation
from mcp_plugin_mw.plugins.audit_log import AuditLogPlugin
from mcp_plugin_mw.plugins.rate_limiter import (
    MemoryBackend,
    RateLimiterPlugin,
    RedisRateLimiterPlugin,
    _client_host,
)
from mcp_plugin_mw.plugins.resource_filter import ResourceFilterPlugin
from mcp_plugin_mw.plugins.schema_guard import SchemaGuardPlugin
from mcp_plugin_mw.plugins.size_guard import SizeGuardPlugin
from mcp_plugin_mw.plugins.tool_policy import ToolPolicyPlugin
from tests.redis_fixture import free_port
from tests.sample_plugins import BOUND

KINDS = {
    "resource_filter": "mcp_plugin_mw.plugins.resource_filter.ResourceFilterPlugin",
    "size_guard": "mcp_plugin_mw.plugins.size_guard.SizeGuardPlugin",
    "schema_guard": "mcp_plugin_mw.plugins.schema_guard.SchemaGuardPlugin",
    "tool_policy": "mcp_plugin_mw.plugins.tool_policy.ToolPolicyPlugin",
    "rate_limiter": "mcp_plugin_mw.plugins.rate_limiter.RateLimiterPlugin",
    "audit_log": "mcp_plugin_mw.plugins.audit_log.AuditLogPlugin",
}


def build(cls: type[Any], config: dict[str, Any], name: str = "p") -> Any:
    return cls(PluginConfig(name=name, kind=f"{cls.__module__}.{cls.__qualname__}", config=config))


def ctx(user: str | None = None, tenant: str | None = None, **metadata: Any) -> PluginContext:
    return PluginContext(GlobalContext(request_id="r1", user=user, tenant_id=tenant, metadata=metadata))


def manager(*plugins: dict[str, Any], settings: dict[str, Any] | None = None) -> PluginManager:
    entries = [{"name": f"p{index}", **plugin} for index, plugin in enumerate(plugins)]
    return PluginManager({"plugins": entries, "plugin_settings": settings or {}}, environ={})


def problems(kind: str, config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        manager({"kind": KINDS[kind], "config": config})
    assert len(caught.value.problems) == 1
    return caught.value.problems[0]


def tool(name: str = "search", **args: Any) -> ToolPreInvokePayload:
    return ToolPreInvokePayload(name=name, args=args)


def blocked(result: PluginResult | None) -> str:
    assert result is not None
    assert not result.continue_processing
    assert result.violation is not None
    return result.violation.code


# --------------------------------------------------------------------------
# Configuration errors name the field
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "config", "expected"),
    [
        ("tool_policy", {"deny_tool": ["x"]}, "config.deny_tool: Extra inputs are not permitted"),
        ("tool_policy", {"rules": [{"users": ["("]}]}, "config.rules[0].users[0]: invalid regular expression"),
        ("tool_policy", {"default": "maybe"}, "config.default: Input should be 'allow' or 'deny'"),
        ("resource_filter", {"max_content_bytes": 0}, "config.max_content_bytes: Input should be greater than 0"),
        (
            "resource_filter",
            {"text_filters": [{"pattern": "a", "replacement": r"\2"}]},
            "config.text_filters[0]: replacement '\\\\2' does not fit the pattern",
        ),
        ("size_guard", {}, "config: set max_argument_bytes, max_result_chars or both"),
        ("size_guard", {"max_result_chars": 5, "action": "drop"}, "config.action: Input should be"),
        (
            "schema_guard",
            {"tools": {"search": {"arguments": {"type": "nope"}}}},
            "config.tools.search.arguments: invalid JSON Schema at $.type",
        ),
        ("schema_guard", {"tools": {"search": {"args": {}}}}, "config.tools.search.args: Extra inputs"),
        ("rate_limiter", {}, "config.limit: Field required"),
        ("rate_limiter", {"limit": 1, "by": ["ip"]}, "config.by[0]: Input should be"),
        ("rate_limiter", {"limit": 1, "url": "redis://h/0"}, "config: url is only used with backend: redis"),
        ("rate_limiter", {"limit": 1, "backend": "redis", "url": "http://h/0"}, "config: url 'http://h/0'"),
        ("audit_log", {"sink": "file"}, "config: sink file needs a path"),
        ("audit_log", {"path": "/tmp/x"}, "config: path is only used with sink: file"),
    ],
)
def test_config_errors_name_the_field(kind, config, expected):
    problem = problems(kind, config)
    assert problem.startswith("plugins[0] (p0): ")
    assert expected in problem


def test_default_categories():
    loaded = manager(*({"kind": path, "config": config} for path, config in _minimal_configs())).plugins
    assert [str(plugin.plugin_config.category) for plugin in loaded] == [
        "content",
        "content",
        "validation",
        "authorization",
        "rate_limiting",
        "audit",
    ]


def test_entry_point_names():
    loaded = manager(*({"kind": name, "config": config} for name, config in _minimal_configs(by_name=True))).plugins
    assert [type(plugin).__name__ for plugin in loaded] == [
        "ResourceFilterPlugin",
        "SizeGuardPlugin",
        "SchemaGuardPlugin",
        "ToolPolicyPlugin",
        "RateLimiterPlugin",
        "AuditLogPlugin",
    ]


def _minimal_configs(*, by_name: bool = False) -> list[tuple[str, dict[str, Any]]]:
    if by_name:
        return [(name, config) for (_, config), name in zip(_minimal_configs(), KINDS, strict=True)]
    return [
        (KINDS["resource_filter"], {}),
        (KINDS["size_guard"], {"max_result_chars": 10}),
        (KINDS["schema_guard"], {}),
        (KINDS["tool_policy"], {}),
        (KINDS["rate_limiter"], {"limit": 1}),
        (KINDS["audit_log"], {"sink": "logger"}),
    ]


# --------------------------------------------------------------------------
# tool_policy
# --------------------------------------------------------------------------


class TestToolPolicy:
    def test_deny_wins_over_allow(self):
        plugin = build(ToolPolicyPlugin, {"allow_tools": ["*"], "deny_tools": ["delete_*"]})
        assert plugin.tool_pre_invoke(tool("search"), ctx()) is None
        result = plugin.tool_pre_invoke(tool("delete_user"), ctx())
        assert blocked(result) == "POLICY_DENIED"
        assert result.violation.http_status_code == 403
        assert result.violation.details["name"] == "delete_user"

    def test_allow_list_admits_only_matches(self):
        plugin = build(ToolPolicyPlugin, {"allow_tools": ["search", "read_*"]})
        assert plugin.tool_pre_invoke(tool("read_file"), ctx()) is None
        assert blocked(plugin.tool_pre_invoke(tool("write_file"), ctx())) == "POLICY_DENIED"

    def test_empty_allow_list_forbids_the_kind(self):
        plugin = build(ToolPolicyPlugin, {"allow_prompts": []})
        assert blocked(plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="any"), ctx())) == "POLICY_DENIED"
        assert plugin.tool_pre_invoke(tool("any"), ctx()) is None  # other kinds are untouched

    def test_default_deny(self):
        plugin = build(ToolPolicyPlugin, {"default": "deny", "rules": [{"users": ["^alice$"], "allow_tools": ["*"]}]})
        assert plugin.tool_pre_invoke(tool(), ctx(user="alice")) is None
        assert blocked(plugin.tool_pre_invoke(tool(), ctx(user="bob"))) == "POLICY_DENIED"
        assert blocked(plugin.tool_pre_invoke(tool(), ctx())) == "POLICY_DENIED"

    def test_prompts_and_resources(self):
        plugin = build(
            ToolPolicyPlugin, {"allow_prompts": ["summarize"], "deny_resources": ["file:///etc/*", "*://internal/*"]}
        )
        assert plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="summarize"), ctx()) is None
        assert blocked(plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="jailbreak"), ctx())) == "POLICY_DENIED"
        assert plugin.resource_pre_fetch(ResourcePreFetchPayload(uri="file:///srv/a.txt"), ctx()) is None
        for uri in ("file:///etc/passwd", "https://internal/x/y"):
            assert blocked(plugin.resource_pre_fetch(ResourcePreFetchPayload(uri=uri), ctx())) == "POLICY_DENIED"

    def test_rules_for_users_and_tenants(self):
        plugin = build(
            ToolPolicyPlugin,
            {
                "allow_tools": ["search"],
                "rules": [
                    {"users": ["^admin_"], "allow_tools": ["*"]},
                    {"tenants": ["^trial-"], "deny_tools": ["search"]},
                    {"users": ["^admin_"], "tenants": ["^trial-"], "deny_tools": ["drop_*"]},
                ],
            },
        )
        check = plugin.is_allowed
        assert check("tool", "search", GlobalContext("1", user="bob"))
        assert not check("tool", "export", GlobalContext("1", user="bob"))
        assert check("tool", "export", GlobalContext("1", user="admin_ann"))  # allow lists add up
        assert not check("tool", "search", GlobalContext("1", user="bob", tenant_id="trial-9"))
        assert check("tool", "drop_table", GlobalContext("1", user="admin_ann", tenant_id="acme"))
        assert not check("tool", "drop_table", GlobalContext("1", user="admin_ann", tenant_id="trial-1"))

    @pytest.mark.parametrize("invoke", ["invoke", "invoke_sync"])
    async def test_listed_twice_with_conditions(self, invoke):
        # The strict policy applies to everyone but admins, the loose one to admins.
        strict = {
            "kind": KINDS["tool_policy"],
            "conditions": [{"user_patterns": ["^(?!admin_)"]}],
            "config": {"allow_tools": ["search"]},
        }
        loose = {
            "kind": KINDS["tool_policy"],
            "conditions": [{"user_patterns": ["^admin_"]}],
            "config": {"deny_tools": ["shutdown"]},
        }
        # The lookahead is beyond RE2: it needs plugin_settings.allow_backtracking.
        with manager(strict, loose, settings={"allow_backtracking": True}) as chain:

            async def run(user: str, name: str) -> Any:
                context = GlobalContext(request_id="1", user=user)
                if invoke == "invoke":
                    return await chain.invoke("tool_pre_invoke", tool(name), context)
                return await asyncio.to_thread(chain.invoke_sync, "tool_pre_invoke", tool(name), context)

            assert (await run("bob", "search")).continue_processing
            denied = await run("bob", "export")
            assert not denied.continue_processing
            assert denied.violation.code == "POLICY_DENIED"
            assert denied.violation.plugin_name == "p0"
            assert (await run("admin_ann", "export")).continue_processing
            assert (await run("admin_ann", "shutdown")).violation.plugin_name == "p1"


# --------------------------------------------------------------------------
# resource_filter
# --------------------------------------------------------------------------


def read(uri: str, **metadata: Any) -> ResourcePreFetchPayload:
    return ResourcePreFetchPayload(uri=uri, metadata=metadata)


def fetched(*items: dict[str, Any], uri: str = "file:///a") -> ResourcePostFetchPayload:
    return ResourcePostFetchPayload(uri=uri, content={"contents": list(items)})


class TestResourceFilter:
    def test_schemes(self):
        plugin = build(ResourceFilterPlugin, {"allowed_schemes": ["HTTPS", "file"]})
        assert plugin.resource_pre_fetch(read("https://example.com/a"), ctx()) is None
        assert plugin.resource_pre_fetch(read("File:///srv/a"), ctx()) is None
        result = plugin.resource_pre_fetch(read("ftp://example.com/a"), ctx())
        assert blocked(result) == "RESOURCE_SCHEME_BLOCKED"
        assert result.violation.details == {"uri": "ftp://example.com/a", "scheme": "ftp"}
        assert blocked(plugin.resource_pre_fetch(read("relative/path"), ctx())) == "RESOURCE_SCHEME_BLOCKED"

    def test_any_scheme_by_default(self):
        plugin = build(ResourceFilterPlugin, {})
        assert plugin.resource_pre_fetch(read("memo://insights"), ctx()) is None

    @pytest.mark.parametrize(
        ("uri", "code"),
        [
            ("https://evil.com/x", "RESOURCE_DOMAIN_BLOCKED"),
            ("https://a.b.EVIL.com:8443/x", "RESOURCE_DOMAIN_BLOCKED"),
            ("https://evil.com./x", "RESOURCE_DOMAIN_BLOCKED"),
            ("https://notevil.com/x", None),
            ("https://evil.com.example.org/x", None),
            ("https://intranet.corp/x", "RESOURCE_DOMAIN_BLOCKED"),
            ("http://[::1/x", "RESOURCE_URI_INVALID"),
        ],
    )
    def test_blocked_domains_and_subdomains(self, uri, code):
        plugin = build(ResourceFilterPlugin, {"blocked_domains": ["evil.com", "*.corp"]})
        result = plugin.resource_pre_fetch(read(uri), ctx())
        assert (result is None) if code is None else blocked(result) == code

    def test_uri_globs(self):
        plugin = build(ResourceFilterPlugin, {"allow_uris": ["file:///srv/*", "https://*"], "deny_uris": ["*.key"]})
        assert plugin.resource_pre_fetch(read("file:///srv/docs/a.md"), ctx()) is None
        assert blocked(plugin.resource_pre_fetch(read("file:///srv/tls/server.key"), ctx())) == "RESOURCE_URI_DENIED"
        result = plugin.resource_pre_fetch(read("file:///etc/passwd"), ctx())
        assert blocked(result) == "RESOURCE_URI_DENIED"
        assert "allow_uris" in result.violation.description

    def test_max_content_bytes_counts_utf8_and_decoded_blobs(self):
        plugin = build(ResourceFilterPlugin, {"max_content_bytes": 10})
        assert plugin.resource_post_fetch(fetched({"text": "ééééé"}), ctx()) is None  # 10 bytes
        assert blocked(plugin.resource_post_fetch(fetched({"text": "éééééa"}), ctx())) == "RESOURCE_TOO_LARGE"
        assert plugin.resource_post_fetch(fetched({"blob": "AAAAAAAAAAAA"}), ctx()) is None  # 9 bytes
        result = plugin.resource_post_fetch(fetched({"blob": "AAAAAAAAAAAA"}, {"text": "ab"}), ctx())
        assert blocked(result) == "RESOURCE_TOO_LARGE"
        assert result.violation.details == {"uri": "file:///a", "size": 11, "limit": 10}

    def test_text_filters(self):
        plugin = build(
            ResourceFilterPlugin,
            {
                "text_filters": [
                    {"pattern": r"(?i)password=\S+"},
                    {"pattern": r"(\d{3})-\d{4}", "replacement": r"\1-XXXX"},
                ]
            },
        )
        payload = fetched(
            {"uri": "file:///a", "text": "PASSWORD=hunter2 call 555-1234"},
            {"uri": "file:///b", "blob": "cGFzc3dvcmQ9eA=="},
            {"uri": "file:///c", "text": "clean"},
        )
        result = plugin.resource_post_fetch(payload, ctx())
        items = result.modified_payload.content["contents"]
        assert items[0] == {"uri": "file:///a", "text": "[REDACTED] call 555-XXXX"}
        assert items[1] is payload.content["contents"][1]
        assert items[2] is payload.content["contents"][2]
        assert payload.content["contents"][0]["text"].startswith("PASSWORD")  # the original is untouched
        assert plugin.resource_post_fetch(fetched({"text": "clean"}), ctx()) is None
        assert plugin.resource_post_fetch(ResourcePostFetchPayload(uri="x", content="odd"), ctx()) is None

    async def test_through_the_manager(self):
        config = {"blocked_domains": ["evil.com"], "text_filters": [{"pattern": "secret", "replacement": "***"}]}
        async with manager({"kind": KINDS["resource_filter"], "config": config}) as chain:
            refused = await chain.invoke("resource_pre_fetch", read("https://www.evil.com/"))
            assert refused.violation.code == "RESOURCE_DOMAIN_BLOCKED"
            changed = await chain.invoke("resource_post_fetch", fetched({"text": "a secret"}))
            assert changed.modified_payload.content == {"contents": [{"text": "a ***"}]}


# --------------------------------------------------------------------------
# size_guard
# --------------------------------------------------------------------------


def tool_result(*content: dict[str, Any], **extra: Any) -> ToolPostInvokePayload:
    return ToolPostInvokePayload(name="search", result={"content": list(content), **extra})


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


class TestSizeGuard:
    def test_argument_bytes(self):
        plugin = build(SizeGuardPlugin, {"max_argument_bytes": 20})
        assert plugin.tool_pre_invoke(tool(q="x" * 12), ctx()) is None  # {"q":"xxxxxxxxxxxx"} is 20 bytes
        result = plugin.tool_pre_invoke(tool(q="x" * 13), ctx())
        assert blocked(result) == "ARGUMENTS_TOO_LARGE"
        assert result.violation.http_status_code == 413
        assert result.violation.details == {"tool": "search", "size": 21, "limit": 20}
        prompt = PromptPrehookPayload(prompt_id="p", args={"text": "é" * 10})
        assert blocked(plugin.prompt_pre_fetch(prompt, ctx())) == "ARGUMENTS_TOO_LARGE"
        # Results are not limited when only arguments are.
        assert plugin.tool_post_invoke(tool_result(text("x" * 1000)), ctx()) is None

    def test_truncates_text_items_and_marks_it(self):
        plugin = build(SizeGuardPlugin, {"max_result_chars": 10})
        image = {"type": "image", "data": "AAAA", "mimeType": "image/png"}
        payload = tool_result(text("abcdef"), image, text("ghijkl"), text("dropped"), structuredContent={"k": 1})
        result = plugin.tool_post_invoke(payload, ctx())
        assert result.modified_payload.result == {
            "content": [text("abcdef"), image, text("ghij\n[truncated]")],
            "structuredContent": {"k": 1},
        }
        assert result.metadata == {"p": {"truncated": True, "chars": 19, "limit": 10}}
        assert plugin.tool_post_invoke(tool_result(text("x" * 10)), ctx()) is None

    def test_custom_marker_and_embedded_resources(self):
        plugin = build(SizeGuardPlugin, {"max_result_chars": 3, "truncation_marker": "…"})
        embedded = {"type": "resource", "resource": {"uri": "file:///a", "text": "abcdef"}}
        result = plugin.tool_post_invoke(tool_result(embedded), ctx())
        assert result.modified_payload.result["content"][0]["resource"] == {"uri": "file:///a", "text": "abc…"}

    def test_prompts_and_resources(self):
        plugin = build(SizeGuardPlugin, {"max_result_chars": 4})
        prompt = PromptPosthookPayload(
            prompt_id="p",
            result={
                "description": "d",
                "messages": [
                    {"role": "user", "content": text("abc")},
                    {"role": "assistant", "content": text("defgh")},
                    {"role": "user", "content": text("later")},
                ],
            },
        )
        messages = plugin.prompt_post_fetch(prompt, ctx()).modified_payload.result["messages"]
        assert [m["content"]["text"] for m in messages] == ["abc", "d\n[truncated]"]
        resource = fetched({"uri": "file:///a", "text": "abcdefgh"})
        contents = plugin.resource_post_fetch(resource, ctx()).modified_payload.content["contents"]
        assert contents == [{"uri": "file:///a", "text": "abcd\n[truncated]"}]

    def test_block_action(self):
        plugin = build(SizeGuardPlugin, {"max_result_chars": 5, "action": "block"})
        result = plugin.tool_post_invoke(tool_result(text("abc"), text("def")), ctx())
        assert blocked(result) == "RESULT_TOO_LARGE"
        assert result.violation.details == {"tool": "search", "chars": 6, "limit": 5}
        assert result.violation.mcp_error_code == -32603

    def test_through_the_manager(self):
        with manager({"kind": KINDS["size_guard"], "config": {"max_result_chars": 2}}) as chain:
            result = chain.invoke_sync("tool_post_invoke", tool_result(text("abc")))
            assert result.records[0].outcome is Outcome.MODIFIED
            assert result.modified_payload.result["content"] == [text("ab\n[truncated]")]


# --------------------------------------------------------------------------
# schema_guard
# --------------------------------------------------------------------------

SEARCH_SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "maxLength": 10},
        "filters": {
            "type": "array",
            "items": {"type": "object", "properties": {"field": {"type": "string"}}, "required": ["field"]},
        },
    },
    "required": ["query"],
    "additionalProperties": False,
}


class TestSchemaGuard:
    @pytest.fixture
    def plugin(self) -> SchemaGuardPlugin:
        return build(
            SchemaGuardPlugin,
            {
                "tools": {
                    "search": {"arguments": SEARCH_SCHEMA, "result": {"type": "object", "required": ["hits"]}},
                    "admin_*": {"arguments": {"type": "object", "maxProperties": 1}},
                    "admin_reset": {"arguments": {"type": "object", "maxProperties": 0}},
                },
                "prompts": {"summarize": {"arguments": {"type": "object", "required": ["text"]}}},
            },
        )

    def test_valid_arguments_pass(self, plugin):
        assert plugin.tool_pre_invoke(tool(query="q", filters=[{"field": "a"}]), ctx()) is None

    def test_errors_name_the_json_path(self, plugin):
        result = plugin.tool_pre_invoke(tool(query="x" * 11, filters=[{"field": "a"}, {"field": 2}, {}]), ctx())
        assert blocked(result) == "INVALID_ARGUMENTS"
        assert result.violation.mcp_error_code == -32602
        errors = result.violation.details["errors"]
        assert [error["path"] for error in errors] == ["$.filters[1].field", "$.filters[2].field", "$.query"]
        assert [error["keyword"] for error in errors] == ["type", "required", "maxLength"]
        assert result.violation.description.startswith(
            "tool 'search' arguments do not match the schema: $.filters[1].field: 2 is not of type 'string'"
        )
        assert result.violation.description.endswith("(and 2 more)")

    def test_missing_and_unexpected_properties(self, plugin):
        errors = blocked_errors(plugin.tool_pre_invoke(tool(other=1), ctx()))
        assert {(error["path"], error["keyword"]) for error in errors} == {
            ("$.query", "required"),
            ("$", "additionalProperties"),
        }

    def test_max_errors(self):
        plugin = build(SchemaGuardPlugin, {"tools": {"t": {"arguments": SEARCH_SCHEMA}}, "max_errors": 1})
        result = plugin.tool_pre_invoke(tool("t", query=5, filters="x", extra=1), ctx())
        assert len(result.violation.details["errors"]) == 1
        assert result.violation.description.endswith("(and 2 more)")

    def test_exact_name_wins_over_glob(self, plugin):
        assert plugin.tool_pre_invoke(tool("admin_list", a=1), ctx()) is None
        assert blocked(plugin.tool_pre_invoke(tool("admin_list", a=1, b=2), ctx())) == "INVALID_ARGUMENTS"
        assert blocked(plugin.tool_pre_invoke(tool("admin_reset", a=1), ctx())) == "INVALID_ARGUMENTS"

    def test_unknown_tools(self, plugin):
        assert plugin.tool_pre_invoke(tool("other", anything=1), ctx()) is None
        strict = build(SchemaGuardPlugin, {"unknown_tools": "block"})
        assert blocked(strict.tool_pre_invoke(tool("other"), ctx())) == "SCHEMA_MISSING"

    def test_results_validate_structured_content(self, plugin):
        ok = ToolPostInvokePayload(name="search", result={"content": [], "structuredContent": {"hits": []}})
        assert plugin.tool_post_invoke(ok, ctx()) is None
        bad = ToolPostInvokePayload(name="search", result={"content": [], "structuredContent": {"total": 0}})
        result = plugin.tool_post_invoke(bad, ctx())
        assert blocked(result) == "INVALID_RESULT"
        assert result.violation.mcp_error_code == -32603
        assert result.violation.details["errors"][0]["path"] == "$.hits"
        missing = ToolPostInvokePayload(name="search", result={"content": [text("x")]})
        assert blocked(plugin.tool_post_invoke(missing, ctx())) == "INVALID_RESULT"
        error = ToolPostInvokePayload(name="search", result={"content": [text("boom")], "isError": True})
        assert plugin.tool_post_invoke(error, ctx()) is None
        # A tool without a result schema is not checked.
        assert plugin.tool_post_invoke(ToolPostInvokePayload(name="admin_x", result={}), ctx()) is None

    def test_prompt_arguments(self, plugin):
        assert plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="summarize", args={"text": "t"}), ctx()) is None
        result = plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="summarize"), ctx())
        assert blocked_errors(result)[0]["path"] == "$.text"
        assert plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="other"), ctx()) is None

    def test_drafts_and_formats(self):
        # Draft 7 allows "items" as a list (2020-12 calls it prefixItems).
        draft7 = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {"list": {"items": [{"type": "string"}]}},
        }
        email = {"type": "object", "properties": {"to": {"type": "string", "format": "email"}}}
        config = {"tools": {"old": {"arguments": draft7}, "mail": {"arguments": email}}}
        loose = build(SchemaGuardPlugin, config)
        assert loose.tool_pre_invoke(tool("mail", to="not an address"), ctx()) is None
        assert blocked(loose.tool_pre_invoke(tool("old", list=[1]), ctx())) == "INVALID_ARGUMENTS"
        strict = build(SchemaGuardPlugin, {**config, "check_formats": True})
        assert blocked(strict.tool_pre_invoke(tool("mail", to="not an address"), ctx())) == "INVALID_ARGUMENTS"

    def test_bad_schemas_name_the_tool(self):
        problem = problems(
            "schema_guard",
            {"tools": {"good": {"arguments": True}, "bad": {"result": {"minimum": "zero"}}}},
        )
        assert "config.tools.bad.result: invalid JSON Schema at $.minimum: 'zero' is not of type 'number'" in problem

    async def test_through_the_manager(self):
        config = {"tools": {"search": {"arguments": SEARCH_SCHEMA}}}
        async with manager({"kind": KINDS["schema_guard"], "config": config}) as chain:
            result = await chain.invoke("tool_pre_invoke", tool(query=3))
            assert result.violation.code == "INVALID_ARGUMENTS"
            assert result.violation.details["errors"][0]["path"] == "$.query"


def blocked_errors(result: PluginResult | None) -> list[dict[str, Any]]:
    blocked(result)
    assert result is not None
    assert result.violation is not None
    return result.violation.details["errors"]


# --------------------------------------------------------------------------
# rate_limiter: memory backend
# --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryBackend:
    def test_fixed_window(self):
        clock = Clock()
        backend = MemoryBackend(3, 10, clock=clock)
        assert [backend.hit("k").remaining for _ in range(3)] == [2, 1, 0]
        clock.now += 4
        refused = backend.hit("k")
        assert (refused.allowed, refused.remaining, refused.reset) == (False, 0, 6)
        assert backend.hit("other").allowed  # keys are independent
        clock.now += 6  # the window that started with the first call is over
        fresh = backend.hit("k")
        assert (fresh.allowed, fresh.remaining, fresh.reset) == (True, 2, 10)

    def test_sliding_window(self):
        clock = Clock()
        backend = MemoryBackend(2, 10, sliding=True, clock=clock)
        assert backend.hit("k").allowed
        clock.now += 6
        assert backend.hit("k").allowed
        clock.now += 1
        refused = backend.hit("k")
        assert (refused.allowed, refused.reset) == (False, 3)  # the first call leaves the window in 3 s
        clock.now += 3  # at 10 s the first call has left; the second has not
        assert backend.hit("k").allowed
        refused = backend.hit("k")
        assert not refused.allowed
        assert refused.reset == 6  # the call at 6 s leaves at 16 s
        # A fixed window would have reset at 10 s and allowed both.

    def test_refused_calls_are_not_counted(self):
        clock = Clock()
        backend = MemoryBackend(1, 10, sliding=True, clock=clock)
        assert backend.hit("k").allowed
        for _ in range(5):
            clock.now += 1
            assert not backend.hit("k").allowed
        clock.now += 5
        assert backend.hit("k").allowed

    def test_bounded_keys(self):
        clock = Clock()
        backend = MemoryBackend(1, 60, max_keys=3, clock=clock)
        for key in "abc":
            backend.hit(key)
        assert not backend.hit("a").allowed  # "a" is now the most recently used
        backend.hit("d")  # evicts "b", the least recently used
        assert len(backend) == 3
        assert not backend.hit("a").allowed
        assert backend.hit("b").allowed  # forgotten, so counted afresh

    @pytest.mark.parametrize("sliding", [False, True])
    def test_thread_safe(self, sliding):
        backend = MemoryBackend(500, 60, sliding=sliding)
        allowed: list[bool] = []
        lock = threading.Lock()

        def worker() -> None:
            mine = [backend.hit("k").allowed for _ in range(100)]
            with lock:
                allowed.extend(mine)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND)
        assert len(allowed) == 800
        assert allowed.count(True) == 500


@pytest.mark.parametrize(
    ("client", "host"),
    [
        ("10.0.0.1:5000", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("[::1]:5000", "::1"),
        ("::1:5000", "::1"),
        ("2001:db8::7:443", "2001:db8::7"),
        (("10.0.0.2", 80), "10.0.0.2"),
        ("client.example:8080", "client.example"),
        (None, None),
    ],
)
def test_client_host(client, host):
    assert _client_host(client) == host


class TestRateLimiterPlugin:
    def test_memory_backend_hooks_are_sync(self):
        plugin = build(RateLimiterPlugin, {"limit": 1})
        assert type(plugin) is RateLimiterPlugin
        assert not asyncio.iscoroutinefunction(plugin.tool_pre_invoke)

    def test_over_the_limit(self):
        plugin = build(RateLimiterPlugin, {"limit": 2, "window": 30})
        first = plugin.tool_pre_invoke(tool(), ctx(user="alice"))
        assert first.continue_processing
        assert first.metadata == {"rate_limit": {"limit": 2, "remaining": 1, "reset": 30}}
        assert plugin.tool_pre_invoke(tool(), ctx(user="alice")).continue_processing
        refused = plugin.tool_pre_invoke(tool(), ctx(user="alice"))
        assert blocked(refused) == "RATE_LIMITED"
        violation = refused.violation
        assert violation.http_status_code == 429
        assert violation.mcp_error_code == -32000
        retry = violation.details["retry_after"]
        assert isinstance(retry, int)
        assert 1 <= retry <= 30
        assert violation.details == {"retry_after": retry, "limit": 2, "remaining": 0, "reset": retry, "window": 30}
        assert refused.metadata["retry_after"] == retry
        # Another user has a count of their own.
        assert plugin.tool_pre_invoke(tool(), ctx(user="bob")).continue_processing

    def test_retry_after_is_at_least_one_second(self):
        plugin = build(RateLimiterPlugin, {"limit": 1, "window": 0.05})
        plugin.tool_pre_invoke(tool(), ctx())
        refused = plugin.tool_pre_invoke(tool(), ctx())
        assert refused.violation.details["retry_after"] == 1

    def test_window_passes(self):
        plugin = build(RateLimiterPlugin, {"limit": 1, "window": 0.2, "algorithm": "sliding"})
        assert plugin.tool_pre_invoke(tool(), ctx()).continue_processing
        assert not plugin.tool_pre_invoke(tool(), ctx()).continue_processing
        time.sleep(0.3)
        assert plugin.tool_pre_invoke(tool(), ctx()).continue_processing

    @pytest.mark.parametrize(
        ("by", "same", "different"),
        [
            (["user"], ctx(user="u", tenant="t1"), ctx(user="v", tenant="t1")),
            (["tenant"], ctx(user="v", tenant="t"), ctx(user="u", tenant="t2")),
            (["client"], ctx(client="10.0.0.1:999"), ctx(client="10.0.0.2:1")),
            (["user", "tenant"], ctx(user="u", tenant="t"), ctx(user="u", tenant="t2")),
        ],
    )
    def test_keys(self, by, same, different):
        plugin = build(RateLimiterPlugin, {"limit": 1, "by": by})
        first = ctx(user="u", tenant="t", client="10.0.0.1:1000")
        assert plugin.tool_pre_invoke(tool(), first).continue_processing
        assert not plugin.tool_pre_invoke(tool(), same).continue_processing
        assert plugin.tool_pre_invoke(tool(), different).continue_processing

    def test_tool_key_covers_prompts_resources_and_paths(self):
        plugin = build(RateLimiterPlugin, {"limit": 1, "by": ["tool"]})
        http = HttpPreRequestPayload(method="GET", path="/search")
        calls = [
            (plugin.tool_pre_invoke, tool("search")),
            (plugin.prompt_pre_fetch, PromptPrehookPayload(prompt_id="search")),
            (plugin.resource_pre_fetch, read("search")),
            (plugin.http_pre_request, http),
        ]
        for hook, payload in calls:
            assert hook(payload, ctx()).continue_processing  # each kind has its own count
        for hook, payload in calls:
            assert not hook(payload, ctx()).continue_processing
        assert plugin.tool_pre_invoke(tool("other"), ctx()).continue_processing

    def test_global_limit_and_anonymous_users(self):
        everyone = build(RateLimiterPlugin, {"limit": 1, "by": []})
        assert everyone.tool_pre_invoke(tool(), ctx(user="a")).continue_processing
        assert not everyone.tool_pre_invoke(tool("other"), ctx(user="b")).continue_processing
        per_user = build(RateLimiterPlugin, {"limit": 1})
        assert per_user.tool_pre_invoke(tool(), ctx()).continue_processing
        assert not per_user.tool_pre_invoke(tool(), ctx()).continue_processing  # anonymous users share "-"

    def test_client_from_metadata_or_http_payload(self):
        plugin = build(RateLimiterPlugin, {"limit": 1, "by": ["client"]})
        request = HttpPreRequestPayload(method="POST", path="/mcp", client="10.0.0.9:4000")
        assert plugin.http_pre_request(request, ctx()).continue_processing
        # Another connection (port) from the same host shares the count.
        again = request.model_copy(update={"client": "10.0.0.9:4001"})
        assert not plugin.http_pre_request(again, PluginContext(GlobalContext("r2"))).continue_processing
        # Metadata wins over the payload: a proxy-aware app names the real client.
        forwarded = PluginContext(GlobalContext("r3", metadata={"client": "192.0.2.1"}))
        assert plugin.http_pre_request(again, forwarded).continue_processing

    def test_http_request_and_its_calls_count_once(self):
        plugin = build(RateLimiterPlugin, {"limit": 2})
        context = ctx(user="alice")
        assert plugin.http_pre_request(HttpPreRequestPayload(method="POST", path="/mcp"), context).continue_processing
        # A batch: each member gets fresh plugin contexts but shares the global one.
        for _ in range(3):
            member = PluginContext(context.global_context)
            assert plugin.tool_pre_invoke(tool(), member) is None
        second = plugin.http_pre_request(HttpPreRequestPayload(method="POST", path="/mcp"), ctx(user="alice"))
        assert second.continue_processing
        assert not plugin.tool_pre_invoke(tool(), ctx(user="alice")).continue_processing

    def test_through_the_manager_without_an_event_loop(self):
        config = {"limit": 2, "window": 60, "by": ["user"]}
        with manager({"kind": KINDS["rate_limiter"], "hooks": ["tool_pre_invoke"], "config": config}) as chain:
            results = [chain.invoke_sync("tool_pre_invoke", tool(), GlobalContext("1", user="u")) for _ in range(3)]
        assert [result.continue_processing for result in results] == [True, True, False]
        assert results[1].metadata["rate_limit"]["remaining"] == 0
        assert results[2].violation.code == "RATE_LIMITED"
        assert results[2].violation.plugin_name == "p0"
        assert results[2].metadata["retry_after"] >= 1


# --------------------------------------------------------------------------
# rate_limiter: Redis backend, with a real server
# --------------------------------------------------------------------------


def redis_config(url: str, **config: Any) -> dict[str, Any]:
    return {"limit": 3, "window": 2, "backend": "redis", "url": url, **config}


class TestRedisRateLimiter:
    async def test_hooks_are_async(self, redis_url):
        plugin = build(RateLimiterPlugin, redis_config(redis_url))
        assert isinstance(plugin, RedisRateLimiterPlugin)
        assert asyncio.iscoroutinefunction(plugin.tool_pre_invoke)
        await plugin.shutdown()

    @pytest.mark.parametrize("algorithm", ["fixed", "sliding"])
    async def test_two_instances_share_one_limit(self, redis_url, algorithm):
        config = redis_config(redis_url, algorithm=algorithm)
        first, second = build(RateLimiterPlugin, config, "rate"), build(RateLimiterPlugin, config, "rate")
        try:
            outcomes = []
            for index in range(6):
                instance = (first, second)[index % 2]
                result = await instance.tool_pre_invoke(tool(), ctx(user="alice"))
                outcomes.append(result.continue_processing)
            assert outcomes == [True, True, True, False, False, False]
            refused = await first.tool_pre_invoke(tool(), ctx(user="alice"))
            details = refused.violation.details
            assert refused.violation.code == "RATE_LIMITED"
            assert refused.violation.http_status_code == 429
            assert 1 <= details["retry_after"] <= 2
            assert details["limit"] == 3
            assert details["remaining"] == 0
            assert refused.metadata["retry_after"] == details["retry_after"]
            # Another user is counted apart, on either instance.
            assert (await second.tool_pre_invoke(tool(), ctx(user="bob"))).continue_processing
            # Once the window has passed, calls are allowed again.
            await asyncio.sleep(details["retry_after"] + 0.2)
            assert (await second.tool_pre_invoke(tool(), ctx(user="alice"))).continue_processing
        finally:
            await first.shutdown()
            await second.shutdown()

    async def test_sliding_window_frees_one_call_at_a_time(self, redis_url):
        config = redis_config(redis_url, limit=2, algorithm="sliding")
        first, second = build(RateLimiterPlugin, config, "rate"), build(RateLimiterPlugin, config, "rate")
        try:
            assert (await first.tool_pre_invoke(tool(), ctx())).continue_processing
            await asyncio.sleep(1.0)
            assert (await second.tool_pre_invoke(tool(), ctx())).continue_processing
            refused = await first.tool_pre_invoke(tool(), ctx())
            assert refused.violation.details["retry_after"] == 1  # the first call leaves in about 1 s
            await asyncio.sleep(1.2)
            # The first call has left the window, the second has not: one slot,
            # where a fixed window that started with the first call would have two.
            assert (await second.tool_pre_invoke(tool(), ctx())).continue_processing
            assert not (await first.tool_pre_invoke(tool(), ctx())).continue_processing
        finally:
            await first.shutdown()
            await second.shutdown()

    async def test_managers_on_different_loops_share_one_limit(self, redis_url):
        # One app instance is async (ASGI), the other sync (WSGI: async hooks run
        # on the background loop); both count in the same Redis key.
        entry = {"kind": KINDS["rate_limiter"], "hooks": ["tool_pre_invoke"], "config": redis_config(redis_url)}
        asgi_app = PluginManager({"plugins": [{"name": "rate", **entry}]}, environ={})
        wsgi_app = PluginManager({"plugins": [{"name": "rate", **entry}]}, environ={})
        try:
            outcomes = []
            for index in range(6):
                context = GlobalContext(str(index), user="alice")
                if index % 2:
                    result = await asyncio.to_thread(wsgi_app.invoke_sync, "tool_pre_invoke", tool(), context)
                else:
                    result = await asyncio.wait_for(asgi_app.invoke("tool_pre_invoke", tool(), context), BOUND)
                outcomes.append(result.continue_processing)
            assert outcomes == [True, True, True, False, False, False]
        finally:
            await asgi_app.aclose()
            await asyncio.to_thread(wsgi_app.close)

    async def test_names_keep_counts_apart(self, redis_url):
        config = redis_config(redis_url, limit=1)
        per_user, per_tool = build(RateLimiterPlugin, config, "a"), build(RateLimiterPlugin, config, "b")
        try:
            assert (await per_user.tool_pre_invoke(tool(), ctx())).continue_processing
            assert (await per_tool.tool_pre_invoke(tool(), ctx())).continue_processing
        finally:
            await per_user.shutdown()
            await per_tool.shutdown()

    @pytest.mark.parametrize(("mode", "passes"), [("enforce_ignore_error", True), ("enforce", False)])
    async def test_redis_errors_follow_the_mode(self, mode, passes):
        down = f"redis://127.0.0.1:{free_port()}/0"
        entry = {"kind": KINDS["rate_limiter"], "mode": mode, "config": redis_config(down)}
        async with manager(entry) as chain:
            result = await asyncio.wait_for(chain.invoke("tool_pre_invoke", tool()), BOUND)
        assert result.continue_processing is passes
        assert result.records[0].outcome is Outcome.ERROR
        assert "ConnectionError" in result.records[0].error
        if not passes:
            assert result.violation.code == "PLUGIN_ERROR"


# --------------------------------------------------------------------------
# audit_log
# --------------------------------------------------------------------------


def lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines()]


class TestAuditLog:
    def test_hook_lines_on_stdout(self, capsys):
        plugin = build(AuditLogPlugin, {})
        context = ctx(user="alice", tenant="acme")
        plugin.tool_pre_invoke(tool(query="x", auth={"Api-Key": "k", "items": [{"password": "p"}]}), context)
        plugin.tool_post_invoke(tool_result(text("hi"), isError=False), context)
        (pre, post) = lines(capsys.readouterr().out)
        assert pre["event"] == "hook"
        assert pre["request_id"] == "r1"
        assert pre["hook"] == "tool_pre_invoke"
        assert (pre["user"], pre["tenant_id"], pre["tool"]) == ("alice", "acme", "search")
        assert pre["args"] == {"query": "x", "auth": {"Api-Key": "[REDACTED]", "items": [{"password": "[REDACTED]"}]}}
        assert pre["digest"].startswith("sha256:")
        assert pre["ts"].endswith("Z")
        assert post["is_error"] is False
        assert "result" not in post  # results only with include_results

    def test_digest_is_taken_after_redaction(self, capsys):
        plugin = build(AuditLogPlugin, {"include_args": False})
        for password in ("one", "two"):
            plugin.tool_pre_invoke(tool(user="u", password=password), ctx())
        plugin.tool_pre_invoke(tool(user="v", password="one"), ctx())
        plugin.tool_pre_invoke(tool("other", user="u", password="one"), ctx())
        first, second, third, fourth = lines(capsys.readouterr().out)
        assert "args" not in first
        assert first["digest"] == second["digest"]
        assert len({first["digest"], third["digest"], fourth["digest"]}) == 3
        assert "one" not in json.dumps(first)

    def test_other_hooks(self, capsys):
        plugin = build(AuditLogPlugin, {"include_results": True, "redact_fields": ["sig"]})
        context = ctx()
        plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="p", args={"SIG": "s"}), context)
        plugin.prompt_post_fetch(PromptPosthookPayload(prompt_id="p", result={"messages": []}), context)
        plugin.resource_pre_fetch(read("https://x/y?sig=abc&a=1"), context)
        plugin.resource_post_fetch(fetched({"text": "t"}), context)
        headers = [("authorization", "Bearer secret")]
        request = HttpPreRequestPayload(
            method="GET", path="/x", query_string="a=1&sig=zz", headers=headers, client="10.0.0.1:5", body=b"{}"
        )
        plugin.http_pre_request(request, context)
        response = HttpPostRequestPayload(method="GET", path="/x", status_code=200, headers=headers, body=b"ok")
        plugin.http_post_request(response, context)
        output = capsys.readouterr().out
        assert "secret" not in output
        prompt, rendered, resource, contents, http_request, http_response = lines(output)
        assert prompt["args"] == {"SIG": "[REDACTED]"}
        assert rendered["result"] == {"messages": []}
        assert resource["uri"] == "https://x/y?sig=[REDACTED]&a=1"
        assert contents["result"] == {"contents": [{"text": "t"}]}
        assert http_request["query"] == "a=1&sig=[REDACTED]"
        assert (http_request["method"], http_request["path"], http_request["client"]) == ("GET", "/x", "10.0.0.1:5")
        assert http_request["size"] == 2
        assert http_response["status_code"] == 200
        assert "headers" not in http_request

    def test_file_sink_rotates(self, tmp_path):
        path = tmp_path / "logs" / "audit.jsonl"
        plugin = build(AuditLogPlugin, {"sink": "file", "path": str(path), "max_bytes": 1000, "backup_count": 2})
        plugin.initialize()
        for index in range(40):
            plugin.tool_pre_invoke(tool(index=index), ctx())
        plugin.shutdown()
        names = sorted(p.name for p in path.parent.iterdir())
        assert names == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
        for name in names:
            content = (path.parent / name).read_text()
            assert len(content.encode()) <= 1000
            assert all(entry["hook"] == "tool_pre_invoke" for entry in lines(content))
        # The newest lines are in the current file.
        assert lines(path.read_text())[-1]["args"] == {"index": 39}

    def test_file_sink_is_thread_safe(self, tmp_path):
        path = tmp_path / "audit.jsonl"
        plugin = build(AuditLogPlugin, {"sink": "file", "path": str(path), "max_bytes": 0})

        def worker(number: int) -> None:
            for index in range(50):
                plugin.tool_pre_invoke(tool(worker=number, index=index), ctx())

        threads = [threading.Thread(target=worker, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND)
        plugin.shutdown()
        entries = lines(path.read_text())
        assert len(entries) == 400
        assert len({(entry["args"]["worker"], entry["args"]["index"]) for entry in entries}) == 400

    def test_unwritable_file_fails_at_start(self, tmp_path):
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        entry = {"kind": KINDS["audit_log"], "config": {"sink": "file", "path": str(blocker / "audit.jsonl")}}
        chain = manager(entry)
        with pytest.raises(RuntimeError, match="failed to initialize"):
            chain.initialize()

    def test_logger_sink(self, caplog):
        plugin = build(AuditLogPlugin, {"sink": "logger", "logger_name": "my.audit", "level": "WARNING"})
        with caplog.at_level("INFO", logger="my.audit"):
            plugin.tool_pre_invoke(tool(), ctx())
        (record,) = caplog.records
        assert record.name == "my.audit"
        assert record.levelname == "WARNING"
        assert json.loads(record.getMessage())["tool"] == "search"

    def test_decisions_after_a_chain(self, tmp_path):
        # The manager hands every finished chain to the plugin's observe_result,
        # so chains a block stopped before the audit plugin's turn are logged too.
        path = tmp_path / "audit.jsonl"
        audit = {"kind": KINDS["audit_log"], "config": {"sink": "file", "path": str(path)}}
        policy = {"kind": KINDS["tool_policy"], "config": {"deny_tools": ["drop"]}}
        with manager(policy, audit) as chain:
            context = GlobalContext("req-9", user="alice")
            assert chain.invoke_sync("tool_pre_invoke", tool("search"), context).continue_processing
            assert not chain.invoke_sync("tool_pre_invoke", tool("drop"), context).continue_processing
        hook, *decisions = lines(path.read_text())
        assert (hook["event"], hook["tool"]) == ("hook", "search")
        assert [(d["plugin"], d["outcome"]) for d in decisions] == [
            ("p0", "passed"),
            ("p1", "passed"),
            ("p0", "blocked"),
        ]
        assert all(d["event"] == "decision" and d["request_id"] == "req-9" for d in decisions)
        assert all(isinstance(d["duration_ms"], float) and d["duration_ms"] >= 0 for d in decisions)
        assert (decisions[2]["code"], decisions[2]["reason"]) == ("POLICY_DENIED", "Denied by policy")
        assert "code" not in decisions[0]

    def test_log_records(self, capsys):
        plugin = build(AuditLogPlugin, {})
        records = [
            ExecutionRecord("slow", HookType.TOOL_POST_INVOKE, Outcome.TIMEOUT, 2.5, "timed out after 2s"),
            ExecutionRecord("guard", HookType.TOOL_POST_INVOKE, Outcome.BLOCKED, 0.001),
        ]
        violation = PluginViolation(reason="No", code="NOPE", plugin_name="guard")
        plugin.log_records("tool_post_invoke", GlobalContext("r7", tenant_id="acme"), records, violation=violation)
        slow, guard = lines(capsys.readouterr().out)
        assert slow["hook"] == "tool_post_invoke"
        assert slow["tenant_id"] == "acme"
        assert (slow["outcome"], slow["duration_ms"], slow["error"]) == ("timeout", 2500.0, "timed out after 2s")
        assert (guard["outcome"], guard["code"], guard["reason"]) == ("blocked", "NOPE", "No")

    def test_values_json_cannot_hold(self, capsys):
        plugin = build(AuditLogPlugin, {})
        plugin.tool_pre_invoke(
            ToolPreInvokePayload.model_construct(name="t", args={"raw": b"\x00", "n": math.pi}), ctx()
        )
        (entry,) = lines(capsys.readouterr().out)
        assert entry["args"]["raw"] == "b'\\x00'"
