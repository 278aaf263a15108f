"""The guard and policy plugins: url_guard, sql_sanitizer, cedar_policy.

Each plugin is tested on its hook methods, through a :class:`PluginManager`
loaded by entry-point name (configuration errors name the field), and behind
:class:`~mcp_plugin_mw.PluginMiddleware` on uvicorn with the official SDK
client, where the tools record each run so that a refused call provably did
not reach them. A hypothesis property checks that every spelling of
127.0.0.1 and 169.254.169.254 that ``socket.inet_aton`` or ``ipaddress``
accepts is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer

import mcp_plugin_mw as mw
from mcp_plugin_mw import (
    ConfigError,
    GlobalContext,
    PluginConfig,
    PluginContext,
    PluginManager,
    PromptPrehookPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from mcp_plugin_mw.models import HookType, PromptListPayload, ResourceListPayload, ToolListPayload
from mcp_plugin_mw.plugins import cedar_policy, sql_sanitizer, url_guard
from mcp_plugin_mw.plugins.cedar_policy import CedarPolicyPlugin, to_cedar
from mcp_plugin_mw.plugins.sql_sanitizer import SQLSanitizerPlugin
from mcp_plugin_mw.plugins.url_guard import URLGuardPlugin, check_url, prose_urls, whole_url
from tests.fail_closed_support import BOUND, uvicorn_on

logging.getLogger("sqlglot").setLevel(logging.ERROR)


def context(user: str | None = None, tenant: str | None = None) -> PluginContext:
    return PluginContext(GlobalContext(request_id="1", user=user, tenant_id=tenant))


def make(cls: type[Any], config: dict[str, Any], **entry: Any) -> Any:
    return cls(PluginConfig(name="p", kind="x", config=config, **entry))


def load_error(kind: str, config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        PluginManager({"plugins": [{"name": "p", "kind": kind, "config": config}]})
    return str(caught.value)


def tool(args: dict[str, Any], name: str = "fetch") -> ToolPreInvokePayload:
    return ToolPreInvokePayload(name=name, args=args)


# --------------------------------------------------------------------------
# url_guard
# --------------------------------------------------------------------------


BLOCKED_URLS = [
    ("http://127.0.0.1/", "ssrf:loopback"),
    ("http://2130706433/", "ssrf:loopback"),
    ("http://0x7f000001/", "ssrf:loopback"),
    ("http://0177.0.0.1/", "ssrf:loopback"),
    ("http://0x7f.0.0.1/", "ssrf:loopback"),
    ("http://127.1/", "ssrf:loopback"),
    ("http://127.0.0.1./", "ssrf:loopback"),
    ("http://[::1]/", "ssrf:loopback"),
    ("http://[::ffff:127.0.0.1]/", "ssrf:loopback"),
    ("http://[::ffff:7f00:1]/", "ssrf:loopback"),
    ("http://[0:0:0:0:0:ffff:7f00:0001]:8080/", "ssrf:loopback"),
    ("http://[64:ff9b::7f00:1]/", "ssrf:loopback"),
    ("http://[2002:7f00:1::1]/", "ssrf:loopback"),
    ("http://localhost/", "ssrf:loopback"),
    ("http://LOCALHOST./", "ssrf:loopback"),
    ("http://api.localhost:3000/", "ssrf:loopback"),
    ("HTTP://127.0.0.1/", "ssrf:loopback"),
    ("http://%31%32%37.0.0.1/", "ssrf:loopback"),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", "ssrf:loopback"),
    ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", "ssrf:loopback"),
    ("http://\u2460\u2461\u2466\u30020\u30020\u30021/", "ssrf:loopback"),
    ("http://good.example@127.0.0.1/", "ssrf:loopback"),
    ("http://user:pass@127.0.0.1:80/", "ssrf:loopback"),
    ("http://127.0.0.1#@good.example/", "ssrf:loopback"),
    ("http://127.0.0.1?@good.example/", "ssrf:loopback"),
    ("http:\\\\127.0.0.1\\x", "ssrf:loopback"),
    ("http:/\\127.0.0.1/", "ssrf:loopback"),
    ("http:127.0.0.1/", "ssrf:loopback"),
    ("http:///127.0.0.1/", "ssrf:loopback"),
    ("  http://127.0.0.1/  ", "ssrf:loopback"),
    ("\x00\x1fhttp://127.0.0.1/", "ssrf:loopback"),
    ("ht\ttp://127.0\n.0.1/", "ssrf:loopback"),
    ("//127.0.0.1/admin", "ssrf:loopback"),
    ("http://169.254.169.254/latest/meta-data/", "ssrf:metadata"),
    ("http://0xa9fea9fe/", "ssrf:metadata"),
    ("http://2852039166/", "ssrf:metadata"),
    ("http://[::ffff:169.254.169.254]/", "ssrf:metadata"),
    ("http://169.254.170.2/v2/credentials", "ssrf:metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "ssrf:metadata"),
    ("http://metadata.google.internal./", "ssrf:metadata"),
    ("http://metadata/", "ssrf:metadata"),
    ("http://[fd00:ec2::254]/", "ssrf:metadata"),
    ("http://100.100.100.200/", "ssrf:metadata"),
    ("http://10.1.2.3/", "ssrf:private"),
    ("http://172.16.0.1/", "ssrf:private"),
    ("http://192.168.1.1/", "ssrf:private"),
    ("http://012.0.0.1/", "ssrf:private"),
    ("http://[fc00::1]/", "ssrf:private"),
    ("http://169.254.1.1/", "ssrf:link_local"),
    ("http://[fe80::1%25eth0]/", "ssrf:link_local"),
    ("http://100.64.0.1/", "ssrf:cgnat"),
    ("http://0.0.0.0/", "ssrf:unspecified"),
    ("http://0/", "ssrf:unspecified"),
    ("http://[::]/", "ssrf:unspecified"),
    ("http://224.0.0.1/", "ssrf:multicast"),
    ("http://[ff02::1]/", "ssrf:multicast"),
    ("http://255.255.255.255/", "ssrf:reserved"),
    ("http://240.0.0.1/", "ssrf:reserved"),
    ("http://192.0.2.1/", "ssrf:reserved"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("ftp://files.example.com/", "scheme"),
    ("http://evil.example\\@good.example/", "ambiguous"),
    ("http://foo.123/", "invalid_host"),
    ("http://a b.example/", "invalid_host"),
    ("http://" + "a" * 400 + ".example/", "invalid_host"),
    ("http://xn--pple-43d.com/", "idn:mixed_script"),
    ("http://\u0430pple.com/", "idn:mixed_script"),
    ("http://xn--99999999999a.com/", "idn:invalid"),
    ("http://xn--.com/", "idn:invalid"),
]


@pytest.mark.parametrize(("url", "rule"), BLOCKED_URLS)
def test_url_guard_blocks(url: str, rule: str) -> None:
    found = check_url(url)
    assert found is not None, url
    assert found.rule == rule, (url, found)


PASSING_URLS = [
    "https://example.com/",
    "https://api.example.com:8443/v1?q=127.0.0.1",
    "http://8.8.8.8/",
    "http://[2001:4860:4860::8888]/",
    "http://[64:ff9b::808:808]/",
    "https://example.com/redirect?to=http://127.0.0.1/",
    "https://\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444/",
    "https://b\u00fccher.example/",
    "https://localhost.example.com/",
    "https://metadata.example.com/",
    "https://",
]


@pytest.mark.parametrize("url", PASSING_URLS)
def test_url_guard_passes(url: str) -> None:
    assert check_url(url) is None


def test_url_guard_whole_strings_prose_and_bare_hosts() -> None:
    plugin = make(URLGuardPlugin, {})
    ctx = context()
    # Whole values, prose and nested values are all seen.
    for args in (
        {"url": "http://127.0.0.1:8080/admin"},
        {"note": "fetch http://169.254.169.254/latest and summarise."},
        {"deep": [{"x": {"y": "see (http://[::1]:80/) now"}}]},
        {"target": "127.0.0.1:6379"},
        {"target": "localhost:8080/x"},
        {"target": "169.254.169.254/latest/meta-data"},
        {"target": "[::1]:22"},
    ):
        result = plugin.tool_pre_invoke(tool(args), ctx)
        assert result is not None, args
        assert not result.continue_processing
        assert result.violation.code == "URL_BLOCKED"
        assert result.violation.details["rule"].startswith("ssrf:")
        # Naming the host, never the URL (a path or a query may carry tokens).
        assert "admin" not in result.violation.description
        assert "latest" not in result.violation.description
    # Hard negatives: numbers, versions, times, fractions, words, public URLs.
    for args in (
        {"amount": "2130706433"},
        {"version": "3.1"},
        {"v": "10.0.1"},
        {"time": "12:30"},
        {"ratio": "10.5/100"},
        {"text": "use https:// or http:// prefixes"},
        {"text": "ask localhost admins", "n": 2130706433},
        {"url": "https://docs.python.org/3/library/ipaddress.html"},
        {"note": "Note: this is fine"},
        {"host": "localhost"},
    ):
        assert plugin.tool_pre_invoke(tool(args), ctx) is None, args
    assert prose_urls("a http://x.example/a, (https://y.example/b_(c)). [https://[::1]]") == [
        "http://x.example/a",
        "https://y.example/b_(c)",
        "https://[::1]",
    ]
    assert whole_url("12:30") is None
    assert whole_url("127.0.0.1:80") == "bare"


def test_url_guard_domains_and_options() -> None:
    deny = make(URLGuardPlugin, {"deny_domains": ["example.com"]})
    ctx = context()
    blocked = deny.tool_pre_invoke(tool({"u": "https://api.EXAMPLE.com./x"}), ctx)
    assert blocked is not None
    assert blocked.violation.details == {"rule": "domain_deny", "host": "api.example.com"}
    assert deny.tool_pre_invoke(tool({"u": "https://badexample.com/"}), ctx) is None
    allow = make(URLGuardPlugin, {"allow_domains": ["*.example.com", "8.8.8.8"]})
    assert allow.tool_pre_invoke(tool({"u": "https://example.com/"}), ctx) is None
    assert allow.tool_pre_invoke(tool({"u": "https://a.b.example.com/"}), ctx) is None
    assert allow.tool_pre_invoke(tool({"u": "http://8.8.8.8/"}), ctx) is None
    for url in ("https://badexample.com/", "https://example.com.evil.io/", "http://1.1.1.1/"):
        result = allow.tool_pre_invoke(tool({"u": url}), ctx)
        assert result is not None, url
        assert result.violation.details["rule"] == "domain_allow", url
    exempt = make(
        URLGuardPlugin, {"allow_networks": ["10.20.0.0/16", "127.0.0.0/8", "::1/128"], "schemes": ["https", "http"]}
    )
    assert exempt.tool_pre_invoke(tool({"u": "http://10.20.1.1/"}), ctx) is None
    assert exempt.tool_pre_invoke(tool({"u": "http://localhost:8000/"}), ctx) is None
    assert exempt.tool_pre_invoke(tool({"u": "http://10.21.1.1/"}), ctx) is not None
    half = make(URLGuardPlugin, {"allow_networks": ["127.0.0.0/8"]})
    assert half.tool_pre_invoke(tool({"u": "http://127.0.0.2/"}), ctx) is None
    assert half.tool_pre_invoke(tool({"u": "http://localhost/"}), ctx) is not None  # ::1 is not exempt
    off = make(URLGuardPlugin, {"ssrf": False, "mixed_script": "allow"})
    assert off.tool_pre_invoke(tool({"u": "http://127.0.0.1/"}), ctx) is None
    assert off.tool_pre_invoke(tool({"u": "http://xn--pple-43d.com/"}), ctx) is None
    strict = make(URLGuardPlugin, {"allow_userinfo": False, "ports": [443]})
    result = strict.tool_pre_invoke(tool({"u": "https://me@example.com/"}), ctx)
    assert result is not None
    assert result.violation.details["rule"] == "userinfo"
    result = strict.tool_pre_invoke(tool({"u": "https://example.com:8443/"}), ctx)
    assert result is not None
    assert result.violation.details["rule"] == "port"
    assert strict.tool_pre_invoke(tool({"u": "https://example.com/"}), ctx) is None


def test_url_guard_resources_prompts_and_results() -> None:
    plugin = make(URLGuardPlugin, {})
    ctx = context()
    # Resource URIs keep their own schemes unless restricted; hosts are checked.
    assert plugin.resource_pre_fetch(ResourcePreFetchPayload(uri="res://notes/1"), ctx) is None
    assert plugin.resource_pre_fetch(ResourcePreFetchPayload(uri="file:///srv/a.txt"), ctx) is None
    result = plugin.resource_pre_fetch(ResourcePreFetchPayload(uri="https://169.254.169.254/x"), ctx)
    assert result is not None
    assert result.violation.details["rule"] == "ssrf:metadata"
    strict = make(URLGuardPlugin, {"resource_schemes": ["https"]})
    result = strict.resource_pre_fetch(ResourcePreFetchPayload(uri="file:///etc/passwd"), ctx)
    assert result is not None
    assert result.violation.details["rule"] == "scheme"
    prompt = PromptPrehookPayload(prompt_id="summarize", args={"source": "http://0x7f000001/"})
    assert plugin.prompt_pre_fetch(prompt, ctx) is not None
    # Results are scanned only with scan_results, which adds the post hooks.
    assert plugin.hooks == [HookType.TOOL_PRE_INVOKE, HookType.PROMPT_PRE_FETCH, HookType.RESOURCE_PRE_FETCH]
    scanning = make(URLGuardPlugin, {"scan_results": True})
    assert HookType.TOOL_POST_INVOKE in scanning.hooks
    assert HookType.RESOURCE_POST_FETCH in scanning.hooks
    result_payload = ToolPostInvokePayload(
        name="t", result={"content": [{"type": "text", "text": "open http://127.0.0.1:9000/x"}]}
    )
    assert scanning.tool_post_invoke(result_payload, ctx) is not None
    listed = make(URLGuardPlugin, {"scan_results": True}, hooks=["tool_pre_invoke"])
    assert listed.hooks == [HookType.TOOL_PRE_INVOKE]


def test_url_guard_dns_resolution_with_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = url_guard._resolve("localhost")
    assert addresses
    assert all(address.is_loopback for address in addresses)
    plugin = make(URLGuardPlugin, {"resolve_dns": True})
    assert plugin.blocking
    ctx = context()
    # A public-looking name that resolves like localhost: every address is checked.
    plugin.policy.resolver = lambda name: url_guard._resolve("localhost")
    result = plugin.tool_pre_invoke(tool({"u": "https://internal.example/"}), ctx)
    assert result is not None
    assert result.violation.details == {"rule": "dns:loopback", "host": "internal.example"}

    def unresolvable(name: str) -> list[Any]:
        raise socket.gaierror("no such name")

    plugin.policy.resolver = unresolvable
    result = plugin.tool_pre_invoke(tool({"u": "https://nowhere.example/"}), ctx)
    assert result is not None
    assert result.violation.details["rule"] == "dns:unresolved"
    lenient = make(URLGuardPlugin, {"resolve_dns": True, "dns_failure": "allow"})
    lenient.policy.resolver = unresolvable
    assert lenient.tool_pre_invoke(tool({"u": "https://nowhere.example/"}), ctx) is None
    assert not make(URLGuardPlugin, {}).blocking


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"schemes": ["ht tp"]}, "config.schemes"),
        ({"allow_networks": ["10.0.0.0/33"]}, "config.allow_networks"),
        ({"deny_domains": ["bad domain"]}, "config.deny_domains"),
        ({"ports": [70000]}, "config.ports"),
        ({"mixed_script": "warn"}, "config.mixed_script"),
        ({"resolve": True}, "config.resolve"),
    ],
)
def test_url_guard_config_errors(config: dict[str, Any], field: str) -> None:
    assert field in load_error("url_guard", config)


def _ipv4_spellings(value: int) -> st.SearchStrategy[str]:
    """Spellings of an IPv4 address in 1-4 parts, each decimal, octal or hex, with padding."""

    def part(number: int) -> st.SearchStrategy[str]:
        return st.one_of(
            st.just(str(number)),
            st.integers(1, 3).map(lambda zeros: "0" * zeros + (oct(number)[2:] if number else "")),
            st.tuples(st.sampled_from(["0x", "0X"]), st.integers(0, 3), st.booleans()).map(
                lambda t: t[0] + "0" * t[1] + (f"{number:X}" if t[2] else f"{number:x}")
            ),
        )

    octets = [(value >> shift) & 0xFF for shift in (24, 16, 8, 0)]

    def spelled(parts: int) -> st.SearchStrategy[str]:
        head = octets[: parts - 1]
        tail = int.from_bytes(bytes(octets[parts - 1 :]), "big")
        return st.tuples(*(part(n) for n in [*head, tail])).map(".".join)

    return st.integers(1, 4).flatmap(spelled).flatmap(lambda s: st.sampled_from([s, s + "."]))


def _accepted(spelling: str) -> bool:
    try:
        socket.inet_aton(spelling)
        return True
    except OSError:
        pass
    try:
        ipaddress.ip_address(spelling)
        return True
    except ValueError:
        return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    st.sampled_from([(0x7F000001, "ssrf:loopback"), (0xA9FEA9FE, "ssrf:metadata")]).flatmap(
        lambda target: st.tuples(_ipv4_spellings(target[0]), st.just(target[1]))
    )
)
def test_every_accepted_spelling_of_loopback_and_metadata_is_blocked(case: tuple[str, str]) -> None:
    spelling, rule = case
    if not _accepted(spelling) and not _accepted(spelling.rstrip(".")):
        return
    for url in (f"http://{spelling}/", f"https://{spelling}:443/x", f"see http://{spelling}/ now"):
        plugin_result = make(URLGuardPlugin, {}).tool_pre_invoke(tool({"u": url}), context())
        assert plugin_result is not None, url
        assert plugin_result.violation.details["rule"] == rule, url


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["127.0.0.1", "169.254.169.254"]),
    st.sampled_from(["::ffff:{v4}", "::ffff:{hex}", "0:0:0:0:0:ffff:{hex}", "64:ff9b::{hex}", "::{v4}"]),
    st.booleans(),
)
def test_ipv6_spellings_of_loopback_and_metadata_are_blocked(v4: str, form: str, upper: bool) -> None:
    packed = int(ipaddress.IPv4Address(v4))
    spelled = form.format(v4=v4, hex=f"{packed >> 16:x}:{packed & 0xFFFF:x}")
    spelled = spelled.upper() if upper else spelled
    ipaddress.IPv6Address(spelled)  # a spelling ipaddress accepts
    found = check_url(f"http://[{spelled}]/")
    assert found is not None, spelled
    assert found.rule in ("ssrf:loopback", "ssrf:metadata"), spelled


# --------------------------------------------------------------------------
# sql_sanitizer
# --------------------------------------------------------------------------


BLOCKED_SQL = [
    ("DROP TABLE users", "deny", "drop"),
    ("drop table users", "deny", "drop"),
    ("TRUNCATE users", "deny", "truncate"),
    ("ALTER TABLE users ADD COLUMN x INT", "deny", "alter"),
    ("GRANT ALL ON users TO mallory", "deny", "grant"),
    ("REVOKE ALL ON users FROM alice", "deny", "revoke"),
    ("DELETE FROM users", "delete_without_where", "delete"),
    ("DELETE FROM users WHERE 1=1", "delete_without_where", "delete"),
    ("UPDATE users SET admin = true", "update_without_where", "update"),
    ("UPDATE users SET admin = true WHERE 'a' = 'a'", "update_without_where", "update"),
    ("SELECT 1; DROP TABLE users", "stacked", "drop"),
    ("SELECT * FROM t; SELECT * FROM u", "stacked", "select"),
    ("SELECT 1 /* ; */; DELETE FROM t WHERE id = 1", "stacked", "delete"),
    ("SELECT 'a\\'; DROP TABLE users; -- '", "stacked", "drop"),
    ("SELECT 1 /* /* */ ; DROP TABLE x; /* */", "stacked", "drop"),
    ("SELECT /*! DROP TABLE users */ 1", "executable_comment", None),
    ("SELECT /*!50000 1; DROP TABLE users */", "executable_comment", None),
    ("SELECT /*M! DROP TABLE users */ 1", "executable_comment", None),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "delete_without_where", "delete"),
    ("EXPLAIN ANALYZE DELETE FROM t", "delete_without_where", "delete"),
    ("SELEC * FRM users", "parse_error", None),
]


@pytest.mark.parametrize(("sql", "rule", "statement"), BLOCKED_SQL)
def test_sql_sanitizer_blocks(sql: str, rule: str, statement: str | None) -> None:
    plugin = make(SQLSanitizerPlugin, {})
    result = plugin.tool_pre_invoke(tool({"query": sql}, "run_sql"), context())
    assert result is not None, sql
    assert not result.continue_processing
    violation = result.violation
    assert violation.code == "SQL_BLOCKED"
    assert violation.details == {"rule": rule, "statement": statement, "field": "query"}
    assert sql not in violation.description


PASSING_SQL = [
    "SELECT * FROM users WHERE name = 'DROP TABLE users'",
    "SELECT 1 -- DROP TABLE users",
    "SELECT 1 /* DROP TABLE users; DELETE FROM t */",
    "SELECT '/*! DROP TABLE x */' AS s",
    'SELECT "drop" FROM t',
    "SELECT 1;",
    "DELETE FROM users WHERE id = 3",
    "UPDATE users SET name = 'x' WHERE id = 3",
    "INSERT INTO logs (msg) VALUES ('DROP; TRUNCATE; -- ')",
    "SELECT a FROM b UNION SELECT c FROM d",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "",
]


@pytest.mark.parametrize("sql", PASSING_SQL)
def test_sql_sanitizer_passes(sql: str) -> None:
    plugin = make(SQLSanitizerPlugin, {})
    assert plugin.tool_pre_invoke(tool({"query": sql}, "run_sql"), context()) is None


def test_sql_sanitizer_fields_types_and_dialects() -> None:
    ctx = context()
    plugin = make(SQLSanitizerPlugin, {})
    # Only arguments named like SQL are SQL; names match at any depth, ignoring case.
    assert plugin.tool_pre_invoke(tool({"comment": "DROP TABLE users"}), ctx) is None
    result = plugin.tool_pre_invoke(tool({"request": {"params": [{"SQL": "DROP TABLE t"}]}}), ctx)
    assert result is not None
    assert result.violation.details["field"] == "request.params[0].SQL"
    result = plugin.tool_pre_invoke(tool({"statement": ["SELECT 1", "DROP TABLE t"]}), ctx)
    assert result is not None
    assert result.violation.details["field"] == "statement[1]"
    globbed = make(SQLSanitizerPlugin, {"fields": ["*_sql"]})
    assert globbed.tool_pre_invoke(tool({"raw_sql": "DROP TABLE t"}), ctx) is not None
    assert globbed.tool_pre_invoke(tool({"query": "DROP TABLE t"}), ctx) is None
    # allow lists the only types accepted; deny replaces the default list.
    read_only = make(SQLSanitizerPlugin, {"allow": ["select"]})
    result = read_only.tool_pre_invoke(tool({"sql": "INSERT INTO t VALUES (1)"}), ctx)
    assert result is not None
    assert result.violation.details == {
        "rule": "not_allowed",
        "statement": "insert",
        "field": "sql",
    }
    assert read_only.tool_pre_invoke(tool({"sql": "SELECT 1"}), ctx) is None
    deny_insert = make(SQLSanitizerPlugin, {"deny": ["insert"]})
    assert deny_insert.tool_pre_invoke(tool({"sql": "DROP TABLE t"}), ctx) is None
    assert deny_insert.tool_pre_invoke(tool({"sql": "INSERT INTO t VALUES (1)"}), ctx) is not None
    lenient = make(SQLSanitizerPlugin, {"block_delete_without_where": False, "allow_stacked": True})
    assert lenient.tool_pre_invoke(tool({"sql": "SELECT 1; DELETE FROM t"}), ctx) is None
    unparsed = make(SQLSanitizerPlugin, {"on_parse_error": "allow"})
    assert unparsed.tool_pre_invoke(tool({"sql": "SELEC * FRM users"}), ctx) is None
    # A MySQL comment: one statement in MySQL; PostgreSQL cannot parse it.
    mysql = make(SQLSanitizerPlugin, {"dialect": "mysql"})
    assert mysql.tool_pre_invoke(tool({"sql": "SELECT 1 # DROP TABLE t"}), ctx) is None
    postgres = make(SQLSanitizerPlugin, {"dialect": "postgres"})
    assert postgres.tool_pre_invoke(tool({"sql": "SELECT 1 # DROP TABLE t"}), ctx) is not None
    # Backslashes end no string in PostgreSQL: there this is two statements.
    tricky = "SELECT 'a\\'; DROP TABLE users; -- '"
    assert mysql.tool_pre_invoke(tool({"sql": tricky}), ctx) is None
    assert postgres.tool_pre_invoke(tool({"sql": tricky}), ctx) is not None
    prompt = PromptPrehookPayload(prompt_id="report", args={"query": "TRUNCATE t"})
    assert plugin.prompt_pre_fetch(prompt, ctx) is not None
    assert sql_sanitizer.statement_types("SELECT 1; INSERT INTO t VALUES (1)") == ["select", "insert"]


# SQL the plain reading passes without sqlglot's parser: the parser passes it too.
PLAIN_SQL = [
    "SELECT * FROM users WHERE name = 'DROP TABLE users'",
    "select id, name from users where status = 'active' and name in ('a', 'b''c', ';', '-- x', '/* y')",
    "SELECT 1;",
    "SELECT a FROM t ORDER BY a DESC LIMIT 10",
    "SELECT CASE WHEN a > 1 THEN 'x' END AS c FROM t",
    "SELECT a FROM b UNION SELECT c FROM d",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "SELECT count(*) FROM t WHERE id IN (SELECT id FROM u) AND n <> 2.5",
    "SELECT N'x', E'y', U&'z', x'ff', 'caf\u00e9'",
    "INSERT INTO logs (msg) VALUES ('DROP; TRUNCATE; -- ')",
    "INSERT INTO t SELECT * FROM u",
]

# SQL the plain reading leaves to the parser.
NOT_PLAIN_SQL = [
    "SELECT 'a\\'; DROP TABLE users; -- '",  # a backslash: MySQL reads the string on
    "SELECT 1; DROP TABLE users",  # two statements
    "SELECT 1;;",
    "SELECT 'open",  # a string left open
    "SELECT 1 -- DROP TABLE t",  # comments
    "SELECT 1 /* x */",
    'SELECT "drop" FROM t',  # quoted names
    "SELECT a FROM t # x",
    "SELECT $$x$$",
    "(SELECT 1)",  # not a statement keyword first
    "SELEC * FRM users",
    "DELETE FROM t WHERE id = 1",  # types it does not decide
    "UPDATE t SET a = 1 WHERE id = 1",
    "DROP TABLE t",
    "SELECT * FROM t FOR UPDATE",  # statement words anywhere
    "SELECT REPLACE(a, 'x', 'y') FROM t",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET a = 2",
    "INSERT INTO t SELECT 1 INSERT INTO u SELECT 2",
    "SELECT 1 WAITFOR DELAY '00:10'",  # a T-SQL batch needs no ";"
    "SELECT a FROM t EXEC xp_cmdshell 'dir'",
    "WITH x AS (SELECT 1) SHOW TABLES",  # a statement after a parenthesis
    "SELECT * FROM (DESCRIBE t)",
    "SELECT f(x) DESC",
    "SELECT ((1)",  # unbalanced
    "SELECT caf\u00e9 FROM t",  # not ASCII outside strings
    "SELECT {x}",
    "SELECT @v",
    "",
]


@pytest.mark.parametrize("sql", PLAIN_SQL)
def test_sql_sanitizer_plain_reading_agrees_with_the_parser(sql: str) -> None:
    for config in ({}, {"dialect": "postgres"}, {"dialect": "mysql"}, {"allow": ["select", "insert"]}):
        checker = make(SQLSanitizerPlugin, config)._checker
        assert checker.plain(sql), (sql, config)
        assert checker.parsed(sql) is None, (sql, config)
        assert checker.check(sql) is None


@pytest.mark.parametrize("sql", NOT_PLAIN_SQL)
def test_sql_sanitizer_plain_reading_leaves_the_rest_to_the_parser(sql: str) -> None:
    checker = make(SQLSanitizerPlugin, {})._checker
    assert not checker.plain(sql)
    assert checker.check(sql) == checker.parsed(sql)


def test_sql_sanitizer_plain_reading_settings() -> None:
    ctx = context()
    query = "SELECT a FROM t WHERE b = 'x'"
    # Types deny or allow refuse are parsed (and refused as before).
    for config in ({"allow": ["insert"]}, {"deny": ["select"]}):
        plugin = make(SQLSanitizerPlugin, config)
        assert not plugin._checker.plain(query)
        result = plugin.tool_pre_invoke(tool({"sql": query}), ctx)
        assert result is not None
        assert result.violation.details["statement"] == "select"
    insert = "INSERT INTO t VALUES (1)"
    assert not make(SQLSanitizerPlugin, {"deny": ["insert"]})._checker.plain(insert)
    assert make(SQLSanitizerPlugin, {"deny": ["insert"]}).tool_pre_invoke(tool({"sql": insert}), ctx) is not None
    # Dialects whose strings, comments or statements differ are always parsed.
    for dialect in ("tsql", "bigquery", "snowflake", "oracle"):
        assert not make(SQLSanitizerPlugin, {"dialect": dialect})._checker.plain(query), dialect
    # The same SQL twice in one call is refused at its first place.
    result = make(SQLSanitizerPlugin, {}).tool_pre_invoke(tool({"sql": ["DROP TABLE t", "DROP TABLE t"]}), ctx)
    assert result is not None
    assert result.violation.details["field"] == "sql[0]"


def test_sql_sanitizer_parser_crash_fails_closed() -> None:
    # sqlglot raises TypeError, not a ParseError, on this one: no reading, so a parse error.
    result = make(SQLSanitizerPlugin, {}).tool_pre_invoke(tool({"sql": "INSERTINTOtexec?"}), context())
    assert result is not None
    assert result.violation.details["rule"] == "parse_error"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"dialect": "nosuchsql"}, "config.dialect"),
        ({"deny": ["dropp"]}, "config.deny"),
        ({"allow": ["select", "selct"]}, "config.allow"),
        ({"fields": []}, "config.fields"),
        ({"on_parse_error": "warn"}, "config.on_parse_error"),
        ({"strip_comments": True}, "config.strip_comments"),
    ],
)
def test_sql_sanitizer_config_errors(config: dict[str, Any], field: str) -> None:
    assert field in load_error("sql_sanitizer", config)


def test_sql_sanitizer_without_sqlglot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_sanitizer, "sqlglot", None)
    assert "pip install 'mcp-plugin-mw[sql]'" in load_error("sql_sanitizer", {})


# --------------------------------------------------------------------------
# cedar_policy
# --------------------------------------------------------------------------


POLICIES = """
@id("admins-all")
permit(principal in Role::"admin", action, resource);

@id("echo-for-users")
permit(principal is User, action == Action::"tools/call", resource == Tool::"echo");

@id("acme-search")
permit(principal in Tenant::"acme", action == Action::"tools/call", resource == Tool::"search")
  when { context.arguments.query != "secrets" };

@id("no-delete")
forbid(principal, action == Action::"tools/call", resource == Tool::"delete_all")
  unless { principal == User::"root" };

@id("public-docs")
permit(principal, action == Action::"resources/read", resource)
  when { resource == Resource::"https://docs.example.org/index" };

@id("greet")
permit(principal, action == Action::"prompts/get", resource == Prompt::"greet");
"""

ENTITIES = [
    {"uid": {"type": "User", "id": "root"}, "attrs": {}, "parents": [{"type": "Role", "id": "admin"}]},
    {"uid": {"type": "User", "id": "ada"}, "attrs": {}, "parents": [{"type": "Role", "id": "admin"}]},
    {"uid": {"type": "Role", "id": "admin"}, "attrs": {}, "parents": []},
]


def cedar(**config: Any) -> CedarPolicyPlugin:
    return make(CedarPolicyPlugin, {"policies": POLICIES, "entities": ENTITIES, **config})


def denial(result: Any) -> dict[str, Any]:
    assert result is not None
    assert not result.continue_processing
    assert result.violation.code == "CEDAR_DENIED"
    assert result.violation.http_status_code == 403
    details: dict[str, Any] = result.violation.details
    return details


def test_cedar_decisions_name_their_policies() -> None:
    plugin = cedar()
    assert plugin.tool_pre_invoke(tool({"text": "hi"}, "echo"), context("bob")) is None
    details = denial(plugin.tool_pre_invoke(tool({"text": "hi"}, "echo"), context()))
    assert details["rule"] == "no_permit"
    assert details["policies"] == []
    assert details["resource"] == 'Tool::"echo"'
    assert details["action"] == "tools/call"
    # Admins may do anything but delete_all; the forbid names its @id.
    assert plugin.tool_pre_invoke(tool({}, "anything"), context("ada")) is None
    details = denial(plugin.tool_pre_invoke(tool({}, "delete_all"), context("ada")))
    assert details["rule"] == "forbid"
    assert details["policies"] == ["no-delete"]
    assert "no-delete" in plugin.tool_pre_invoke(tool({}, "delete_all"), context("ada")).violation.description
    assert plugin.tool_pre_invoke(tool({}, "delete_all"), context("root")) is None
    # The tenant makes the user a member of Tenant::"acme"; arguments are the context.
    assert plugin.tool_pre_invoke(tool({"query": "cats"}, "search"), context("bob", "acme")) is None
    denial(plugin.tool_pre_invoke(tool({"query": "secrets"}, "search"), context("bob", "acme")))
    denial(plugin.tool_pre_invoke(tool({"query": "cats"}, "search"), context("bob", "globex")))
    denial(plugin.tool_pre_invoke(tool({"query": "cats"}, "search"), context("bob")))
    # Prompts and resources.
    assert plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="greet", args={}), context()) is None
    denial(plugin.prompt_pre_fetch(PromptPrehookPayload(prompt_id="other", args={}), context("bob")))
    doc = ResourcePreFetchPayload(uri="https://docs.example.org/index")
    assert plugin.resource_pre_fetch(doc, context()) is None
    details = denial(plugin.resource_pre_fetch(ResourcePreFetchPayload(uri="file:///etc/passwd"), context("bob")))
    assert details["resource"] == 'Resource::"file:///etc/passwd"'


def test_cedar_context_values_and_policy_errors() -> None:
    assert to_cedar({"a": 1.5, "b": None, "c": [1, None, "x"], "d": 2**70, "e": {"__entity": {"type": "Role"}}}) == {
        "a": "1.5",
        "c": [1, "x"],
        "d": str(2**70),
        "e": {"___entity": {"type": "Role"}},
    }
    forged = """
    @id("admin-arg")
    permit(principal, action, resource) when { context.arguments.as == Role::"admin" };
    """
    plugin = make(CedarPolicyPlugin, {"policies": forged})
    # A client cannot forge an entity reference through its arguments.
    args = {"as": {"__entity": {"type": "Role", "id": "admin"}}}
    denial(plugin.tool_pre_invoke(tool(args, "x"), context("bob")))
    # A forbid that errors on an odd argument must not let the permit win.
    guarded = """
    @id("all") permit(principal, action, resource);
    @id("no-etc") forbid(principal, action, resource) when { context.arguments.path like "/etc/*" };
    """
    strict = make(CedarPolicyPlugin, {"policies": guarded})
    assert strict.tool_pre_invoke(tool({"path": "/srv/x"}, "read"), context()) is None
    denial(strict.tool_pre_invoke(tool({"path": "/etc/passwd"}, "read"), context()))
    details = denial(strict.tool_pre_invoke(tool({"path": 7}, "read"), context()))
    assert details["rule"] == "policy_error"
    assert details["errors"]
    lenient = make(CedarPolicyPlugin, {"policies": guarded, "policy_errors": "ignore"})
    assert lenient.tool_pre_invoke(tool({"path": 7}, "read"), context()) is None


def test_cedar_hides_what_a_client_may_not_call() -> None:
    plugin = cedar()
    tools = [{"name": "echo"}, {"name": "search"}, {"name": "delete_all"}, {"title": "nameless"}]
    result = plugin.tool_post_list(ToolListPayload(tools=tools), context("bob", "acme"))
    # search is kept: its permit reads the arguments, which a list cannot judge.
    assert [t.get("name") for t in result.modified_payload.tools] == ["echo", "search"]
    result = plugin.tool_post_list(ToolListPayload(tools=tools), context())
    assert result.modified_payload.tools == []
    prompts = plugin.prompt_post_list(PromptListPayload(prompts=[{"name": "greet"}, {"name": "x"}]), context())
    assert prompts.modified_payload.prompts == [{"name": "greet"}]
    listing = ResourceListPayload(
        resources=[{"uri": "https://docs.example.org/index"}, {"uri": "file:///x"}],
        resource_templates=[{"uriTemplate": "res://notes/{n}"}],
    )
    kept = plugin.resource_post_list(listing, context()).modified_payload
    assert kept.resources == [{"uri": "https://docs.example.org/index"}]
    assert kept.resource_templates == []
    assert plugin.resource_post_list(listing, context("ada")) is None


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"policies": "permit(principal, action resource);"}, "config.policies"),
        ({}, "config"),
        ({"policies": "permit(principal, action, resource);", "entities": [{"uid": 3}]}, "config.entities"),
        ({"policy_file": "/nonexistent/p.cedar"}, "config.policy_file"),
        ({"policies": "permit(principal, action, resource);", "policy_errors": "warn"}, "config.policy_errors"),
        ({"policies": "permit(principal, action, resource);", "schema": {}}, "config.schema"),
    ],
)
def test_cedar_config_errors(config: dict[str, Any], field: str) -> None:
    message = load_error("cedar_policy", config)
    assert field in message


def test_cedar_syntax_errors_name_the_file_and_cedar_message(tmp_path: Path) -> None:
    policy = tmp_path / "p.cedar"
    policy.write_text("permit(principal, action, resource)")  # no semicolon
    message = load_error(
        "cedar_policy", {"policy_file": str(policy), "policies": "permit(principal, action, resource);"}
    )
    assert "config.policy_file: Cedar cannot parse the policies" in message
    entities = tmp_path / "e.json"
    entities.write_text("{not json")
    message = load_error("cedar_policy", {"policies": POLICIES, "entities_file": str(entities)})
    assert "config.entities_file: not JSON" in message


def test_cedar_without_cedarpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cedar_policy, "cedarpy", None)
    assert "pip install 'mcp-plugin-mw[cedar]'" in load_error("cedar_policy", {"policies": "x"})


def _bump(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    # Some filesystems keep coarse times: make the change visible whatever they keep.
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_cedar_reload_picks_up_a_changed_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policies.cedar"
    _bump(policy, 'permit(principal, action, resource == Tool::"echo");')
    config = {"plugins": [{"name": "cedar", "kind": "cedar_policy", "config": {"policy_file": str(policy)}}]}
    manager = PluginManager(config)
    try:
        hook = HookType.TOOL_PRE_INVOKE
        echo = tool({"text": "x"}, "echo")
        assert manager.invoke_sync(hook, echo, GlobalContext(request_id="1")).continue_processing
        before = manager._plugins[0]
        _bump(policy, '@id("closed") forbid(principal, action, resource);')
        manager.reload(config)
        assert manager._plugins[0] is before  # the entry did not change: kept, and it re-reads its file
        result = manager.invoke_sync(hook, echo, GlobalContext(request_id="2"))
        assert not result.continue_processing
        assert result.violation.details["policies"] == ["closed"]
        # A broken file leaves the last good policies in force and the plugin unhealthy.
        _bump(policy, "forbid(principal, action")
        result = manager.invoke_sync(hook, echo, GlobalContext(request_id="3"))
        assert result.violation.details["policies"] == ["closed"]
        status = manager.status()["cedar"]
        assert not status.healthy
        assert "not reloaded" in (status.last_error or "")
        _bump(policy, 'permit(principal, action, resource == Tool::"echo");')
        assert manager.invoke_sync(hook, echo, GlobalContext(request_id="4")).continue_processing
        assert manager.status()["cedar"].healthy
        # Inline policies are part of the entry: a change builds a new plugin; a bad one fails the reload.
        inline = {
            "plugins": [
                {
                    "name": "cedar",
                    "kind": "cedar_policy",
                    "config": {"policies": "forbid(principal, action, resource);"},
                }
            ]
        }
        manager.reload(inline)
        assert manager._plugins[0] is not before
        assert not manager.invoke_sync(hook, echo, GlobalContext(request_id="5")).continue_processing
        broken = {"plugins": [{"name": "cedar", "kind": "cedar_policy", "config": {"policies": "permit("}}]}
        with pytest.raises(ConfigError, match=r"config\.policies"):
            manager.reload(broken)
        assert not manager.invoke_sync(hook, echo, GlobalContext(request_id="6")).continue_processing
    finally:
        manager.close()


# --------------------------------------------------------------------------
# Behind PluginMiddleware, with the SDK client, on uvicorn
# --------------------------------------------------------------------------


def build_server(ran: list[tuple[str, Any]]) -> MCPServer:
    """Tools that record each run in ``ran`` (they never fetch or query anything)."""
    server = MCPServer("guards")

    @server.tool()
    def fetch(url: str) -> str:
        ran.append(("fetch", url))
        return f"fetched {len(url)} characters of URL"

    @server.tool()
    def run_sql(query: str) -> str:
        ran.append(("run_sql", query))
        return "1 row"

    @server.tool()
    def echo(text: str) -> str:
        ran.append(("echo", text))
        return text

    @server.tool()
    def delete_all() -> str:
        ran.append(("delete_all", None))
        return "deleted"

    @server.resource("res://notes/{note}")
    def note(note: str) -> str:
        ran.append(("note", note))
        return f"note {note}"

    return server


GUARDS = [
    {"name": "urls", "kind": "url_guard"},
    {"name": "sql", "kind": "sql_sanitizer"},
    {
        "name": "cedar",
        "kind": "cedar_policy",
        "config": {
            "policies": """
            @id("users") permit(principal is User, action, resource);
            @id("no-delete") forbid(principal, action, resource == Tool::"delete_all");
            """
        },
    },
]


@contextlib.contextmanager
def served(ran: list[tuple[str, Any]]) -> Iterator[str]:
    inner = build_server(ran).streamable_http_app(json_response=True)
    app = mw.PluginMiddleware(inner, config={"plugin_settings": {"user_header": "x-user"}, "plugins": GUARDS})
    with uvicorn_on(app) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@contextlib.asynccontextmanager
async def client(url: str, user: str | None) -> AsyncIterator[Client]:
    headers = {"x-user": user} if user else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(BOUND)) as http,
        Client(streamable_http_client(url, http_client=http), mode="auto") as sdk,
    ):
        yield sdk


async def refused(call: Any) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await asyncio.wait_for(call, BOUND)
    return caught.value


async def test_guards_behind_the_middleware_with_the_sdk_client() -> None:
    ran: list[tuple[str, Any]] = []
    with served(ran) as url:
        async with client(url, "alice") as alice:
            error = await refused(alice.call_tool("fetch", {"url": "http://0x7f000001:8080/admin"}))
            assert error.data["plugin_error_code"] == "URL_BLOCKED"
            assert error.data["details"] == {"rule": "ssrf:loopback", "host": "127.0.0.1"}
            error = await refused(alice.call_tool("fetch", {"url": "http://metadata.google.internal/x"}))
            assert error.data["details"]["rule"] == "ssrf:metadata"
            error = await refused(alice.call_tool("run_sql", {"query": "SELECT 1; DROP TABLE users"}))
            assert error.data["plugin_error_code"] == "SQL_BLOCKED"
            assert error.data["details"] == {"rule": "stacked", "statement": "drop", "field": "query"}
            error = await refused(alice.call_tool("delete_all", {}))
            assert error.data["plugin_error_code"] == "CEDAR_DENIED"
            assert error.data["details"]["policies"] == ["no-delete"]
            # Nothing refused reached a tool.
            assert ran == []
            result = await alice.call_tool("fetch", {"url": "https://example.com/page"})
            assert result.content[0].text == "fetched 24 characters of URL"
            result = await alice.call_tool("run_sql", {"query": "SELECT * FROM t WHERE n = 'DROP TABLE t'"})
            assert result.content[0].text == "1 row"
            assert [t.name for t in (await alice.list_tools()).tools] == ["fetch", "run_sql", "echo"]
            contents = await alice.read_resource("res://notes/7")
            assert contents.contents[0].text == "note 7"
            assert ran == [
                ("fetch", "https://example.com/page"),
                ("run_sql", "SELECT * FROM t WHERE n = 'DROP TABLE t'"),
                ("note", "7"),
            ]
        async with client(url, None) as anonymous:
            error = await refused(anonymous.call_tool("echo", {"text": "hi"}))
            assert error.data["details"]["rule"] == "no_permit"
            assert (await anonymous.list_tools()).tools == []
        assert len(ran) == 3


def test_url_guard_default_config_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(
        json.dumps({"plugins": [{"name": "u", "kind": "url_guard"}, {"name": "s", "kind": "sql_sanitizer"}]})
    )
    manager = PluginManager(str(path))
    try:
        kinds = {p.name: (p.plugin_config.category, tuple(p.hooks)) for p in manager._plugins}
        assert kinds["u"][0] == mw.Category.AUTHORIZATION
        assert kinds["s"] == (mw.Category.VALIDATION, (HookType.TOOL_PRE_INVOKE, HookType.PROMPT_PRE_FETCH))
    finally:
        manager.close()
