"""
Built-in plugins end to end
===========================

Each built-in plugin is loaded by its entry-point name from a YAML-shaped
dict, runs in :class:`~mcp_plugin_mw.PluginMiddleware` in front of an
``MCPServer`` app, and is seen from the official SDK ``Client``: in process
through httpx2's ``ASGITransport`` with the app's lifespan running, in the
2026-07-28 protocol (``mode="auto"``) and, for some cases, the 2025-11-25 one
(``mode="legacy"``, where every response is an event stream). Tests assert on
what the client receives and, where a request hook changes a message, on what
the tool itself received.

Two apps, each with its own manager, share one real ``redis-server``
(``tests/redis_fixture.py``) for a global rate limit; a small Flask JSON-RPC
app runs behind :class:`~mcp_plugin_mw.WSGIPluginMiddleware` on werkzeug's
server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from flask import Flask, jsonify, request
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from werkzeug.serving import make_server

import mcp_plugin_mw as mw
from mcp_plugin_mw.plugins import regex_replace

BASE = "http://127.0.0.1:8000"
BOUND = 10.0
"""Seconds any request or wait in these tests lasts at most."""

MODES = ["auto", "legacy"]


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own ``MCP_PLUGIN_MW_*`` variables must not change the configs below."""
    import os

    for name in list(os.environ):
        if name.startswith("MCP_PLUGIN_MW_"):
            monkeypatch.delenv(name)


# --------------------------------------------------------------------------
# The MCP server and how the tests reach it
# --------------------------------------------------------------------------


def build_server(received: list[tuple[str, dict[str, Any]]]) -> MCPServer:
    """Tools, a prompt and resources; ``received`` records what the server was sent."""
    server = MCPServer("plugins-e2e")

    @server.tool()
    def echo(text: str) -> str:
        received.append(("echo", {"text": text}))
        return text

    @server.tool()
    def profile(name: str) -> dict[str, Any]:
        received.append(("profile", {"name": name}))
        return {
            "name": name,
            "contact": {"email": "bob.jones@example.com", "phones": ["415-555-2671"], "ssn": "123-45-6789"},
        }

    @server.tool()
    def login(user: str, password: str) -> str:
        received.append(("login", {"user": user, "password": password}))
        return f"welcome {user}"

    @server.tool()
    def big(size: int) -> str:
        return "x" * size

    @server.tool()
    def search(query: str, filters: list[dict[str, Any]]) -> str:
        received.append(("search", {"query": query, "filters": filters}))
        return f"{len(filters)} filters"

    @server.tool()
    def delete_all() -> str:
        return "deleted"

    @server.prompt()
    def contact(name: str) -> str:
        received.append(("contact", {"name": name}))
        return f"Write to {name}. Our desk: help@corp.example, (415) 555-2671."

    @server.resource("res://notes/{note}")
    def note(note: str) -> str:
        return f"note {note}: call 415-555-2671; password = hunter2"

    @server.resource("https://docs.example.org/{page}")
    def docs(page: str) -> str:
        return f"public page {page}"

    return server


class App:
    """One ``MCPServer`` app wrapped by its own ``PluginMiddleware`` (and so its own manager)."""

    def __init__(self, plugins: list[dict[str, Any]], **plugin_settings: Any) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.inner = build_server(self.received).streamable_http_app(json_response=False)
        self.config = {"plugin_settings": plugin_settings, "plugins": plugins}
        self.middleware = mw.PluginMiddleware(self.inner, config=self.config)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """The inner app's lifespan (the SDK's session manager); the plugins are closed after."""
        try:
            async with self.inner.router.lifespan_context(self.inner):
                yield self
        finally:
            await self.middleware.manager.aclose()

    @contextlib.asynccontextmanager
    async def client(self, mode: str = "auto", headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
        """An SDK client talking to the middleware in process; ``headers`` go on every request."""
        async with (
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=self.middleware),
                base_url=BASE,
                headers=headers or {},
                timeout=httpx2.Timeout(BOUND),
            ) as http,
            Client(streamable_http_client(f"{BASE}/mcp", http_client=http), mode=mode) as client,
        ):
            yield client


@contextlib.asynccontextmanager
async def connect(
    plugins: list[dict[str, Any]],
    mode: str = "auto",
    headers: dict[str, str] | None = None,
    **plugin_settings: Any,
) -> AsyncIterator[Any]:
    """A running app and one client: yields ``(client, app)``."""
    app = App(plugins, **plugin_settings)
    async with app.running(), app.client(mode, headers) as client:
        yield client, app


def plugin(kind: str, name: str | None = None, **entry: Any) -> dict[str, Any]:
    """A ``plugins:`` entry for the built-in ``kind``, as written in YAML."""
    return {"name": name or kind, "kind": kind, **entry}


MCP_HOOKS = [
    "tool_pre_invoke",
    "tool_post_invoke",
    "prompt_pre_fetch",
    "prompt_post_fetch",
    "resource_pre_fetch",
    "resource_post_fetch",
]


def text_plugin(kind: str, name: str | None = None, **entry: Any) -> dict[str, Any]:
    """A content plugin (PII, secrets, deny list, regex) on the MCP hooks only.

    Without ``hooks:`` these plugins also run on ``http_pre_request`` and
    ``http_post_request``, on the whole JSON-RPC body, where a block is a plain
    HTTP problem response rather than a JSON-RPC error
    (:func:`test_default_hooks_block_mcp_calls_with_a_jsonrpc_error`).
    """
    return plugin(kind, name, hooks=MCP_HOOKS, **entry)


def texts(result: Any) -> list[str]:
    return [item.text for item in result.content]


async def refused(call: Any) -> MCPError:
    """The ``MCPError`` that awaiting ``call`` raises."""
    with pytest.raises(MCPError) as caught:
        await asyncio.wait_for(call, BOUND)
    return caught.value


# --------------------------------------------------------------------------
# pii_filter
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_pii_masked_in_tool_arguments_and_results(mode: str) -> None:
    async with connect([text_plugin("pii_filter", config={"strategy": "redact"})], mode) as (client, app):
        result = await client.call_tool("echo", {"text": "mail ann@example.com, SSN 123-45-6789"})
        # The tool got the masked text, and echoed it.
        assert app.received[-1] == ("echo", {"text": "mail [REDACTED:EMAIL], SSN [REDACTED:SSN]"})
        assert texts(result) == ["mail [REDACTED:EMAIL], SSN [REDACTED:SSN]"]

        # PII the tool itself produces is masked on the way out, in the text
        # content and at any depth in structuredContent.
        profile = await client.call_tool("profile", {"name": "Bob"})
        assert app.received[-1] == ("profile", {"name": "Bob"})
        assert profile.structured_content == {
            "name": "Bob",
            "contact": {
                "email": "[REDACTED:EMAIL]",
                "phones": ["[REDACTED:PHONE]"],
                "ssn": "[REDACTED:SSN]",
            },
        }
        shown = texts(profile)[0]
        assert "bob.jones@example.com" not in shown
        assert "415-555-2671" not in shown
        assert "123-45-6789" not in shown
        assert "[REDACTED:EMAIL]" in shown

        plain = await client.call_tool("echo", {"text": "nothing personal"})
        assert texts(plain) == ["nothing personal"]


@pytest.mark.parametrize("mode", MODES)
async def test_pii_masked_in_prompts_and_resources(mode: str) -> None:
    async with connect([text_plugin("pii_filter", config={"strategy": "partial"})], mode) as (client, app):
        prompt = await client.get_prompt("contact", {"name": "ann@example.com"})
        assert app.received[-1] == ("contact", {"name": "a***@example.com"})
        desk = "h***@corp.example, (***) ***-2671"
        assert prompt.messages[0].content.text == f"Write to a***@example.com. Our desk: {desk}."

        resource = await client.read_resource("res://notes/7")
        assert resource.contents[0].text == "note 7: call ***-***-2671; password = hunter2"


async def test_pii_block_strategy_refuses_without_quoting() -> None:
    async with connect([text_plugin("pii_filter", "pii", config={"strategy": "block"})]) as (client, app):
        error = await refused(client.call_tool("echo", {"text": "card 4111 1111 1111 1111, ann@example.com"}))
        assert error.code == -32602
        assert error.message == "Plugin Violation: message contains personal data: CREDIT_CARD, EMAIL"
        assert error.data["plugin_name"] == "pii"
        assert error.data["plugin_error_code"] == "PII_DETECTED"
        assert error.data["details"] == {"types": ["CREDIT_CARD", "EMAIL"], "counts": {"CREDIT_CARD": 1, "EMAIL": 1}}
        assert "4111" not in json.dumps(error.data)
        assert "ann@" not in json.dumps(error.data)
        assert app.received == []  # the tool never ran
        # The session survives the refusal.
        assert texts(await client.call_tool("echo", {"text": "fine"})) == ["fine"]


async def test_default_hooks_block_mcp_calls_with_a_jsonrpc_error() -> None:
    """The plugin entry as the module docstring writes it, without ``hooks:``."""
    async with connect([plugin("pii_filter", "pii", config={"strategy": "block"})]) as (client, _):
        error = await refused(client.call_tool("echo", {"text": "ann@example.com"}))
        assert error.code == -32602
        assert error.data is not None
        assert error.data["plugin_error_code"] == "PII_DETECTED"


async def test_http_hook_block_on_an_mcp_call_is_a_jsonrpc_error() -> None:
    """A plugin on http_pre_request that blocks a JSON-RPC request answers it in JSON-RPC, with its id."""
    entry = plugin("pii_filter", "pii", config={"strategy": "block"})
    entry["hooks"] = ["http_pre_request"]
    async with connect([entry]) as (client, app):
        error = await refused(client.call_tool("echo", {"text": "ann@example.com"}))
        assert error.code == -32602
        assert error.data is not None
        assert error.data["plugin_name"] == "pii"
        assert error.data["plugin_error_code"] == "PII_DETECTED"
        assert app.received == []


# --------------------------------------------------------------------------
# secrets_detection
# --------------------------------------------------------------------------

AWS_KEY = "AKIA2E0A8F3B244C9986"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2  # 40 characters after the prefix


async def test_secrets_redacted() -> None:
    async with connect([text_plugin("secrets_detection")]) as (client, app):
        result = await client.call_tool("echo", {"text": f"use {AWS_KEY} to deploy"})
        assert app.received[-1] == ("echo", {"text": "use [REDACTED:AWS_ACCESS_KEY_ID] to deploy"})
        assert texts(result) == ["use [REDACTED:AWS_ACCESS_KEY_ID] to deploy"]


async def test_secrets_blocked() -> None:
    async with connect([text_plugin("secrets_detection", "secrets", config={"action": "block"})]) as (client, app):
        error = await refused(client.call_tool("echo", {"text": f"token {GITHUB_TOKEN}"}))
        assert error.code == -32602
        assert error.data["plugin_name"] == "secrets"
        assert error.data["plugin_error_code"] == "SECRETS_DETECTED"
        assert error.data["details"] == {"types": ["GITHUB_TOKEN"], "counts": {"GITHUB_TOKEN": 1}}
        assert GITHUB_TOKEN not in json.dumps(error.data)
        assert GITHUB_TOKEN not in error.message
        assert app.received == []


# --------------------------------------------------------------------------
# deny_list
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_deny_list_blocks_without_echoing_the_text(mode: str) -> None:
    deny = text_plugin(
        "deny_list",
        "banned",
        config={"terms": ["project falcon", "internal only"], "rule_name": "confidential"},
    )
    async with connect([deny], mode) as (client, app):
        text = "Status of Project Falcon? Marked Internal Only."
        error = await refused(client.call_tool("echo", {"text": text}))
        assert error.code == -32602
        assert error.message == "Plugin Violation: message matches deny list 'confidential'"
        assert error.data["plugin_name"] == "banned"
        assert error.data["plugin_error_code"] == "DENY_LIST"
        assert error.data["details"] == {"rule": "confidential", "term_ids": [0, 1]}
        shown = (error.message + json.dumps(error.data)).lower()
        assert "falcon" not in shown
        assert "internal only" not in shown
        assert "status of" not in shown
        assert app.received == []
        # Whole words only: "falconry" is not the project.
        assert texts(await client.call_tool("echo", {"text": "project falconry"})) == ["project falconry"]


# --------------------------------------------------------------------------
# regex_replace
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_regex_replace_rules_chain(mode: str) -> None:
    rules = [{"search": "crap", "replace": "crud"}, {"search": "crud", "replace": "yikes"}]
    async with connect([text_plugin("regex_replace", config={"rules": rules})], mode) as (client, app):
        result = await client.call_tool("echo", {"text": "what crap, what crud"})
        assert app.received[-1] == ("echo", {"text": "what yikes, what yikes"})
        assert texts(result) == ["what yikes, what yikes"]


@pytest.mark.skipif(not regex_replace.HAVE_RE2, reason="google-re2 is not installed")
def test_pattern_re2_cannot_run_refused_unless_allowed() -> None:
    """With RE2, patterns it cannot compile (a backreference) need ``allow_backtracking``."""
    rules = [{"search": r"(a)\1", "replace": "b"}]
    inner = build_server([]).streamable_http_app()
    with pytest.raises(mw.ConfigError) as caught:
        mw.PluginMiddleware(inner, config={"plugins": [text_plugin("regex_replace", config={"rules": rules})]})
    assert "config.rules[0].search: RE2 cannot compile" in str(caught.value)
    allowed = {"rules": rules, "allow_backtracking": True}
    middleware = mw.PluginMiddleware(inner, config={"plugins": [text_plugin("regex_replace", config=allowed)]})
    middleware.manager.close()


@pytest.mark.skipif(not regex_replace.HAVE_RE2, reason="google-re2 is not installed")
@pytest.mark.parametrize("allow_backtracking", [False, True])
async def test_catastrophic_pattern_runs_linear_on_re2(allow_backtracking: bool) -> None:
    """RE2 compiles ``(a+)+$``, so it loads either way and a hostile input returns promptly."""
    config = {"rules": [{"search": "(a+)+$", "replace": "b"}], "allow_backtracking": allow_backtracking}
    async with connect([text_plugin("regex_replace", config=config)]) as (client, app):
        hostile = "a" * 50_000 + "!"
        # On Python's engine this would take longer than the universe has left.
        result = await asyncio.wait_for(client.call_tool("echo", {"text": hostile}), BOUND)
        assert texts(result) == [hostile]
        matched = await client.call_tool("echo", {"text": "aaa"})
        assert app.received[-1] == ("echo", {"text": "b"})
        assert texts(matched) == ["b"]


# --------------------------------------------------------------------------
# resource_filter
# --------------------------------------------------------------------------


async def test_resource_filter_blocks_domains_and_filters_text() -> None:
    config = {
        "blocked_domains": ["internal.example.com"],
        "text_filters": [{"pattern": r"(?i)password\s*=\s*\S+", "replacement": "password=[REDACTED]"}],
    }
    async with connect([plugin("resource_filter", "resources", config=config)]) as (client, _):
        for uri, domain in [
            ("https://internal.example.com/payroll", "internal.example.com"),
            ("https://wiki.internal.example.com/x", "internal.example.com"),
        ]:
            error = await refused(client.read_resource(uri))
            assert error.code == -32602
            assert error.data["plugin_name"] == "resources"
            assert error.data["plugin_error_code"] == "RESOURCE_DOMAIN_BLOCKED"
            assert error.data["details"] == {"uri": uri, "domain": domain}

        allowed = await client.read_resource("https://docs.example.org/intro")
        assert allowed.contents[0].text == "public page intro"

        filtered = await client.read_resource("res://notes/1")
        assert filtered.contents[0].text == "note 1: call 415-555-2671; password=[REDACTED]"


# --------------------------------------------------------------------------
# size_guard
# --------------------------------------------------------------------------


async def test_size_guard_truncates_results_and_refuses_large_arguments() -> None:
    config = {"max_result_chars": 100, "max_argument_bytes": 200}
    async with connect([plugin("size_guard", "size", config=config)]) as (client, app):
        result = await client.call_tool("big", {"size": 500})
        assert texts(result) == ["x" * 100 + "\n[truncated]"]
        assert texts(await client.call_tool("big", {"size": 100})) == ["x" * 100]

        error = await refused(client.call_tool("echo", {"text": "y" * 300}))
        assert error.code == -32602
        assert error.data["plugin_error_code"] == "ARGUMENTS_TOO_LARGE"
        assert error.data["details"] == {"tool": "echo", "size": 311, "limit": 200}
        assert app.received == []


async def test_size_guard_block_action() -> None:
    config = {"max_result_chars": 100, "action": "block"}
    async with connect([plugin("size_guard", "size", config=config)]) as (client, _):
        error = await refused(client.call_tool("big", {"size": 101}))
        assert error.code == -32603
        assert error.message == "Plugin Violation: tool 'big' result has 101 characters of text, over the limit of 100"
        assert error.data["plugin_error_code"] == "RESULT_TOO_LARGE"
        assert texts(await client.call_tool("big", {"size": 100})) == ["x" * 100]


# --------------------------------------------------------------------------
# schema_guard
# --------------------------------------------------------------------------

SEARCH_SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "maxLength": 20},
        "filters": {
            "type": "array",
            "items": {"type": "object", "properties": {"field": {"type": "string"}}, "required": ["field"]},
        },
    },
    "required": ["query", "filters"],
}


async def test_schema_guard_rejects_bad_arguments_with_the_field_path() -> None:
    config = {"tools": {"search": {"arguments": SEARCH_SCHEMA}}}
    async with connect([plugin("schema_guard", "schemas", config=config)]) as (client, app):
        ok = await client.call_tool("search", {"query": "cats", "filters": [{"field": "name"}]})
        assert texts(ok) == ["1 filters"]

        error = await refused(client.call_tool("search", {"query": "cats", "filters": [{"field": "a"}, {"field": 3}]}))
        assert error.code == -32602
        assert error.message == (
            "Plugin Violation: tool 'search' arguments do not match the schema: "
            "$.filters[1].field: 3 is not of type 'string'"
        )
        assert error.data["plugin_error_code"] == "INVALID_ARGUMENTS"
        assert error.data["details"]["errors"] == [
            {"path": "$.filters[1].field", "message": "3 is not of type 'string'", "keyword": "type"}
        ]

        missing = await refused(client.call_tool("search", {"filters": []}))
        assert [e["path"] for e in missing.data["details"]["errors"]] == ["$.query"]
        assert len(app.received) == 1  # only the valid call reached the tool


# --------------------------------------------------------------------------
# tool_policy
# --------------------------------------------------------------------------


async def test_tool_policy_denies_a_tool_for_one_user_only() -> None:
    config = {"rules": [{"users": ["^alice$"], "deny_tools": ["delete_*"]}]}
    app = App([plugin("tool_policy", "policy", config=config)], user_header="X-User")
    async with app.running():
        async with app.client(headers={"x-user": "alice"}) as alice:
            error = await refused(alice.call_tool("delete_all", {}))
            assert error.code == -32602
            assert error.message == "Plugin Violation: tool 'delete_all' is not allowed: matches deny_tools"
            assert error.data["plugin_error_code"] == "POLICY_DENIED"
            assert error.data["details"] == {"kind": "tool", "name": "delete_all", "user": "alice", "tenant_id": None}
            assert texts(await alice.call_tool("echo", {"text": "hi"})) == ["hi"]
        async with app.client(headers={"x-user": "bob"}) as bob:
            assert texts(await bob.call_tool("delete_all", {})) == ["deleted"]


# --------------------------------------------------------------------------
# rate_limiter
# --------------------------------------------------------------------------


async def test_rate_limiter_memory_backend() -> None:
    config = {"limit": 3, "window": 60, "by": ["user", "tool"]}
    async with connect([plugin("rate_limiter", "rate", hooks=["tool_pre_invoke"], config=config)]) as (client, _):
        for n in range(3):
            assert texts(await client.call_tool("echo", {"text": str(n)})) == [str(n)]
        error = await refused(client.call_tool("echo", {"text": "one too many"}))
        assert error.code == -32000
        assert error.message.startswith("Plugin Violation: rate limit of 3 per 60s exceeded; retry in ")
        assert error.data["plugin_name"] == "rate"
        assert error.data["plugin_error_code"] == "RATE_LIMITED"
        details = error.data["details"]
        assert isinstance(details["retry_after"], int)
        assert 1 <= details["retry_after"] <= 60
        assert details["limit"] == 3
        assert details["remaining"] == 0
        assert details["window"] == 60
        # Counted per tool: another tool has its own count.
        assert texts(await client.call_tool("big", {"size": 2})) == ["xx"]


async def test_rate_limit_shared_by_two_apps_through_redis(redis_url: str) -> None:
    """Two apps, two managers, one Redis: the limit holds across both."""
    limit = 4
    config = {"limit": limit, "window": 60, "by": ["tool"], "backend": "redis", "url": redis_url}
    first = App([plugin("rate_limiter", "rate", hooks=["tool_pre_invoke"], config=config)])
    second = App([plugin("rate_limiter", "rate", hooks=["tool_pre_invoke"], config=config)])
    assert first.middleware.manager is not second.middleware.manager
    async with (
        first.running(),
        second.running(),
        first.client() as one,
        second.client() as two,
    ):
        clients = [one, two]
        for n in range(limit):
            result = await asyncio.wait_for(clients[n % 2].call_tool("echo", {"text": f"call {n}"}), BOUND)
            assert texts(result) == [f"call {n}"]
        # Each app has seen only half the limit, yet the next call is refused on either.
        assert len(first.received) == len(second.received) == limit // 2
        for client in clients:
            error = await refused(client.call_tool("echo", {"text": "over"}))
            assert error.code == -32000
            assert error.data["plugin_error_code"] == "RATE_LIMITED"
            assert error.data["details"]["limit"] == limit
            assert error.data["details"]["retry_after"] >= 1
        assert len(first.received) + len(second.received) == limit


# --------------------------------------------------------------------------
# audit_log
# --------------------------------------------------------------------------


async def test_audit_log_writes_redacted_hook_and_decision_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    plugins = [
        text_plugin("deny_list", "banned", config={"terms": ["forbidden"]}),
        plugin("audit_log", "audit", config={"sink": "file", "path": str(path)}),
    ]
    async with connect(plugins, headers={"x-user": "alice"}, user_header="x-user") as (client, _):
        assert texts(await client.call_tool("login", {"user": "alice", "password": "hunter2"})) == ["welcome alice"]
        error = await refused(client.call_tool("echo", {"text": "a forbidden word"}))
        assert error.data["plugin_error_code"] == "DENY_LIST"

    raw = path.read_text(encoding="utf-8")
    assert "hunter2" not in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    hooks = [line for line in lines if line["event"] == "hook"]
    decisions = [line for line in lines if line["event"] == "decision"]

    login = next(line for line in hooks if line["hook"] == "tool_pre_invoke" and line.get("tool") == "login")
    assert login["args"] == {"user": "alice", "password": "[REDACTED]"}
    assert login["user"] == "alice"
    assert login["digest"].startswith("sha256:")
    assert any(line["hook"] == "tool_post_invoke" and line.get("tool") == "login" for line in hooks)

    # The blocked call: a decision line names the blocking plugin and its code,
    # though the chain stopped before the audit plugin's turn.
    blocked = [line for line in decisions if line.get("code") == "DENY_LIST"]
    assert len(blocked) == 1
    assert blocked[0]["plugin"] == "banned"
    assert blocked[0]["hook"] == "tool_pre_invoke"
    assert "forbidden" not in json.dumps(blocked)
    assert {line["plugin"] for line in decisions} >= {"banned", "audit"}
    assert all(line["request_id"] for line in lines)


# --------------------------------------------------------------------------
# WSGI: a Flask JSON-RPC app
# --------------------------------------------------------------------------


def flask_app(received: list[Any]) -> Flask:
    """``POST /mcp`` answers ``tools/call`` with the text it was sent and a contact address."""
    app = Flask("plugins-e2e-wsgi")

    @app.post("/mcp")
    def mcp() -> Any:
        message = request.get_json()
        received.append(message)
        if message.get("method") != "tools/call":
            return jsonify({"jsonrpc": "2.0", "id": message.get("id"), "error": {"code": -32601, "message": "nope"}})
        text = message["params"]["arguments"]["text"]
        content = [{"type": "text", "text": f"you said: {text}; write to carol@example.com"}]
        return jsonify({"jsonrpc": "2.0", "id": message["id"], "result": {"content": content, "isError": False}})

    return app


@contextlib.contextmanager
def werkzeug_server(app: Any) -> Iterator[str]:
    """``app`` on werkzeug's threaded server on 127.0.0.1; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(BOUND)


def test_wsgi_flask_app_with_pii_filter_and_deny_list() -> None:
    received: list[Any] = []
    app = flask_app(received)
    config = {
        "plugins": [
            text_plugin("deny_list", "banned", config={"terms": ["project falcon"]}),
            text_plugin("pii_filter", "pii"),
        ]
    }
    middleware = mw.WSGIPluginMiddleware(app.wsgi_app, config=config)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    headers = {"accept": "application/json, text/event-stream"}

    def tool_call(request_id: int, text: str) -> dict[str, Any]:
        params = {"name": "echo", "arguments": {"text": text}}
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}

    try:
        with werkzeug_server(app) as url, httpx.Client(base_url=url, timeout=BOUND) as http:
            masked = http.post("/mcp", json=tool_call(1, "I am ann@example.com"), headers=headers)
            assert masked.status_code == 200
            assert received[-1]["params"]["arguments"] == {"text": "I am [REDACTED:EMAIL]"}
            assert masked.json() == {
                "jsonrpc": "2.0",
                "id": 1,
                "result": {
                    "content": [{"type": "text", "text": "you said: I am [REDACTED:EMAIL]; write to [REDACTED:EMAIL]"}],
                    "isError": False,
                },
            }
            assert int(masked.headers["content-length"]) == len(masked.content)

            blocked = http.post("/mcp", json=tool_call(2, "news on Project Falcon?"), headers=headers)
            error = blocked.json()
            assert error["id"] == 2
            assert error["error"]["code"] == -32602
            assert error["error"]["data"]["plugin_name"] == "banned"
            assert error["error"]["data"]["plugin_error_code"] == "DENY_LIST"
            assert "falcon" not in blocked.text.lower()
            assert len(received) == 1  # the app never saw the blocked call
    finally:
        middleware.manager.close()
