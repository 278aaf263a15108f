"""
No client-controlled text meets a backtracking regex (DESIGN §9)
================================================================

User patterns (``excluded_urls``, conditions' ``user_patterns``, the plugins'
patterns) run on RE2. ``(a+)+$`` on ``"a" * 10_000 + "!"`` would take Python's
engine longer than the universe has left; on RE2 it returns at once, so each
of these tests finishes well inside its timeout. A pattern RE2 cannot compile
is refused at load, naming where it is, unless ``allow_backtracking: true``.

Everything goes through the real middleware in front of a small Starlette
app, called with httpx's ASGI transport.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import mcp_plugin_mw as mw

HOSTILE = "a" * 10_000 + "!"
EVIL = "(a+)+$"
BACKREFERENCE = r"(a)\1"
TIMEOUT = 60  # seconds; RE2 needs milliseconds, Python's engine would never finish

REGEX_REPLACE = "mcp_plugin_mw.plugins.regex_replace.RegexReplacePlugin"
RESOURCE_FILTER = "mcp_plugin_mw.plugins.resource_filter.ResourceFilterPlugin"
TOOL_POLICY = "mcp_plugin_mw.plugins.tool_policy.ToolPolicyPlugin"


def make_app(resource_text: str = "") -> Starlette:
    """An MCP-ish server: ``tools/call`` echoes ``text``, ``resources/read`` returns ``resource_text``."""

    async def rpc(request: Request) -> JSONResponse:
        message = await request.json()
        params = message.get("params") or {}
        if message["method"] == "tools/call":
            result: dict[str, Any] = {"content": [{"type": "text", "text": params["arguments"]["text"]}]}
        elif message["method"] == "resources/read":
            result = {"contents": [{"uri": params["uri"], "mimeType": "text/plain", "text": resource_text}]}
        else:
            result = {}
        return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})

    return Starlette(routes=[Route("/{path:path}", rpc, methods=["POST"])])


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000")


def rpc(method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})


def call(text: str) -> bytes:
    return rpc("tools/call", {"name": "echo", "arguments": {"text": text}})


def tool_text(response: httpx.Response) -> str:
    text: str = response.json()["result"]["content"][0]["text"]
    return text


def replace_all_a() -> dict[str, Any]:
    """A plugin whose effect shows whether a request went through the pipeline."""
    return {"name": "mark", "kind": REGEX_REPLACE, "config": {"rules": [{"search": "a", "replace": "b"}]}}


def refusal(config: dict[str, Any]) -> str:
    with pytest.raises(mw.ConfigError) as caught:
        mw.PluginMiddleware(make_app(), config=config)
    return str(caught.value)


# --------------------------------------------------------------------------
# Hostile input on RE2
# --------------------------------------------------------------------------


@pytest.mark.timeout(TIMEOUT)
async def test_excluded_urls_run_on_re2() -> None:
    config = {"plugin_settings": {"excluded_urls": [EVIL]}, "plugins": [replace_all_a()]}
    middleware = mw.PluginMiddleware(make_app(), config=config)
    try:
        async with client(middleware) as http:
            hostile = await http.post("/" + HOSTILE, content=call("a"))
            assert hostile.status_code == 200
            assert tool_text(hostile) == "b"  # not excluded: the plugin ran
            excluded = await http.post("/aaa", content=call("a"))
            assert tool_text(excluded) == "a"  # excluded: passed untouched
    finally:
        middleware.manager.close()


@pytest.mark.timeout(TIMEOUT)
async def test_resource_filter_text_filters_run_on_re2() -> None:
    config = {"text_filters": [{"pattern": EVIL, "replacement": "[X]"}]}
    plugins = [{"name": "resources", "kind": RESOURCE_FILTER, "config": config}]
    for text, expected in ((HOSTILE, HOSTILE), ("xaaa", "x[X]")):
        middleware = mw.PluginMiddleware(make_app(resource_text=text), config={"plugins": plugins})
        try:
            async with client(middleware) as http:
                response = await http.post("/mcp", content=rpc("resources/read", {"uri": "file:///r.txt"}))
                assert response.status_code == 200
                assert response.json()["result"]["contents"][0]["text"] == expected
        finally:
            middleware.manager.close()


@pytest.mark.timeout(TIMEOUT)
async def test_regex_replace_runs_on_re2() -> None:
    rules = [{"search": EVIL, "replace": "[X]"}]
    middleware = mw.PluginMiddleware(
        make_app(), config={"plugins": [{"name": "tidy", "kind": REGEX_REPLACE, "config": {"rules": rules}}]}
    )
    try:
        async with client(middleware) as http:
            assert tool_text(await http.post("/mcp", content=call(HOSTILE))) == HOSTILE
            assert tool_text(await http.post("/mcp", content=call("xaaa"))) == "x[X]"
    finally:
        middleware.manager.close()


@pytest.mark.timeout(TIMEOUT)
async def test_user_patterns_and_tool_policy_users_run_on_re2() -> None:
    config = {
        "plugin_settings": {"user_header": "x-user"},
        "plugins": [
            {**replace_all_a(), "conditions": [{"user_patterns": [EVIL]}]},
            {"name": "policy", "kind": TOOL_POLICY, "config": {"rules": [{"users": [EVIL], "deny_tools": ["echo"]}]}},
        ],
    }
    middleware = mw.PluginMiddleware(make_app(), config=config)
    try:
        async with client(middleware) as http:
            hostile = await http.post("/mcp", content=call("a"), headers={"x-user": HOSTILE})
            assert tool_text(hostile) == "a"  # neither the condition nor the rule matched
            matched = await http.post("/mcp", content=call("a"), headers={"x-user": "aaa"})
            assert "error" in matched.json()  # the rule matched: echo is denied
    finally:
        middleware.manager.close()


# --------------------------------------------------------------------------
# Patterns RE2 cannot compile
# --------------------------------------------------------------------------


def test_backreference_in_excluded_urls_refused_unless_allowed() -> None:
    message = refusal({"plugin_settings": {"excluded_urls": ["^/health$", BACKREFERENCE]}})
    assert "plugin_settings.excluded_urls[1]: RE2 cannot compile" in message
    assert "set plugin_settings.allow_backtracking: true" in message
    middleware = mw.PluginMiddleware(
        make_app(), config={"plugin_settings": {"excluded_urls": [BACKREFERENCE], "allow_backtracking": True}}
    )
    middleware.manager.close()


def test_backreference_in_user_patterns_refused_unless_allowed() -> None:
    plugin = {**replace_all_a(), "conditions": [{"user_patterns": ["^ok$", BACKREFERENCE]}]}
    message = refusal({"plugins": [plugin]})
    assert "plugins[0].conditions[0].user_patterns[1]: RE2 cannot compile" in message
    allowed = {"plugin_settings": {"allow_backtracking": True}, "plugins": [plugin]}
    mw.PluginMiddleware(make_app(), config=allowed).manager.close()


@pytest.mark.parametrize(
    ("kind", "config", "where"),
    [
        (REGEX_REPLACE, {"rules": [{"search": BACKREFERENCE}]}, "config.rules[0].search"),
        (RESOURCE_FILTER, {"text_filters": [{"pattern": "x"}, {"pattern": BACKREFERENCE}]}, "config.text_filters[1]"),
        (TOOL_POLICY, {"rules": [{"users": [BACKREFERENCE]}]}, "config.rules[0].users[0]"),
        (
            "mcp_plugin_mw.plugins.pii.PIIFilterPlugin",
            {"custom_patterns": [{"name": "X", "pattern": BACKREFERENCE}]},
            "config.custom_patterns[0].pattern",
        ),
        (
            "mcp_plugin_mw.plugins.schema_guard.SchemaGuardPlugin",
            {"tools": {"echo": {"arguments": {"properties": {"text": {"pattern": BACKREFERENCE}}}}}},
            "config.tools.echo.arguments",
        ),
    ],
)
def test_backreference_in_plugin_config_refused_unless_allowed(kind: str, config: dict[str, Any], where: str) -> None:
    message = refusal({"plugins": [{"name": "guard", "kind": kind, "config": config}]})
    assert "plugins[0] (guard)" in message
    assert where in message
    assert "RE2 cannot compile" in message
    assert "set allow_backtracking: true to use Python's re" in message
    allowed = {"plugins": [{"name": "guard", "kind": kind, "config": {**config, "allow_backtracking": True}}]}
    mw.PluginMiddleware(make_app(), config=allowed).manager.close()


def test_allow_backtracking_is_validated() -> None:
    assert "plugin_settings.allow_backtracking: Input should be a valid boolean" in refusal(
        {"plugin_settings": {"allow_backtracking": "maybe"}}
    )
    plugin = {"name": "tidy", "kind": REGEX_REPLACE, "config": {"rules": [{"search": "a"}], "allow_backtracking": []}}
    assert "config.allow_backtracking: Input should be a valid boolean" in refusal({"plugins": [plugin]})
    unknown = {"name": "size", "kind": "mcp_plugin_mw.plugins.size_guard.SizeGuardPlugin"}
    assert "config.allow_backtracking" in refusal({"plugins": [{**unknown, "config": {"allow_backtracking": True}}]})


@pytest.mark.timeout(TIMEOUT)
async def test_allowed_backreference_runs_on_python_re() -> None:
    rules = [{"search": BACKREFERENCE, "replace": "[X]"}]
    plugin = {"name": "tidy", "kind": REGEX_REPLACE, "config": {"rules": rules, "allow_backtracking": True}}
    config = {"plugin_settings": {"excluded_urls": [r"^/(x)\1$"], "allow_backtracking": True}, "plugins": [plugin]}
    middleware = mw.PluginMiddleware(make_app(), config=config)
    try:
        async with client(middleware) as http:
            assert tool_text(await http.post("/mcp", content=call("xaay"))) == "x[X]y"
            assert tool_text(await http.post("/xx", content=call("xaay"))) == "xaay"  # excluded
    finally:
        middleware.manager.close()
