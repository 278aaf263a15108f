"""
External plugins in a child process: start, crash, restart, stop
================================================================

Each test starts real child processes (``mcp-plugin-mw serve-plugin`` or
:mod:`tests.external.stdlib_plugin`), kills them with real signals and
checks by pid that nothing is left behind. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import mcp_plugin_mw as mw
from mcp_plugin_mw.external.subprocess import SubprocessPlugin
from mcp_plugin_mw.models import Outcome
from tests.conftest import Call
from tests.external import ROOT, SERVE_PLUGIN, STDLIB_PLUGIN, gone, wait_for

Make = Callable[..., mw.PluginManager]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Managers from ``plugins:`` entries, closed on the test's own loop at teardown."""
    made: list[mw.PluginManager] = []

    def make(*plugins: dict[str, Any], **settings: Any) -> mw.PluginManager:
        manager = mw.PluginManager({"plugin_settings": settings, "plugins": list(plugins)}, environ={})
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.aclose()


def child(*args: str, name: str = "child", **keys: Any) -> dict[str, Any]:
    """An entry running the standard-library plugin with ``args``."""
    return {
        "name": name,
        "kind": "external",
        "transport": "subprocess",
        "exec": sys.executable,
        "args": [STDLIB_PLUGIN, *args],
        "hooks": ["tool_pre_invoke"],
        "start_timeout": 5,
        "health_interval": 0,
        "shutdown_grace": 1,
        **keys,
    }


def tool(text: str = "hello", name: str = "echo") -> mw.ToolPreInvokePayload:
    return mw.ToolPreInvokePayload(name=name, args={"text": text})


def plugin_of(manager: mw.PluginManager) -> SubprocessPlugin:
    plugin = manager.plugins[0]
    assert isinstance(plugin, SubprocessPlugin)
    return plugin


async def until(predicate: Callable[[], Any], what: str) -> Any:
    return await asyncio.to_thread(wait_for, predicate, what)


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


async def test_serve_plugin_in_one_line_of_config(make: Make, call: Call) -> None:
    exe = shutil.which("mcp-plugin-mw")
    if exe is None and os.environ.get("CI"):
        pytest.fail("mcp-plugin-mw is not on PATH")
    if exe is None:
        pytest.skip("mcp-plugin-mw is not on PATH (install the package)")
    manager = make(
        {
            "name": "upper",
            "kind": "external",
            "transport": "subprocess",
            "exec": "mcp-plugin-mw",
            "args": ["serve-plugin", "tests.external.sample.Upper"],
            "cwd": str(ROOT),
            "hooks": ["tool_pre_invoke"],
        }
    )
    result = await call(manager, "tool_pre_invoke", tool("shout"))
    assert result.modified_payload == tool("SHOUT")
    plugin = plugin_of(manager)
    pid = plugin.pid
    assert pid is not None
    status = manager.status()["upper"]
    assert (status.loaded, status.healthy, status.restarts, status.last_error) == (True, True, 0, None)
    await manager.aclose()
    assert plugin.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_the_child_requires_its_token(make: Make) -> None:
    manager = make(child())
    assert (await manager.invoke("tool_pre_invoke", tool("a"))).modified_payload == tool("A")
    url = plugin_of(manager).url
    assert url is not None
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{url}/call", json={"method": "tool_pre_invoke", "params": {}})
    assert answer.status_code == 401


async def test_child_output_goes_to_the_plugins_logger(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcp_plugin_mw.external.chatty")
    manager = make(child("--chatter", name="chatty"))
    await manager.ainitialize()

    def lines() -> set[tuple[int, str]]:
        return {(r.levelno, r.getMessage()) for r in caplog.records if r.name == "mcp_plugin_mw.external.chatty"}

    await until(lambda: len(lines() & EXPECTED_CHATTER) == 2, "both lines logged")


EXPECTED_CHATTER = {
    (logging.INFO, "stdlib_plugin: hello on stdout"),
    (logging.WARNING, "stdlib_plugin: hello on stderr"),
}


@pytest.mark.parametrize(("mode", "code"), [("enforce", "PLUGIN_TIMEOUT"), ("permissive", None)])
async def test_a_hanging_child_times_out_per_mode(make: Make, call: Call, mode: str, code: str | None) -> None:
    manager = make(child(mode=mode, timeout=0.3))
    result = await call(manager, "tool_pre_invoke", tool(name="hang"))
    assert result.records[0].outcome is Outcome.TIMEOUT
    assert (result.violation.code if result.violation else None) == code
    assert (await call(manager, "tool_pre_invoke", tool("b"))).modified_payload == tool("B")
    assert manager.status()["child"].restarts == 0


async def test_a_plugin_written_in_javascript(make: Make) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed; .ci/run installs it")
        pytest.skip("node is not installed")
    script = str(ROOT / "tests" / "external" / "upper.mjs")
    manager = make({**child(name="js"), "exec": node, "args": [script]})
    context = mw.GlobalContext(request_id="1")
    result = await manager.invoke("tool_pre_invoke", tool("from node"), context)
    assert result.modified_payload == tool("FROM NODE")
    assert result.metadata == {"by": "node"}
    await manager.invoke("tool_pre_invoke", tool("again"), context)
    assert context.plugin_contexts["js"].state == {"calls": 2}
    blocked = await manager.invoke("tool_pre_invoke", tool("forbidden"))
    assert blocked.violation is not None
    assert (blocked.violation.code, blocked.violation.plugin_name) == ("DENIED", "js")


# --------------------------------------------------------------------------
# Crash and restart
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "blocked"), [("enforce", True), ("permissive", False)])
async def test_a_killed_child_is_restarted_and_calls_fail_per_mode_meanwhile(
    make: Make, call: Call, mode: str, blocked: bool
) -> None:
    # A long first delay, so the test sees the plugin down before it is back.
    manager = make(child(mode=mode, restart={"initial_delay": 1.5, "max_delay": 3.0}))
    assert (await call(manager, "tool_pre_invoke", tool("a"))).modified_payload == tool("A")
    plugin = plugin_of(manager)
    first = plugin.pid
    assert first is not None

    os.kill(first, signal.SIGKILL)
    await until(lambda: not manager.status()["child"].healthy, "seen down")
    down = await call(manager, "tool_pre_invoke", tool("b"))
    assert down.continue_processing is not blocked
    assert down.modified_payload is None
    assert down.records[0].outcome is Outcome.ERROR
    if blocked:
        assert down.violation is not None
        assert down.violation.code == "PLUGIN_ERROR"
    again = await call(manager, "tool_pre_invoke", tool("b"))
    for result in (down, again):
        assert result.records[0].error == (
            f"PluginError: plugin 'child': process not running (process {first} was killed by SIGKILL)"
        )

    status = await until(
        lambda: (s := manager.status()["child"]).restarts == 1 and s.healthy and s, "restarted and healthy"
    )
    assert status.loaded
    assert plugin.pid not in (None, first)
    assert (await call(manager, "tool_pre_invoke", tool("c"))).modified_payload == tool("C")
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)


async def test_restarts_stop_at_max_restarts(make: Make) -> None:
    restart = {"initial_delay": 0.05, "max_delay": 0.2, "max_restarts": 2}
    manager = make(child("--die-after", "0.2", restart=restart))
    await manager.ainitialize()
    status = await until(
        lambda: "gave up after 2 restarts" in ((s := manager.status()["child"]).last_error or "") and s,
        "given up",
    )
    assert (status.restarts, status.healthy) == (2, False)
    assert "exited with code 7" in (status.last_error or "")
    assert plugin_of(manager).pid is None
    result = await manager.invoke("tool_pre_invoke", tool())
    assert result.violation is not None
    assert result.violation.code == "PLUGIN_ERROR"


# --------------------------------------------------------------------------
# Start failures
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-port"], r"plugin 'x': no PORT= line within 1s"),
        (
            ["--exit-early", "4"],
            r"plugin 'x': process \d+ exited with code 4 before printing PORT=<n>; "
            r"stderr: stdlib_plugin: giving up early",
        ),
        (["--first-line", "hello"], r"plugin 'x': first stdout line is 'hello', expected PORT=<n>"),
        (["--unhealthy"], r"plugin 'x': GET http://127\.0\.0\.1:\d+/health not 200 within 1s \(last: HTTP 503\)"),
    ],
)
async def test_a_child_that_never_gets_ready_fails_start_and_is_gone(
    make: Make, tmp_path: Path, args: list[str], message: str
) -> None:
    pid_file = tmp_path / "pid"
    manager = make(child(*args, "--pid-file", str(pid_file), name="x", start_timeout=1))
    with pytest.raises(RuntimeError, match=message):
        await manager.ainitialize()
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert manager.status()["x"].loaded is False


async def test_a_plugin_failing_to_initialize_in_serve_plugin(make: Make) -> None:
    manager = make(
        {
            **child(name="x"),
            "exec": SERVE_PLUGIN[0],
            "args": [*SERVE_PLUGIN[1:], "tests.external.sample.NeverReady"],
            "cwd": str(ROOT),
        }
    )
    with pytest.raises(RuntimeError) as caught:
        await manager.ainitialize()
    assert re.search(r"process \d+ exited with code 3 before GET http://127\.0\.0\.1:\d+/health", str(caught.value))
    assert "cannot initialize" in str(caught.value)  # from the child's stderr


async def test_a_missing_program_fails_start(make: Make) -> None:
    manager = make({**child(name="x"), "exec": "no-such-program-mcp-plugin-mw"})
    with pytest.raises(RuntimeError, match="plugin 'x': cannot start 'no-such-program-mcp-plugin-mw': No such file"):
        await manager.ainitialize()


def test_subprocess_config_errors() -> None:
    with pytest.raises(mw.ConfigError) as caught:
        mw.PluginManager(
            {
                "plugins": [
                    {**child(), "exec": "", "cwd": "/no/such/dir", "restart": {"initial_delay": 2, "max_delay": 1}},
                    {**child(name="b"), "url": "http://x"},
                ]
            },
            environ={},
        )
    assert caught.value.problems == [
        "plugins[0].exec: String should have at least 1 character",
        "plugins[0].cwd: Path does not point to a directory",
        "plugins[0].restart: max_delay must not be less than initial_delay",
        "plugins[1].url: unknown key",
    ]


# --------------------------------------------------------------------------
# Shutdown
# --------------------------------------------------------------------------


async def test_close_leaves_no_process_behind(make: Make, tmp_path: Path) -> None:
    # The child ignores SIGTERM and has started a grandchild that ignores it
    # too: only SIGKILL to the whole group, after the grace, ends them.
    grandchild_file = tmp_path / "grandchild"
    manager = make(child("--ignore-term", "--grandchild", str(grandchild_file), shutdown_grace=0.3))
    await manager.ainitialize()
    pid = plugin_of(manager).pid
    assert pid is not None
    grandchild = int(grandchild_file.read_text())
    assert not gone(grandchild)

    await manager.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # The grandchild is init's to reap once its parent is gone; a zombie runs nothing.
    await until(lambda: gone(grandchild), "grandchild gone")


def test_close_from_sync_code(tmp_path: Path) -> None:
    manager = mw.PluginManager({"plugins": [child()]}, environ={})
    assert manager.invoke_sync("tool_pre_invoke", tool("x")).modified_payload == tool("X")
    pid = plugin_of(manager).pid
    assert pid is not None
    manager.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
