"""
The example apps in ``contrib/``
================================

Each example is imported the way its docstring runs it (its folder first on
``sys.path``) and driven in process, to prove it works as documented: the
FastAPI and Django ASGI apps through ``httpx.ASGITransport``, the Flask and
Django WSGI apps through werkzeug's test client under ``LintMiddleware``, and
the MCP SDK server with the example's own ``client.py`` over
``httpx2.ASGITransport`` with the server's lifespan running.

The examples share module names (``app``, ``plugins_example``), so each test
imports its example afresh and puts ``sys.path`` and ``sys.modules`` back.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from werkzeug.middleware.lint import LintMiddleware, WSGIWarning
from werkzeug.test import Client

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"

# Top-level module names the examples define, dropped before and after each import.
_EXAMPLE_MODULES = ("app", "plugins_example", "project", "server", "client")

Load = Callable[[str, str], ModuleType]

RPC_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def _forget_examples() -> None:
    for name in list(sys.modules):
        if name.partition(".")[0] in _EXAMPLE_MODULES:
            del sys.modules[name]


@pytest.fixture
def load_example() -> Iterator[Load]:
    """Import ``module`` from ``contrib/<folder>`` as if run from that folder."""
    saved_path = list(sys.path)
    saved_modules = {
        name: sys.modules[name] for name in list(sys.modules) if name.partition(".")[0] in _EXAMPLE_MODULES
    }

    def load(folder: str, module: str) -> ModuleType:
        _forget_examples()
        sys.path.insert(0, str(CONTRIB / folder))
        return importlib.import_module(module)

    yield load
    _forget_examples()
    sys.modules.update(saved_modules)
    sys.path[:] = saved_path


class _LintedClient(Client):
    """A werkzeug test client checking the app against PEP 3333.

    Requests are buffered, so the client reads and closes every response
    iterator before the lint warnings are turned into errors.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def _lint(app: Any) -> Client:
    return _LintedClient(LintMiddleware(app))


def _rpc(request_id: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


# --------------------------------------------------------------------------
# FastAPI
# --------------------------------------------------------------------------


async def test_fastapi_example(load_example: Load) -> None:
    example = load_example("fastapi", "app")
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        # Shout upper-cases the tool result.
        call = _rpc(1, "tools/call", name="echo", arguments={"text": "hello"})
        response = await http.post("/mcp", json=call)
        assert response.status_code == 200
        assert response.json()["result"]["content"] == [{"type": "text", "text": "HELLO"}]

        # BlockWord answers with a JSON-RPC error carrying the request's id.
        call = _rpc(0, "tools/call", name="echo", arguments={"text": "a Forbidden word"})
        response = await http.post("/mcp", json=call)
        assert response.status_code == 200
        error = response.json()
        assert error["id"] == 0
        assert error["error"]["code"] == -32602
        assert error["error"]["message"].startswith("Plugin Violation: ")
        assert error["error"]["data"]["plugin_name"] == "block-word"
        assert error["error"]["data"]["plugin_error_code"] == "BLOCKED_WORD"

        # Other methods and notifications pass untouched.
        response = await http.post("/mcp", json=_rpc(2, "tools/list"))
        assert response.json()["result"]["tools"][0]["name"] == "echo"
        response = await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert response.status_code == 202

        # The JSON route: passes, or 403 problem+json.
        response = await http.post("/api/echo", json={"text": "hello"})
        assert response.status_code == 200
        assert response.json() == {"text": "hello"}
        response = await http.post("/api/echo", json={"text": "forbidden"})
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "BLOCKED_WORD"
        assert response.json()["plugin_name"] == "block-word"

        response = await http.get("/health")
        assert response.json() == {"status": "ok"}


# --------------------------------------------------------------------------
# Flask
# --------------------------------------------------------------------------


def test_flask_example(load_example: Load) -> None:
    example = load_example("flask", "app")
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        client = _lint(example.app.wsgi_app)

        response = client.post("/api/echo", json={"text": "hello"})
        assert response.status_code == 200
        assert response.get_json() == {"text": "HELLO"}
        assert int(response.headers["content-length"]) == len(response.get_data())

        response = client.post("/api/echo", json={"text": "forbidden"})
        assert response.status_code == 403
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == "BLOCKED_WORD"

        response = client.get("/health")
        assert response.get_json() == {"status": "ok"}


def test_flask_example_test_client(load_example: Load) -> None:
    # Flask's own test client goes through app.wsgi_app, so the plugins apply.
    example = load_example("flask", "app")
    with example.app.test_client() as client:
        assert client.post("/api/echo", json={"text": "quiet"}).get_json() == {"text": "QUIET"}
        assert client.post("/api/echo", json={"text": "forbidden"}).status_code == 403


# --------------------------------------------------------------------------
# Django
# --------------------------------------------------------------------------


@pytest.fixture
def django_project(load_example: Load, monkeypatch: pytest.MonkeyPatch) -> Iterator[Load]:
    """Load modules of the Django example with its settings, restoring any settings in use."""
    from django.conf import settings
    from django.urls import clear_url_caches
    from django.utils.functional import empty

    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "project.settings")
    saved = settings._wrapped
    settings._wrapped = empty
    clear_url_caches()
    yield lambda module: load_example("django", module)
    settings._wrapped = saved
    clear_url_caches()


def test_django_example_wsgi(django_project: Callable[[str], ModuleType]) -> None:
    wsgi = django_project("project.wsgi")
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        client = _lint(wsgi.application)

        response = client.post("/api/echo", json={"text": "hello"})
        assert response.status_code == 200
        assert json.loads(response.get_data()) == {"text": "HELLO"}

        response = client.post("/api/echo", json={"text": "forbidden"})
        assert response.status_code == 403
        assert response.mimetype == "application/problem+json"
        assert json.loads(response.get_data())["code"] == "BLOCKED_WORD"

        response = client.get("/health")
        assert json.loads(response.get_data()) == {"status": "ok"}


async def test_django_example_asgi(django_project: Callable[[str], ModuleType]) -> None:
    asgi = django_project("project.asgi")
    transport = httpx.ASGITransport(app=asgi.application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post("/api/echo", json={"text": "hello"})
        assert response.status_code == 200
        assert response.json() == {"text": "HELLO"}

        response = await http.post("/api/echo", json={"text": "forbidden"})
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"

        response = await http.get("/health")
        assert response.json() == {"status": "ok"}


def test_django_manage_py_check() -> None:
    # ``python manage.py ...`` finds the settings and the wrapped WSGI app.
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    root = str(CONTRIB.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=CONTRIB / "django",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


# --------------------------------------------------------------------------
# MCP SDK server
# --------------------------------------------------------------------------


async def test_mcp_server_example_with_its_client(load_example: Load) -> None:
    import httpx2

    server = load_example("mcp_server", "server")
    client = load_example("mcp_server", "client")
    # load_example forgets modules between calls; the server module object stays valid.
    async with server.inner.router.lifespan_context(server.inner):
        transport = httpx2.ASGITransport(app=server.app)
        http = httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8004")
        lines = await client.main("http://127.0.0.1:8004/mcp", http_client=http)
    assert lines == [
        "echo: HELLO PLUGINS",
        "add: 5",
        "greet: HELLO, ADA!",
        "motd: plugins are watching",
        "blocked: -32602 Plugin Violation: the word 'forbidden' is not allowed (BLOCKED_WORD)",
    ]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_server_example_structured_content(load_example: Load, mode: str) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    server = load_example("mcp_server", "server")
    async with server.inner.router.lifespan_context(server.inner):
        transport = httpx2.ASGITransport(app=server.app)
        async with (
            httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8004") as http,
            Client(streamable_http_client("http://127.0.0.1:8004/mcp", http_client=http), mode=mode) as mcp,
        ):
            result = await mcp.call_tool("echo", {"text": "quiet"})
            assert result.content[0].text == "QUIET"
            assert result.structured_content == {"result": "QUIET"}
            assert not result.is_error


# --------------------------------------------------------------------------
# Installing the examples: the ``examples`` extra
# --------------------------------------------------------------------------

APPS = sorted(path for path in CONTRIB.rglob("*.py") if "__pycache__" not in path.parts)
HEADERS = [CONTRIB / "fastapi" / "app.py", CONTRIB / "flask" / "app.py", CONTRIB / "django" / "manage.py"]
HEADERS += [CONTRIB / "mcp_server" / "server.py", CONTRIB / "mcp_server" / "client.py"]

# Import name -> distribution name, where they differ.
_DISTRIBUTIONS = {"mcp": "mcp", "httpx2": "httpx2"}


def _extra(name: str) -> set[str]:
    import configparser
    import re

    parser = configparser.ConfigParser()
    parser.read(CONTRIB.parent / "setup.cfg")
    lines = parser["options.extras_require"][name].split()
    return {re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower() for line in lines if line}


def _third_party_imports(path: Path) -> set[str]:
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    local = {p.stem for p in path.parent.iterdir()} | {"project", "mcp_plugin_mw", "__future__"}
    return {name for name in found - local if name not in sys.stdlib_module_names}


def test_the_examples_extra_covers_every_contrib_import() -> None:
    extra = _extra("examples")
    needed = set().union(*(_third_party_imports(path) for path in APPS))
    assert needed, "no imports found"
    missing = {name for name in needed if _DISTRIBUTIONS.get(name, name) not in extra}
    assert not missing, f"contrib imports {sorted(missing)}, which the examples extra does not install"
    # Each app is run with uvicorn, flask or manage.py: the servers come with it too.
    assert {"uvicorn", "flask", "django", "fastapi", "mcp", "httpx2"} <= extra


@pytest.mark.parametrize("path", HEADERS, ids=lambda path: str(path.relative_to(CONTRIB)))
def test_each_example_names_the_extra(path: Path) -> None:
    import ast

    header = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert "pip install 'mcp-plugin-mw[examples]'" in header


@pytest.mark.parametrize("path", APPS, ids=lambda path: str(path.relative_to(CONTRIB)))
def test_no_shell_line_in_a_header_ends_in_a_double_backslash(path: Path) -> None:
    import ast

    header = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False) or ""
    assert not [line for line in header.splitlines() if line.rstrip().endswith("\\\\")]


def test_examples_have_distinct_ports() -> None:
    # Each example, and the demo (8000), can run at the same time on its default port.
    import re

    ports: dict[str, set[str]] = {}
    for path in HEADERS:
        found = re.findall(r"(?:--port |-p |127\.0\.0\.1:)(\d{4})", path.read_text(encoding="utf-8"))
        ports.setdefault(path.parent.name, set()).update(found)
    assert all(len(found) == 1 for found in ports.values()), ports
    chosen = [next(iter(found)) for found in ports.values()]
    assert len(set(chosen)) == len(chosen), ports
    assert "8000" not in chosen, ports


def test_fastapi_curl_lines_run_as_written(tmp_path: Path) -> None:
    # The header's lines, pasted into bash against uvicorn serving the example.
    import ast
    import time

    from tests.redis_fixture import free_port

    header = ast.get_docstring(ast.parse((CONTRIB / "fastapi" / "app.py").read_text(encoding="utf-8"))) or ""
    script = header.split("Then try::", 1)[1]
    port = free_port()
    script = textwrap.dedent(script).replace("127.0.0.1:8003", f"127.0.0.1:{port}")
    env = {**os.environ, "PYTHONPATH": str(CONTRIB.parent)}
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command, cwd=CONTRIB / "fastapi", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        done = subprocess.run(["bash", "-eu", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    assert '"text":"HELLO"' in done.stdout
    assert '"plugin_error_code":"BLOCKED_WORD"' in done.stdout
    assert "HTTP/1.1 403" in done.stdout


def test_a_bad_plugins_yaml_stops_the_fastapi_example(tmp_path: Path) -> None:
    # The example builds its manager at import, so uvicorn exits with the problems.
    example = tmp_path / "fastapi"
    shutil.copytree(CONTRIB / "fastapi", example, ignore=shutil.ignore_patterns("__pycache__"))
    yaml_path = example / "plugins.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("flow: response", "flow: backwards"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(CONTRIB.parent)}
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "0"]
    done = subprocess.run(command, cwd=example, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "plugins[1].flow: Input should be 'request', 'response' or 'both'" in done.stderr


def test_each_example_runs_from_a_venv_with_only_the_examples_extra(tmp_path: Path) -> None:
    """A fresh virtualenv, ``pip install '.[examples]'``, and nothing else: every app imports, Django checks."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # Built from a copy, so that the build leaves nothing in the checkout.
    source = tmp_path / "source"
    root = CONTRIB.parent
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(root / "mcp_plugin_mw", source / "mcp_plugin_mw", ignore=ignore)
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.rst"):
        shutil.copy2(root / name, source / name)
    subprocess.run([*install, f"{source}[examples]"], check=True, timeout=900)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    runs = [
        (CONTRIB / "fastapi", ["-c", "import app; assert app.app"]),
        (CONTRIB / "flask", ["-c", "import app; assert app.app"]),
        (CONTRIB / "mcp_server", ["-c", "import server, client; assert server.app"]),
        (CONTRIB / "django", ["manage.py", "check"]),
    ]
    for folder, arguments in runs:
        done = subprocess.run(
            [str(python), *arguments], cwd=folder, env=environment, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{folder.name}: {done.stdout}{done.stderr}"
