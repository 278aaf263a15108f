"""
External plugins over HTTP: the sidecar transport and protocol 1
================================================================

Every sidecar here is a real process on 127.0.0.1: ``mcp-plugin-mw
serve-plugin`` hosting a plugin from :mod:`tests.external.sample`, or the
standard-library server in :mod:`tests.external.stdlib_plugin`, which
misbehaves on request. Nothing in the transport is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import mcp_plugin_mw as mw
from mcp_plugin_mw.config import ConfigError, load_config
from mcp_plugin_mw.external import TRANSPORTS
from mcp_plugin_mw.external.base import (
    ProtocolError,
    decode_call,
    decode_payload,
    decode_reply,
    decode_result,
    encode_call,
    encode_payload,
    encode_reply,
)
from mcp_plugin_mw.models import PAYLOAD_TYPES, Outcome
from tests.conftest import Call, in_thread
from tests.external import CLI, SERVE_PLUGIN, STDLIB_PLUGIN, Server, wait_for
from tests.external_foreign import need
from tests.sample_plugins import BOUND

TOKEN = "s3cret-token"
Make = Callable[..., mw.PluginManager]

PAYLOADS: dict[mw.HookType, Any] = {
    mw.HookType.TOOL_PRE_INVOKE: mw.ToolPreInvokePayload(name="search", args={"q": "x", "n": [1, 2.5, None]}),
    mw.HookType.TOOL_POST_INVOKE: mw.ToolPostInvokePayload(name="search", result={"content": [{"text": "é"}]}),
    mw.HookType.PROMPT_PRE_FETCH: mw.PromptPrehookPayload(prompt_id="greet", args={"who": "ada"}),
    mw.HookType.PROMPT_POST_FETCH: mw.PromptPosthookPayload(prompt_id="greet", result={"messages": []}),
    mw.HookType.RESOURCE_PRE_FETCH: mw.ResourcePreFetchPayload(uri="file:///a", metadata={"_meta": {"k": 1}}),
    mw.HookType.RESOURCE_POST_FETCH: mw.ResourcePostFetchPayload(uri="file:///a", content={"contents": []}),
    mw.HookType.HTTP_PRE_REQUEST: mw.HttpPreRequestPayload(
        method="POST",
        path="/api",
        query_string="a=1&a=2",
        headers=[("x-a", "1"), ("x-a", "2")],
        client="10.0.0.1:5555",
        body=b"\x00\xff binary \xfe",
    ),
    mw.HookType.HTTP_POST_REQUEST: mw.HttpPostRequestPayload(
        method="POST", path="/api", status_code=201, headers=[("content-type", "x/y")], body=b"\x80abc"
    ),
    mw.HookType.TOOL_POST_LIST: mw.ToolListPayload(tools=[{"name": "search", "inputSchema": {"type": "object"}}]),
    mw.HookType.PROMPT_POST_LIST: mw.PromptListPayload(prompts=[{"name": "greet", "arguments": []}]),
    mw.HookType.RESOURCE_POST_LIST: mw.ResourceListPayload(resource_templates=[{"uriTemplate": "file:///{p}"}]),
    mw.HookType.SERVER_MESSAGE: mw.ServerMessagePayload(
        method="sampling/createMessage", params={"messages": [], "maxTokens": 5}, id=7
    ),
    mw.HookType.CLIENT_MESSAGE: mw.ClientMessagePayload(result={"content": {"type": "text", "text": "é"}}, id="s-1"),
}
# The hooks the hosted Mirror plugin handles.
EIGHT = [hook for hook in mw.HookType if hook.value.endswith(("_invoke", "_fetch", "_request"))]


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Managers from ``plugins:`` entries, closed on the test's own loop at teardown."""
    made: list[mw.PluginManager] = []

    def make(*plugins: dict[str, Any], environ: dict[str, str] | None = None, **settings: Any) -> mw.PluginManager:
        manager = mw.PluginManager({"plugin_settings": settings, "plugins": list(plugins)}, environ=environ or {})
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.aclose()


@pytest.fixture(scope="module")
def deny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "upper.yaml"
    path.write_text("deny: ${DENY_WORD:-forbidden}\n")
    return path


def _server(argv: list[str], env: dict[str, str] | None = None) -> Iterator[Server]:
    server = Server(argv, env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def upper(deny_file: Path) -> Iterator[Server]:
    """``serve-plugin`` hosting Upper, requiring the bearer token."""
    argv = [*SERVE_PLUGIN, "tests.external.sample.Upper", "--port", "0", "--config", str(deny_file)]
    yield from _server(argv, {"MCP_PLUGIN_MW_SERVE_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def hosted() -> Iterator[Callable[[str], Server]]:
    """``serve-plugin`` hosting any sample plugin, one process per class for the module."""
    servers: dict[str, Server] = {}

    def start(name: str) -> Server:
        if name not in servers:
            servers[name] = Server([*SERVE_PLUGIN, f"tests.external.sample.{name}"])
        return servers[name]

    yield start
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def stdlib() -> Iterator[Server]:
    """The standard-library protocol-1 server."""
    yield from _server([sys.executable, STDLIB_PLUGIN])


def sidecar(url: str, name: str = "side", hooks: list[str] | None = None, **keys: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "external",
        "transport": "http",
        "url": url,
        "hooks": hooks or ["tool_pre_invoke"],
        "health_interval": 0,
        "start_timeout": 5,
        **keys,
    }


def tool(text: str = "hello", name: str = "echo") -> mw.ToolPreInvokePayload:
    return mw.ToolPreInvokePayload(name=name, args={"text": text})


# --------------------------------------------------------------------------
# The wire format, both directions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("hook", list(mw.HookType))
def test_payloads_round_trip_through_json(hook: mw.HookType) -> None:
    payload = PAYLOADS[hook]
    data = orjson.loads(orjson.dumps(encode_payload(payload)))
    assert decode_payload(hook, data) == payload
    if hook.value.startswith("http_"):
        assert "body" not in data
        assert base64.b64decode(data["body_b64"]) == payload.body


def test_a_call_round_trips_with_context_and_result() -> None:
    shared = mw.GlobalContext(request_id="r1", user="ada", tenant_id="t", server_id="s", content_type="a/b")
    shared.state["note"] = object()  # not JSON: travels as its str()
    context = mw.PluginContext(shared, state={"k": [1]}, metadata={"m": 1})
    hook, payload, remote = decode_call(encode_call(mw.HookType.TOOL_PRE_INVOKE, tool(), context))
    assert (hook, payload) == (mw.HookType.TOOL_PRE_INVOKE, tool())
    assert (remote.state, remote.metadata, remote.request_id, remote.global_context.user) == (
        {"k": [1]},
        {"m": 1},
        "r1",
        "ada",
    )
    assert remote.global_context.state["note"].startswith("<object object")

    remote.state["k"] = "changed"
    violation = mw.PluginViolation(reason="r", description="d", code="C", details={"x": 1}, http_status_code=451)
    result = mw.PluginResult(continue_processing=False, violation=violation, metadata={"meta": True})
    decoded = decode_reply(hook, encode_reply(result, payload, remote), payload, context)
    assert decoded is not None
    assert (decoded.continue_processing, decoded.violation, decoded.metadata) == (False, violation, {"meta": True})
    assert context.state == {"k": "changed"}  # the plugin's state comes home


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([], "result must be dict"),
        ({"continue_processing": "no"}, "result.continue_processing must be bool"),
        ({"modified_payload": {"name": 1}}, "payload is not a valid ToolPreInvokePayload: name"),
        ({"modified_payload": {"name": "x", "extra": 1}}, "extra: Extra inputs are not permitted"),
        ({"violation": {"reason": 5}}, "violation.reason must be str"),
        ({"violation": {"http_status_code": "403"}}, "violation.http_status_code must be int or NoneType"),
        ({"metadata": [1]}, "result.metadata must be dict"),
    ],
)
def test_results_of_the_wrong_shape_are_protocol_errors(result: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        decode_result(mw.HookType.TOOL_PRE_INVOKE, result, tool())


def test_http_bodies_must_be_base64() -> None:
    data = {**encode_payload(PAYLOADS[mw.HookType.HTTP_POST_REQUEST]), "body_b64": "not base64!"}
    with pytest.raises(ProtocolError, match="body_b64 is not base64"):
        decode_payload(mw.HookType.HTTP_POST_REQUEST, data)


def test_every_hook_has_a_payload_sample() -> None:
    assert set(PAYLOADS) == set(PAYLOAD_TYPES)


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def problems(*plugins: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config({"plugins": list(plugins)}, environ={})
    return caught.value.problems


def test_config_errors_name_the_key_where_it_was_written(tmp_path: Path) -> None:
    found = problems(
        {"name": "a", "kind": "external", "transport": "http", "url": "http://x"},
        {"name": "b", "kind": "external", "hooks": ["tool_pre_invoke"]},
        {"name": "c", "kind": "external", "transport": "smoke", "hooks": ["tool_pre_invoke"]},
        {
            "name": "d",
            "kind": "external",
            "transport": "http",
            "hooks": ["tool_pre_invoke"],
            "url": "ftp://x",
            "bogus": 1,
        },
        {"name": "e", **sidecar("http://x", tls={"ca_bundle": str(tmp_path / "missing.pem"), "client_key": "k"})},
        {"name": "f", "kind": "tests.sample_plugins.Append", "url": "http://x", "external": {"url": "x"}},
        {"name": "g", **sidecar("http://x", start_timeout=0, headers={"a": 1})},
    )
    known = ", ".join(TRANSPORTS)
    assert found == [
        "plugins[0].hooks: required for kind external",
        f"plugins[1].transport: required for kind external (one of: {known})",
        f"plugins[2].transport: unknown transport 'smoke' (one of: {known})",
        "plugins[3].url: must start with http:// or https://",
        "plugins[3].bogus: unknown key",
        "plugins[4].tls.ca_bundle: Path does not point to a file",
        "plugins[4].tls.client_key: Path does not point to a file",
        "plugins[5]: 'external' is only for kind external",
        "plugins[6].headers.a: Input should be a valid string",
        "plugins[6].start_timeout: Input should be greater than 0",
        # Checked in the same pass as the schema (plugins e and g share the sidecar's name).
        "plugins[6].name: duplicate name 'side' (also plugins[4])",
    ]


def test_transport_keys_stay_at_the_top_level_and_survive_a_round_trip() -> None:
    entry = sidecar("http://127.0.0.1:9/", headers={"Authorization": "Bearer ${TOKEN}"})
    config = load_config({"plugins": [entry]}, environ={"TOKEN": "t"})
    plugin = config.plugins[0]
    assert plugin.external is not None
    assert plugin.external["headers"] == {"Authorization": "Bearer t"}
    assert plugin.hooks == [mw.HookType.TOOL_PRE_INVOKE]
    again = load_config(config, environ={})  # a Config object is dumped and read back
    assert again.plugins[0].external == plugin.external
    assert problems({**sidecar("http://x"), "external": {"transport": "http"}}) == [
        "plugins[0].external: give the transport keys at the top level or under 'external', not both",
        "plugins[0].external.url: required key is missing",
    ]


def test_the_plugin_table_shows_external_plugins(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(
        "plugins:\n"
        "  - {name: side, kind: external, transport: http, url: 'http://127.0.0.1:9', hooks: [tool_pre_invoke]}\n"
    )
    out = subprocess.run([*CLI, "plugins", str(path)], capture_output=True, text=True, timeout=BOUND, check=True)
    assert re.search(r"side\s+external\s+tool_pre_invoke", out.stdout)


# --------------------------------------------------------------------------
# A sidecar hosted by serve-plugin
# --------------------------------------------------------------------------


async def test_sidecar_call_with_a_bearer_token_from_the_environment(make: Make, upper: Server, call: Call) -> None:
    manager = make(sidecar(upper.url, headers={"Authorization": "Bearer ${TOKEN}"}), environ={"TOKEN": TOKEN})
    result = await call(manager, "tool_pre_invoke", tool("hello"))
    assert result.modified_payload == tool("HELLO")
    assert [record.outcome for record in result.records] == [Outcome.MODIFIED]
    status = manager.status()["side"]
    assert (status.kind, status.loaded, status.healthy, status.restarts, status.last_error) == (
        "external",
        True,
        True,
        0,
        None,
    )
    assert status.last_latency is not None
    assert 0 < status.last_latency < BOUND


@pytest.mark.parametrize(("mode", "blocked"), [("enforce", True), ("permissive", False)])
async def test_a_wrong_token_is_a_plugin_error_handled_by_the_mode(
    make: Make, upper: Server, mode: str, blocked: bool
) -> None:
    manager = make(sidecar(upper.url, mode=mode, headers={"Authorization": "Bearer wrong"}))
    result = await manager.invoke("tool_pre_invoke", tool())
    assert result.continue_processing is not blocked
    assert result.modified_payload is None
    assert result.records[0].outcome is Outcome.ERROR
    if blocked:
        assert result.violation is not None
        assert result.violation.code == "PLUGIN_ERROR"
    assert "HTTP 401: missing or wrong bearer token" in (manager.status()["side"].last_error or "")


async def test_violations_come_back_whole(make: Make, upper: Server) -> None:
    manager = make(sidecar(upper.url, name="guard", headers={"Authorization": f"Bearer {TOKEN}"}))
    result = await manager.invoke("tool_pre_invoke", tool("a forbidden word"))
    assert result.continue_processing is False
    assert result.violation == mw.PluginViolation(
        reason="Denied word",
        description="the word 'forbidden' is not allowed",
        code="DENIED",
        details={"word": "forbidden"},
        http_status_code=422,
        mcp_error_code=-32001,
        plugin_name="guard",
    )


async def test_all_eight_hooks_and_state_from_pre_to_post(make: Make, hosted: Callable[[str], Server]) -> None:
    manager = make(sidecar(hosted("Mirror").url, hooks=[hook.value for hook in EIGHT]))
    context = mw.GlobalContext(request_id="r-9", user="ada", tenant_id="acme", server_id="srv")
    context.state["note"] = "shared"
    results = {hook: await manager.invoke(hook, PAYLOADS[hook], context) for hook in EIGHT}

    changed = {hook: result.modified_payload for hook, result in results.items()}
    assert all(type(changed[hook]) is type(PAYLOADS[hook]) for hook in EIGHT)
    pre = results[mw.HookType.TOOL_PRE_INVOKE]
    assert changed[mw.HookType.TOOL_PRE_INVOKE].args == {"q": "x", "n": [1, 2.5, None], "mirrored": True}
    assert pre.metadata == {
        "seen": {"user": "ada", "tenant": "acme", "server": "srv", "request": "r-9"},
        "shared_state": "shared",
    }
    # The post hook saw the state its pre hook set, in another HTTP request.
    assert changed[mw.HookType.TOOL_POST_INVOKE].result == {"was": {"content": [{"text": "é"}]}, "pre": "search"}
    assert context.plugin_contexts["side"].state == {"pre": "search"}
    assert changed[mw.HookType.PROMPT_PRE_FETCH].args == {"who": "ada", "mirrored": "yes"}
    assert changed[mw.HookType.PROMPT_POST_FETCH].result == {"was": {"messages": []}}
    assert changed[mw.HookType.RESOURCE_PRE_FETCH].uri == "file:///a#mirrored"
    assert changed[mw.HookType.RESOURCE_POST_FETCH].content == [{"contents": []}]
    request = changed[mw.HookType.HTTP_PRE_REQUEST]
    assert request.body == b"\xfe yranib \xff\x00"
    assert request.headers == [("x-a", "1"), ("x-a", "2"), ("x-mirrored", "10.0.0.1:5555")]
    assert request.query_string == "a=1&a=2"
    response = changed[mw.HookType.HTTP_POST_REQUEST]
    assert (response.body, response.status_code) == (b"cba\x80", 202)


async def test_an_unchanged_payload_is_no_change(make: Make, hosted: Callable[[str], Server]) -> None:
    manager = make(sidecar(hosted("Passive").url))
    for payload in (tool(), mw.ToolPreInvokePayload(name="echo", args={"echo": True})):
        result = await manager.invoke("tool_pre_invoke", payload)
        assert result.modified_payload is None
        assert result.records[0].outcome is Outcome.PASSED


@pytest.mark.parametrize(
    ("args", "error"),
    [({}, "HTTP 500: it broke"), ({"plain": True}, "HTTP 500: ValueError: plain failure")],
)
async def test_plugin_exceptions_become_plugin_errors(
    make: Make, hosted: Callable[[str], Server], args: dict[str, Any], error: str
) -> None:
    manager = make(sidecar(hosted("Failing").url))
    result = await manager.invoke("tool_pre_invoke", mw.ToolPreInvokePayload(name="x", args=args))
    assert result.violation is not None
    assert result.violation.code == "PLUGIN_ERROR"
    assert error in (manager.status()["side"].last_error or "")


async def test_a_hook_the_hosted_plugin_lacks_is_an_error(make: Make, upper: Server) -> None:
    manager = make(
        sidecar(upper.url, hooks=["tool_post_invoke"], headers={"Authorization": f"Bearer {TOKEN}"}, mode="permissive")
    )
    result = await manager.invoke("tool_post_invoke", mw.ToolPostInvokePayload(name="x", result={}))
    assert result.continue_processing
    assert "HTTP 404: plugin 'Upper' does not handle tool_post_invoke" in (manager.status()["side"].last_error or "")


async def test_one_plugin_serves_async_and_sync_callers(make: Make, upper: Server) -> None:
    # invoke() runs it on this test's loop, invoke_sync() on the background
    # loop: each loop gets its own pooled client.
    manager = make(sidecar(upper.url, headers={"Authorization": f"Bearer {TOKEN}"}))
    for _ in range(3):
        assert (await manager.invoke("tool_pre_invoke", tool("a"))).modified_payload == tool("A")
        assert (await in_thread(manager.invoke_sync, "tool_pre_invoke", tool("b"))).modified_payload == tool("B")
    wire = manager.plugins[0].wire  # type: ignore[attr-defined]
    assert len(wire._clients) == 2


# --------------------------------------------------------------------------
# Misbehaving sidecars
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("garbage", "response body is not JSON"),
        ("fail500", "POST http://127.0.0.1:{port}/call: HTTP 500: 'Internal Server Error'"),
        ("error", "HTTP 500: nope"),
        ("badshape", "payload is not a valid ToolPreInvokePayload: name: Input should be a valid string"),
        ("noresult", "response has neither 'result' nor 'error'"),
    ],
)
@pytest.mark.parametrize(("mode", "blocked"), [("enforce", True), ("permissive", False)])
async def test_garbage_and_http_errors_fail_per_mode(
    make: Make, stdlib: Server, behaviour: str, error: str, mode: str, blocked: bool
) -> None:
    manager = make(sidecar(stdlib.url, mode=mode))
    result = await manager.invoke("tool_pre_invoke", tool(name=behaviour))
    assert result.continue_processing is not blocked
    assert result.modified_payload is None
    assert result.records[0].outcome is Outcome.ERROR
    if blocked:
        assert result.violation is not None
        assert result.violation.code == "PLUGIN_ERROR"
    status = manager.status()["side"]
    assert error.format(port=stdlib.port) in (status.last_error or "")
    assert status.healthy  # the server answered: it is up, the plugin is wrong


@pytest.mark.parametrize(("mode", "code"), [("enforce", "PLUGIN_TIMEOUT"), ("permissive", None)])
async def test_a_hanging_sidecar_times_out_per_mode(
    make: Make, stdlib: Server, call: Call, mode: str, code: str | None
) -> None:
    manager = make(sidecar(stdlib.url, mode=mode, timeout=0.3))
    result = await call(manager, "tool_pre_invoke", tool(name="hang"))
    assert result.records[0].outcome is Outcome.TIMEOUT
    assert (result.violation.code if result.violation else None) == code
    # The next call gets a fresh connection and goes through.
    assert (await call(manager, "tool_pre_invoke", tool("ok"))).modified_payload == tool("OK")


async def test_a_sidecar_that_never_listens_fails_start_naming_what_was_awaited(make: Make) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Closed again: nothing listens there.
    manager = make(sidecar(f"http://127.0.0.1:{port}", name="x", start_timeout=0.5))
    with pytest.raises(RuntimeError) as caught:
        await manager.invoke("tool_pre_invoke", tool())
    assert f"plugin 'x': GET http://127.0.0.1:{port}/health not 200 within 0.5s (last: ConnectError" in str(
        caught.value
    )


async def test_a_sidecar_that_stays_unhealthy_fails_start(make: Make) -> None:
    for server in _server([sys.executable, STDLIB_PLUGIN, "--unhealthy"]):
        manager = make(sidecar(server.url, name="x", start_timeout=0.5))
        with pytest.raises(RuntimeError, match=re.escape(f"{server.url}/health not 200 within 0.5s (last: HTTP 503)")):
            await manager.invoke("tool_pre_invoke", tool())
        assert manager.status()["x"].loaded is False


async def test_health_checks_notice_a_sidecar_going_away(make: Make) -> None:
    server = Server([sys.executable, STDLIB_PLUGIN])
    try:
        manager = make(sidecar(server.url, health_interval=0.05))
        await manager.ainitialize()
        assert manager.status()["side"].healthy
    finally:
        server.stop()
    await asyncio.to_thread(wait_for, lambda: not manager.status()["side"].healthy, "unhealthy")
    assert f"GET {server.url}/health: ConnectError" in (manager.status()["side"].last_error or "")
    result = await manager.invoke("tool_pre_invoke", tool())
    assert result.violation is not None
    assert f"POST {server.url}/call failed: ConnectError" in (result.records[0].error or "")


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    """serve-plugin over HTTPS, requiring a client certificate signed by the test CA."""
    need("cryptography")  # a test requirement: skipped locally without it, an error in CI
    from tests.external.certs import make_certs

    certs = make_certs(tmp_path_factory.mktemp("certs"))
    argv = [
        *SERVE_PLUGIN,
        "tests.external.sample.Passive",
        "--ssl-certfile",
        str(certs.server_cert),
        "--ssl-keyfile",
        str(certs.server_key),
        "--ssl-ca-certs",
        str(certs.ca),
    ]
    for server in _server(argv):
        server.url = server.url.replace("http://", "https://")
        yield server, certs


async def test_mutual_tls(make: Make, tls_sidecar: tuple[Server, Any]) -> None:
    server, certs = tls_sidecar
    tls = {"ca_bundle": str(certs.ca), "client_cert": str(certs.client_cert), "client_key": str(certs.client_key)}
    manager = make(sidecar(server.url, tls=tls))
    result = await manager.invoke("tool_pre_invoke", tool())
    assert result.records[0].outcome is Outcome.PASSED


async def test_tls_failures_fail_start(make: Make, tls_sidecar: tuple[Server, Any]) -> None:
    server, _ = tls_sidecar
    untrusted = make(sidecar(server.url, name="x", start_timeout=0.5))
    untrusted_error = re.escape("not 200 within 0.5s (last: ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]")
    with pytest.raises(RuntimeError, match=untrusted_error):
        await untrusted.ainitialize()
    # verify: false trusts the server blindly, but the server wants our certificate.
    anonymous = make(sidecar(server.url, name="y", tls={"verify": False}, start_timeout=0.5))
    with pytest.raises(RuntimeError, match=re.escape("not 200 within 0.5s (last: ")) as caught:
        await anonymous.ainitialize()
    assert "CERTIFICATE_VERIFY_FAILED" not in str(caught.value)


# --------------------------------------------------------------------------
# Behind the middleware
# --------------------------------------------------------------------------


def jsonrpc_app() -> Starlette:
    """A tiny JSON-RPC server whose ``echo`` tool returns its ``text`` argument."""

    async def rpc(request: Request) -> JSONResponse:
        message = await request.json()
        text = message["params"]["arguments"]["text"]
        return JSONResponse(
            {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [{"type": "text", "text": text}]}}
        )

    return Starlette(routes=[Route("/mcp", rpc, methods=["POST"])])


async def test_behind_the_middleware_the_change_reaches_the_app(upper: Server) -> None:
    config = {"plugins": [sidecar(upper.url, headers={"Authorization": f"Bearer {TOKEN}"})]}
    app = mw.PluginMiddleware(jsonrpc_app(), config=config)
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            answer = await client.post("/mcp", json=body)
            assert answer.json() == {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "HI"}]}}
            body["params"]["arguments"] = {"text": "forbidden"}  # type: ignore[index]
            blocked = (await client.post("/mcp", json=body)).json()
    finally:
        await app.manager.aclose()
    assert blocked["error"]["code"] == -32001
    assert blocked["error"]["data"]["plugin_error_code"] == "DENIED"


# --------------------------------------------------------------------------
# serve-plugin's own errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no.such.module.Plugin"], "cannot import module 'no.such.module'"),
        (["tests.external.sample.Upper", "--config", "{config}"], "expected the plugin's config mapping"),
    ],
)
def test_serve_plugin_reports_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("[1, 2]\n")
    argv = [*SERVE_PLUGIN, *(arg.format(config=config) for arg in args)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 1
    assert message in done.stderr
    assert "PORT=" not in done.stdout


def test_serve_plugin_without_its_extra_says_what_to_install() -> None:
    blocked = "import sys; sys.modules['uvicorn'] = None; from mcp_plugin_mw.cli import main; main()"
    argv = [sys.executable, "-c", blocked, "serve-plugin", "tests.external.sample.Upper"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BOUND, cwd=Path(__file__).parents[1])
    assert done.returncode == 1
    assert "serve-plugin needs starlette and uvicorn: pip install 'mcp-plugin-mw[serve]'" in done.stderr
