"""
The admin app (``mw.admin_app``, ``mw.admin_wsgi_app``) and the ``status`` and ``reload`` commands
===================================================================================================

Real servers on 127.0.0.1: uvicorn for the ASGI app (mounted in Starlette and
FastAPI beside a ``PluginMiddleware``-wrapped MCP endpoint that shares its
manager), werkzeug for the WSGI app (mounted in Flask with
``DispatcherMiddleware``, and on a port of its own).
"""

from __future__ import annotations

import contextlib
import hmac
import inspect
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest

import mcp_plugin_mw as mw
from mcp_plugin_mw import admin as admin_module
from mcp_plugin_mw import metrics
from mcp_plugin_mw.cli import main
from mcp_plugin_mw.plugin import PluginStatus
from tests.fail_closed_support import BOUND, uvicorn_on, werkzeug_on

pytestmark = pytest.mark.timeout(60)

TOKEN = "admin-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MODES = ["enforce", "enforce_ignore_error", "permissive", "disabled"]


# --------------------------------------------------------------------------
# Plugins
# --------------------------------------------------------------------------


class Gate(mw.Plugin):
    """Blocks the tool named ``deny``."""

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> mw.PluginResult | None:
        if payload.name == "deny":
            return mw.PluginResult(
                continue_processing=False, violation=mw.PluginViolation(reason="denied", code="DENIED")
            )
        return None


class Fragile(mw.Plugin):
    """Raises on the tool named ``boom``."""

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        if payload.name == "boom":
            raise RuntimeError("boom")


class Sick(mw.Plugin):
    """Loaded, but reports itself unhealthy (an out-of-process plugin whose server is down)."""

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        return None

    def status(self) -> PluginStatus:
        return PluginStatus(name=self.name, kind=self.plugin_config.kind, healthy=False, last_error="down")


def entry(name: str, cls: type[mw.Plugin], **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": f"{__name__}.{cls.__name__}", **fields}


GUARDS = {"plugins": [entry("gate", Gate, priority=10), entry("fragile", Fragile, priority=20, mode="permissive")]}


# --------------------------------------------------------------------------
# Apps
# --------------------------------------------------------------------------


def tools_call(tool: str, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": {}}}


def result(request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": "ok"}]}}


def starlette_app(manager: mw.PluginManager, **admin: Any) -> Any:
    """``/mcp`` behind ``PluginMiddleware`` and the admin app at ``/_plugins``, one manager."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(result((await request.json())["id"]))

    return Starlette(
        routes=[
            Route("/mcp", endpoint, methods=["POST"]),
            Mount("/_plugins", mw.admin_app(manager, token=admin.pop("token", TOKEN), **admin)),
        ],
        middleware=[Middleware(mw.PluginMiddleware, manager=manager)],
    )


def flask_app(manager: mw.PluginManager) -> Any:
    """Flask's ``/mcp`` behind ``WSGIPluginMiddleware``, the admin WSGI app at ``/_plugins``."""
    from flask import Flask, jsonify, request
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    app = Flask(__name__)

    @app.post("/mcp")
    def mcp() -> Any:
        return jsonify(result(request.get_json()["id"]))

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        mw.WSGIPluginMiddleware(app.wsgi_app, manager=manager),
        {"/_plugins": mw.admin_wsgi_app(manager, token=TOKEN)},
    )
    return app


@contextlib.contextmanager
def served(app: Any) -> Iterator[httpx.Client]:
    """``app`` on uvicorn, and a client for it."""
    with uvicorn_on(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=BOUND) as http:
        yield http


@contextlib.contextmanager
def served_wsgi(app: Any) -> Iterator[httpx.Client]:
    with werkzeug_on(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=BOUND) as http:
        yield http


@pytest.fixture
def manager() -> Iterator[mw.PluginManager]:
    made = mw.PluginManager(GUARDS, environ={})
    yield made
    made.close()


def drive(http: httpx.Client, tools: list[str]) -> list[dict[str, Any]]:
    answers = []
    for index, tool in enumerate(tools):
        answer = http.post("/mcp", json=tools_call(tool, index))
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    return answers


def rows_by_name(http: httpx.Client, prefix: str = "/_plugins") -> dict[str, dict[str, Any]]:
    answer = http.get(f"{prefix}/plugins", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return {row["name"]: row for row in answer.json()}


TRAFFIC = ["search", "search", "deny", "boom", "search"]


def check_counts(rows: dict[str, dict[str, Any]]) -> None:
    """The counts :data:`TRAFFIC` leaves: the gate saw every call and blocked one; fragile failed once."""
    assert rows["gate"]["calls"] == 5
    assert rows["gate"]["violations"] == 1
    assert rows["gate"]["errors"] == 0
    assert rows["fragile"]["calls"] == 4  # not after the block
    assert rows["fragile"]["violations"] == 0
    assert rows["fragile"]["errors"] == 1


# --------------------------------------------------------------------------
# Construction and the token
# --------------------------------------------------------------------------


@pytest.mark.parametrize("build", [mw.admin_app, mw.admin_wsgi_app])
@pytest.mark.parametrize("token", [None, ""])
def test_no_token_refused_unless_allowed(manager: mw.PluginManager, build: Any, token: str | None) -> None:
    with pytest.raises(ValueError, match="allow_unauthenticated"):
        build(manager, token=token)
    build(manager, token=token, allow_unauthenticated=True)


def test_unauthenticated_app_answers_without_a_token(manager: mw.PluginManager) -> None:
    with served(starlette_app(manager, token=None, allow_unauthenticated=True)) as http:
        assert http.get("/_plugins/health").status_code == 200


def test_token_is_compared_in_constant_time(manager: mw.PluginManager, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "hmac.compare_digest(" in inspect.getsource(admin_module._Admin._refuse)
    seen: list[tuple[bytes, bytes]] = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(admin_module, "hmac", types.SimpleNamespace(compare_digest=compare_digest))
    app = mw.admin_wsgi_app(manager, token=TOKEN)
    with served_wsgi(app) as http:
        assert http.get("/health", headers={"authorization": "Bearer guess"}).status_code == 401
        assert http.get("/health", headers=AUTH).status_code == 200
    assert seen == [(b"guess", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_a_token_beyond_ascii_is_compared_as_utf8_bytes() -> None:
    token = "pässwörd-✓"
    manager = mw.PluginManager(GUARDS, environ={})
    right = {"authorization": f"Bearer {token}".encode()}
    wrong = {"authorization": "Bearer pässwörd-x".encode()}
    with served(starlette_app(manager, token=token)) as http:
        assert http.get("/_plugins/health", headers=right).status_code == 200
        assert http.get("/_plugins/health", headers=wrong).status_code == 401
    with served_wsgi(mw.admin_wsgi_app(manager, token=token)) as http:
        assert http.get("/health", headers=right).status_code == 200
        assert http.get("/health", headers=wrong).status_code == 401
    manager.close()


def check_refusals(http: httpx.Client, prefix: str) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}, {"authorization": ""}):
        for method, path in (("GET", "/plugins"), ("GET", "/health"), ("POST", "/reload"), ("GET", "/nowhere")):
            answer = http.request(method, prefix + path, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "error" in answer.json()
    # The scheme's case does not matter (RFC 7235).
    assert http.get(f"{prefix}/health", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


# --------------------------------------------------------------------------
# ASGI under uvicorn, mounted in Starlette beside the middleware
# --------------------------------------------------------------------------


def test_asgi_plugins_counts_and_refusals(manager: mw.PluginManager) -> None:
    with served(starlette_app(manager)) as http:
        check_refusals(http, "/_plugins")
        before = rows_by_name(http)
        assert [before[name]["calls"] for name in ("gate", "fragile")] == [0, 0]
        answers = drive(http, TRAFFIC)
        assert "error" in answers[2]
        assert "result" in answers[3]
        rows = rows_by_name(http)
        check_counts(rows)
        assert rows["gate"] == {
            "name": "gate",
            "kind": f"{__name__}.Gate",
            "hooks": ["tool_pre_invoke"],
            "flow": "both",
            "category": "content",
            "mode": "enforce",
            "healthy": True,
            "calls": 5,
            "violations": 1,
            "errors": 0,
        }
        assert rows["fragile"]["mode"] == "permissive"
        assert list(rows) == ["gate", "fragile"]

        answer = http.get("/_plugins/health", headers=AUTH)
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
        assert answer.headers["content-type"] == "application/json"
        head = http.head("/_plugins/plugins", headers=AUTH)
        assert head.status_code == 200
        assert head.content == b""


def test_asgi_unknown_path_and_wrong_method(manager: mw.PluginManager) -> None:
    with served(starlette_app(manager)) as http:
        for path in ("/_plugins/", "/_plugins/nope", "/_plugins/plugins/gate", "/_plugins/plugins//mode"):
            assert http.get(path, headers=AUTH).status_code == 404, path
        for method, path, allow in (
            ("POST", "/plugins", "GET, HEAD"),
            ("DELETE", "/health", "GET, HEAD"),
            ("GET", "/reload", "POST"),
            ("GET", "/plugins/gate/mode", "PUT"),
            ("PUT", "/metrics", "GET, HEAD"),
        ):
            answer = http.request(method, "/_plugins" + path, headers=AUTH)
            assert answer.status_code == 405, (method, path)
            assert answer.headers["allow"] == allow


def test_two_admin_apps_share_one_managers_counts(manager: mw.PluginManager) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = starlette_app(manager)
    second = Starlette(routes=[Mount("/other", mw.admin_app(manager, token="second")), Mount("/", app)])
    assert metrics.tally_for(manager) is metrics.tally_for(manager)
    with served(second) as http:
        drive(http, TRAFFIC)
        check_counts(rows_by_name(http))
        other = http.get("/other/plugins", headers={"authorization": "Bearer second"}).json()
        assert {row["name"]: row["calls"] for row in other} == {"gate": 5, "fragile": 4}


# --------------------------------------------------------------------------
# /health and PUT /plugins/{name}/mode
# --------------------------------------------------------------------------


def check_health_and_mode(http: httpx.Client, prefix: str) -> None:
    answer = http.get(f"{prefix}/health", headers=AUTH)
    assert answer.status_code == 503
    assert answer.json() == {"status": "unhealthy", "unhealthy": ["sick"]}
    assert rows_by_name(http, prefix)["sick"]["healthy"] is False

    changed = http.put(f"{prefix}/plugins/sick/mode", headers=AUTH, json={"mode": "permissive"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["mode"] == "permissive"
    assert rows_by_name(http, prefix)["sick"]["mode"] == "permissive"
    # Unhealthy but not enforcing: it blocks nothing, so the app is healthy.
    answer = http.get(f"{prefix}/health", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "unhealthy": ["sick"]}

    back = http.put(f"{prefix}/plugins/sick/mode", headers=AUTH, json={"mode": "enforce"})
    assert back.status_code == 200
    assert http.get(f"{prefix}/health", headers=AUTH).status_code == 503

    missing = http.put(f"{prefix}/plugins/nobody/mode", headers=AUTH, json={"mode": "permissive"})
    assert missing.status_code == 404
    assert "nobody" in missing.json()["error"]
    for body in ({"mode": "strict"}, {"mode": 3}, {}, ["permissive"], "permissive"):
        bad = http.put(f"{prefix}/plugins/sick/mode", headers=AUTH, json=body)
        assert bad.status_code == 400, body
        assert bad.json()["modes"] == MODES
        assert all(mode in bad.json()["error"] for mode in MODES)
    for raw in (b"{mode: permissive", b"", b"\xff"):
        bad = http.put(f"{prefix}/plugins/sick/mode", headers=AUTH, content=raw)
        assert bad.status_code == 400, raw
        assert "JSON" in bad.json()["error"]
    big = http.put(f"{prefix}/plugins/sick/mode", headers=AUTH, content=b" " * (64 * 1024 + 1))
    assert big.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(80):
            yield b" " * 1024

    assert http.put(f"{prefix}/plugins/sick/mode", headers=AUTH, content=chunks()).status_code == 413
    assert rows_by_name(http, prefix)["sick"]["mode"] == "enforce"


SICK = {"plugins": [entry("gate", Gate), entry("sick", Sick)]}


def test_asgi_health_and_mode() -> None:
    manager = mw.PluginManager(SICK, environ={})
    with served(starlette_app(manager)) as http:
        check_health_and_mode(http, "/_plugins")
        # A disabled plugin no longer runs: its count stops.
        assert http.put("/_plugins/plugins/gate/mode", headers=AUTH, json={"mode": "disabled"}).status_code == 200
        drive(http, ["deny", "deny"])
        assert rows_by_name(http)["gate"]["calls"] == 0
    manager.close()


def test_wsgi_health_and_mode() -> None:
    manager = mw.PluginManager(SICK, environ={})
    with served_wsgi(flask_app(manager)) as http:
        check_health_and_mode(http, "/_plugins")
    manager.close()


# --------------------------------------------------------------------------
# POST /reload
# --------------------------------------------------------------------------

ONE = f"""\
plugins:
  - name: gate
    kind: {__name__}.Gate
"""
TWO = (
    ONE
    + f"""\
  - name: fragile
    kind: {__name__}.Fragile
    mode: permissive
"""
)
BAD = f"""\
plugins:
  - name: gate
    kind: {__name__}.Gate
    mode: strict
  - name: other
    kind: {__name__}.Fragile
    no_such_key_mw: 1
"""


def check_reload(http: httpx.Client, path: Path, prefix: str, traffic: httpx.Client | None = None) -> None:
    assert list(rows_by_name(http, prefix)) == ["gate"]
    path.write_text(TWO, encoding="utf-8")
    answer = http.post(f"{prefix}/reload", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert [row["name"] for row in answer.json()["plugins"]] == ["gate", "fragile"]
    assert answer.json()["plugins"][1]["mode"] == "permissive"
    assert list(rows_by_name(http, prefix)) == ["gate", "fragile"]

    path.write_text(BAD, encoding="utf-8")
    refused = http.post(f"{prefix}/reload", headers=AUTH)
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "invalid configuration"
    assert len(body["problems"]) == 2
    assert any("plugins[0].mode" in problem for problem in body["problems"])
    assert any("no_such_key_mw" in problem for problem in body["problems"])
    assert list(rows_by_name(http, prefix)) == ["gate", "fragile"]  # unchanged
    # The running chain still blocks.
    assert "error" in drive(traffic or http, ["deny"])[0]


def test_asgi_reload(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(ONE, encoding="utf-8")
    manager = mw.PluginManager(path, environ={})
    with served(starlette_app(manager)) as http:
        check_reload(http, path, "/_plugins")
    manager.close()


def test_wsgi_reload(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(ONE, encoding="utf-8")
    manager = mw.PluginManager(path, environ={})
    with served_wsgi(flask_app(manager)) as http:
        check_reload(http, path, "/_plugins")
    manager.close()


# --------------------------------------------------------------------------
# Mounted in FastAPI and Flask; on a port of its own
# --------------------------------------------------------------------------


def test_fastapi_mount(manager: mw.PluginManager) -> None:
    app = FastAPI()
    app.add_middleware(mw.PluginMiddleware, manager=manager)

    @app.post("/mcp")
    async def mcp(request: FastAPIRequest) -> dict[str, Any]:
        return result((await request.json())["id"])

    app.mount("/ops/plugins", mw.admin_app(manager, token=TOKEN))
    with served(app) as http:
        check_refusals(http, "/ops/plugins")
        drive(http, TRAFFIC)
        check_counts(rows_by_name(http, "/ops/plugins"))
        assert http.get("/ops/plugins/health", headers=AUTH).json() == {"status": "ok"}
        answer = http.put("/ops/plugins/plugins/gate/mode", headers=AUTH, json={"mode": "permissive"})
        assert answer.status_code == 200
        assert "result" in drive(http, ["deny"])[0]  # permissive now: logged, not blocked
        assert http.get("/ops/plugins/nope", headers=AUTH).status_code == 404
        assert http.get("/ops/plugins/reload", headers=AUTH).headers["allow"] == "POST"


def test_flask_dispatcher_mount(manager: mw.PluginManager) -> None:
    with served_wsgi(flask_app(manager)) as http:
        check_refusals(http, "/_plugins")
        answers = drive(http, TRAFFIC)
        assert "error" in answers[2]
        check_counts(rows_by_name(http))
        assert http.get("/_plugins/health", headers=AUTH).json() == {"status": "ok"}
        head = http.head("/_plugins/health", headers=AUTH)
        assert head.status_code == 200
        assert head.content == b""
        assert http.get("/_plugins/nope", headers=AUTH).status_code == 404
        wrong = http.delete("/_plugins/plugins", headers=AUTH)
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET, HEAD")


def test_wsgi_admin_on_its_own_port_beside_an_asgi_app(tmp_path: Path) -> None:
    """The WSGI admin app in a thread of its own (any process, ASGI or not) steers the ASGI app's manager."""
    path = tmp_path / "plugins.yaml"
    path.write_text(ONE, encoding="utf-8")
    manager = mw.PluginManager(path, environ={})
    with served(starlette_app(manager)) as app, served_wsgi(mw.admin_wsgi_app(manager, token=TOKEN)) as ops:
        drive(app, ["search", "deny"])
        assert rows_by_name(ops, "")["gate"]["calls"] == 2
        check_reload(ops, path, "", traffic=app)
        assert rows_by_name(app)["gate"]["calls"] == 3  # the counts carry over the reload


def test_many_concurrent_requests_count_exactly(manager: mw.PluginManager) -> None:
    with served(starlette_app(manager)) as http:

        def worker() -> None:
            with httpx.Client(base_url=str(http.base_url), timeout=BOUND) as own:
                drive(own, ["search"] * 20)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND * 2)
        assert rows_by_name(http)["gate"]["calls"] == 80


# --------------------------------------------------------------------------
# The command line: status and reload
# --------------------------------------------------------------------------


def cli(*args: str, token: str | None = TOKEN, env_name: str = "MCP_PLUGIN_MW_ADMIN_TOKEN") -> Any:
    env = {"MCP_PLUGIN_MW_ADMIN_TOKEN": "", env_name: token or ""}
    return CliRunner().invoke(main, list(args), env=env)


def test_cli_status_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(TWO, encoding="utf-8")
    manager = mw.PluginManager(path, environ={})
    with served(starlette_app(manager)) as http:
        drive(http, TRAFFIC)
        url = f"{http.base_url}/_plugins"
        done = cli("status", url)
        assert done.exit_code == 0, done.output
        lines = done.output.splitlines()
        assert lines[0].split() == ["name", "kind", "mode", "healthy", "calls", "violations", "errors", "hooks"]
        assert lines[1].split() == ["gate", f"{__name__}.Gate", "enforce", "yes", "5", "1", "0", "tool_pre_invoke"]
        assert lines[2].split()[:7] == ["fragile", f"{__name__}.Fragile", "permissive", "yes", "4", "0", "1"]
        assert lines[-1] == "health: ok"
        assert cli("status", url + "/").exit_code == 0  # a trailing slash is fine

        refused = cli("status", url, token=None)
        assert refused.exit_code == 1
        assert "401" in refused.output
        assert "MCP_PLUGIN_MW_ADMIN_TOKEN" in refused.output
        wrong = cli("status", url, token="wrong")
        assert wrong.exit_code == 1
        assert "refused" in wrong.output
        named = cli("status", url, "--token-env", "OPS_TOKEN", env_name="OPS_TOKEN")
        assert named.exit_code == 0, named.output

        path.write_text(ONE, encoding="utf-8")
        done = cli("reload", url)
        assert done.exit_code == 0, done.output
        assert done.output.splitlines()[0] == "reloaded: 1 plugin"
        assert "gate" in done.output
        assert "fragile" not in done.output

        path.write_text(BAD, encoding="utf-8")
        failed = cli("reload", url)
        assert failed.exit_code == 1
        assert "reload refused: invalid configuration (2 problems)" in failed.output
        assert "plugins[0].mode" in failed.output
        assert "no_such_key_mw" in failed.output
        assert list(rows_by_name(http)) == ["gate"]
    manager.close()


def test_cli_status_exits_1_when_unhealthy() -> None:
    manager = mw.PluginManager(SICK, environ={})
    with served(starlette_app(manager)) as http:
        url = f"{http.base_url}/_plugins"
        done = cli("status", url)
        assert done.exit_code == 1
        assert "sick" in done.output
        assert "NO" in done.output
        assert "health: 503 unhealthy: sick" in done.output
        http.put("/_plugins/plugins/sick/mode", headers=AUTH, json={"mode": "permissive"})
        done = cli("status", url)
        assert done.exit_code == 0, done.output
        assert "health: ok (not enforcing, unhealthy: sick)" in done.output
    manager.close()


def test_cli_unreachable_and_not_an_admin_app() -> None:
    from tests.fail_closed_support import free_socket

    sock = free_socket()  # bound, not listening: connections are refused
    try:
        port = sock.getsockname()[1]
        done = cli("status", f"http://127.0.0.1:{port}/_plugins", "--timeout", "2")
        assert done.exit_code == 1
        assert "ConnectError" in done.output
    finally:
        sock.close()
    manager = mw.PluginManager(GUARDS, environ={})
    with served(starlette_app(manager)) as http:
        done = cli("reload", f"{http.base_url}/elsewhere")
        assert done.exit_code == 1
        assert "404" in done.output
    manager.close()
