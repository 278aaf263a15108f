"""
Plugins start and stop with the app
===================================

A real ``uvicorn`` process serving ``tests/lifespan_app.py``: the plugins
start before the app's own startup and before any request, and stop after
the app's shutdown; a plugin that cannot start makes uvicorn exit non-zero,
naming the plugin and why. Without lifespan, plugins start lazily, and
``WSGIPluginMiddleware`` starts them when it is built.

A bad configuration given to Starlette's (or FastAPI's) ``add_middleware``
(``tests/bad_config_app.py``) fails the lifespan startup, so uvicorn exits
non-zero even with its default ``--lifespan auto``; without lifespan every
request gets a 500 problem; built directly, the middleware raises at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

import mcp_plugin_mw as mw
from tests import bad_config_app
from tests.redis_fixture import free_port

ROOT = Path(__file__).resolve().parent.parent


def uvicorn(port: int, marks: Path, *, fail: bool) -> subprocess.Popen[str]:
    env = {**os.environ, "LIFESPAN_MARKS": str(marks), "LIFESPAN_FAIL": "1" if fail else "0", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "uvicorn", "tests.lifespan_app:app", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_plugins_start_before_the_app_and_stop_after_it(tmp_path: Path) -> None:
    marks, port = tmp_path / "marks", free_port()
    server = uvicorn(port, marks, fail=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)
        assert answer.text == "hello"
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output
    assert marks.read_text().splitlines() == [
        "plugin started",
        "app started",
        "request",
        "app stopped",
        "plugin stopped",
    ]


def test_a_plugin_that_cannot_start_fails_the_startup(tmp_path: Path) -> None:
    server = uvicorn(free_port(), tmp_path / "marks", fail=True)
    try:
        output = server.communicate(timeout=60)[0]
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode != 0, output
    assert "plugin 'marking' failed to initialize: the policy store is unreachable" in output
    assert "Application startup failed" in output


class Started(mw.Plugin):
    started: list[str] = []

    def initialize(self) -> None:
        Started.started.append(self.name)

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        return None


class WontStart(Started):
    def initialize(self) -> None:
        raise RuntimeError("no license")


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]


def test_wsgi_middleware_starts_its_plugins_when_built() -> None:
    Started.started.clear()
    middleware = mw.WSGIPluginMiddleware(wsgi_app, config={"plugins": [{"name": "s", "kind": f"{__name__}.Started"}]})
    assert Started.started == ["s"]
    middleware.close()
    with pytest.raises(mw.manager.PluginStartError, match="plugin 'w' failed to initialize: no license"):
        mw.WSGIPluginMiddleware(wsgi_app, config={"plugins": [{"name": "w", "kind": f"{__name__}.WontStart"}]})
    lazy = mw.WSGIPluginMiddleware(
        wsgi_app, config={"plugins": [{"name": "later", "kind": f"{__name__}.Started"}]}, start=False
    )
    assert "later" not in Started.started
    lazy.close()


# --------------------------------------------------------------------------
# A bad configuration under Starlette's add_middleware (what README.rst says to do)
# --------------------------------------------------------------------------
# Starlette builds add_middleware middleware on the app's first call, the
# lifespan startup: the middleware keeps the ConfigError and fails the
# startup with it, or, without lifespan, answers every request with a 500.

PROBLEM = bad_config_app.PROBLEM
REFUSED = "the plugin configuration is invalid; the server's log says why"


def bad_app(*options: str, framework: str = "starlette", how: str = "lazy") -> tuple[subprocess.Popen[str], int]:
    """uvicorn serving ``tests/bad_config_app.py``, and its port."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BAD_CONFIG_FRAMEWORK": framework, "BAD_CONFIG": how}
    command = [sys.executable, "-m", "uvicorn", "tests.bad_config_app:app", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, *options], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return server, port


def _exit_output(server: subprocess.Popen[str]) -> str:
    try:
        return server.communicate(timeout=60)[0]
    finally:
        if server.poll() is None:
            server.kill()


def _first_answer(server: subprocess.Popen[str], port: int) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, server.communicate()[0]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)


def _stop(server: subprocess.Popen[str]) -> str:
    server.send_signal(signal.SIGINT)
    try:
        return server.communicate(timeout=30)[0]
    finally:
        if server.poll() is None:
            server.kill()


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_a_bad_add_middleware_config_stops_uvicorn_with_the_default_lifespan(framework: str) -> None:
    server, _ = bad_app(framework=framework)
    output = _exit_output(server)
    assert server.returncode != 0, output
    assert PROBLEM in output
    assert "Application startup failed" in output
    assert "appears unsupported" not in output


def test_a_bad_config_with_lifespan_on_stops_uvicorn() -> None:
    server, _ = bad_app("--lifespan", "on")
    output = _exit_output(server)
    assert server.returncode != 0, output
    assert PROBLEM in output
    assert "Application startup failed" in output


def test_a_manager_built_at_import_stops_uvicorn_with_the_default_lifespan() -> None:
    server, _ = bad_app(how="eager")
    output = _exit_output(server)
    assert server.returncode != 0, output
    assert PROBLEM in output


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_a_bad_add_middleware_config_without_lifespan_fails_closed(framework: str) -> None:
    server, port = bad_app("--lifespan", "off", framework=framework)
    try:
        answers = [_first_answer(server, port), httpx.get(f"http://127.0.0.1:{port}/", timeout=10)]
    finally:
        output = _stop(server)
    for answer in answers:
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == REFUSED
        assert "hello" not in answer.text
        assert "Traceback" not in answer.text
    assert output.count(PROBLEM) == 1, output  # logged once, not per request
    assert "Traceback" not in output


def test_a_good_add_middleware_config_starts_with_the_default_lifespan() -> None:
    server, port = bad_app(framework="fastapi", how="good")
    try:
        answer = _first_answer(server, port)
    finally:
        output = _stop(server)
    assert answer.status_code == 200, answer.text
    assert answer.text == "hello"
    assert server.returncode == 0, output
    assert "Application startup complete" in output


# In process: which construction raises, and what the kept error answers.


def test_built_directly_a_bad_config_raises_at_once() -> None:
    inner = bad_config_app.build("starlette", "good")
    with pytest.raises(mw.ConfigError, match=re.escape(PROBLEM)):
        mw.PluginMiddleware(inner, config=bad_config_app.BAD)

    async def in_a_loop() -> None:
        with pytest.raises(mw.ConfigError, match=re.escape(PROBLEM)):
            mw.PluginMiddleware(inner, config=bad_config_app.BAD)

    asyncio.run(in_a_loop())


def _lifespan_messages(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))
    return sent


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_under_add_middleware_the_error_fails_the_lifespan_startup(framework: str) -> None:
    app = bad_config_app.build(framework, "lazy")
    [failed] = _lifespan_messages(app)
    assert failed["type"] == "lifespan.startup.failed"
    assert PROBLEM in failed["message"]
    built = app.middleware_stack
    while not isinstance(built, mw.PluginMiddleware):
        built = built.app
    with pytest.raises(mw.ConfigError, match=re.escape(PROBLEM)):
        built.manager  # noqa: B018

    [failed] = _lifespan_messages(bad_config_app.build(framework, "broken"))
    assert failed["type"] == "lifespan.startup.failed"
    assert "cannot import module 'tests.no_such_module'" in failed["message"]


def test_under_add_middleware_requests_and_websockets_get_the_problem(caplog: pytest.LogCaptureFixture) -> None:
    app = bad_config_app.build("starlette", "lazy")
    client = TestClient(app, raise_server_exceptions=True)  # no lifespan: not used as a context manager
    with caplog.at_level(logging.ERROR, logger="mcp_plugin_mw.asgi"):
        for _ in range(2):
            answer = client.get("/")
            assert answer.status_code == 500
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["detail"] == REFUSED
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/"):
            pass
    assert denied.value.status_code == 500
    assert denied.value.json()["detail"] == REFUSED
    assert [record.getMessage().count(PROBLEM) for record in caplog.records] == [1]


def test_under_add_middleware_other_errors_still_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> mw.PluginManager:
        raise RuntimeError("not a configuration problem")

    monkeypatch.setattr(mw.asgi, "PluginManager", broken)
    app = bad_config_app.build("starlette", "good")
    with pytest.raises(RuntimeError, match="not a configuration problem"):
        _lifespan_messages(app)
