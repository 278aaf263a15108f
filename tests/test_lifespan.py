"""
Plugins start and stop with the app
===================================

A real ``uvicorn`` process serving ``tests/lifespan_app.py``: the plugins
start before the app's own startup and before any request, and stop after
the app's shutdown; a plugin that cannot start makes uvicorn exit non-zero,
naming the plugin and why. Without lifespan, plugins start lazily, and
``WSGIPluginMiddleware`` starts them when it is built.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import mcp_plugin_mw as mw
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

BAD_APP = """\
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import mcp_plugin_mw as mw

BAD = {"plugins": [{"name": "shout", "kind": "tests.sample_plugins.Upper", "flow": "backwards"}]}


async def hello(request):
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/", hello)])
if EAGER:
    app.add_middleware(mw.PluginMiddleware, manager=mw.PluginManager(BAD))
else:
    app.add_middleware(mw.PluginMiddleware, config=BAD)
"""

PROBLEM = "plugins[0].flow: Input should be 'request', 'response' or 'both'"


def bad_app(tmp_path: Path, *options: str, eager: bool) -> subprocess.Popen[str]:
    (tmp_path / "bad_config_app.py").write_text(f"EAGER = {eager}\n" + BAD_APP, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    command = [sys.executable, "-m", "uvicorn", "bad_config_app:app", "--host", "127.0.0.1", "--port", str(free_port())]
    return subprocess.Popen(
        [*command, *options], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _exit_output(server: subprocess.Popen[str]) -> str:
    try:
        return server.communicate(timeout=60)[0]
    finally:
        if server.poll() is None:
            server.kill()


def test_a_bad_config_with_lifespan_on_stops_uvicorn(tmp_path: Path) -> None:
    server = bad_app(tmp_path, "--lifespan", "on", eager=False)
    output = _exit_output(server)
    assert server.returncode != 0, output
    assert PROBLEM in output
    assert "Application startup failed" in output


def test_a_manager_built_at_import_stops_uvicorn_with_the_default_lifespan(tmp_path: Path) -> None:
    server = bad_app(tmp_path, eager=True)
    output = _exit_output(server)
    assert server.returncode != 0, output
    assert PROBLEM in output


def test_lifespan_auto_serves_a_bad_add_middleware_config(tmp_path: Path) -> None:
    # Why README.rst says the two above: Starlette builds the middleware on the
    # first call (the lifespan), and uvicorn's --lifespan auto takes its
    # exception for "lifespan unsupported" and serves, every request a 500.
    server = bad_app(tmp_path, eager=False)
    port = int(server.args[server.args.index("--port") + 1])
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
        assert answer.status_code == 500
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert "ASGI 'lifespan' protocol appears unsupported." in output
    assert PROBLEM in output  # in the traceback of the request, not at startup
