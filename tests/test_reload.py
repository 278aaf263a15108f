"""
Reloads, runtime mode changes and their triggers
================================================

``PluginManager.reload``/``areload`` swap a whole new chain in at once; these
tests hold it to that under load (threads and tasks invoking without pause
while the chain is replaced 20 times), check that a bad configuration or a
plugin that cannot start changes nothing, that unchanged plugins are kept
running while retired ones stop only after the invocations still on the old
chain, and that ``set_mode``, ``watch`` and SIGHUP do what they say.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

import mcp_plugin_mw as mw
from mcp_plugin_mw.models import Outcome

HERE = __name__
PAYLOAD = mw.ToolPreInvokePayload(name="search", args={"q": "x"})


class Stamp(mw.Plugin):
    """Passes; counts its life cycle class-wide."""

    started: ClassVar[list[str]] = []
    stopped: ClassVar[list[str]] = []

    def initialize(self) -> None:
        Stamp.started.append(self.name)

    def shutdown(self) -> None:
        Stamp.stopped.append(self.name)

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        return None


class Slow(Stamp):
    """Takes its time, so that a reload finds it running."""

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        time.sleep(0.3)


class Deny(Stamp):
    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> mw.PluginResult:
        return mw.PluginResult(
            continue_processing=False, violation=mw.PluginViolation(reason="no", description="no", code="NO")
        )


class CannotStart(Stamp):
    def initialize(self) -> None:
        raise RuntimeError("the backend is down")


def chain(*names: str, kind: str = "Stamp", **fields: Any) -> dict[str, Any]:
    return {"plugins": [{"name": name, "kind": f"{HERE}.{kind}", **fields} for name in names]}


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    Stamp.started.clear()
    Stamp.stopped.clear()


def ran(result: mw.HookResult) -> tuple[str, ...]:
    return tuple(record.plugin for record in result.records)


def test_reload_under_load_every_call_sees_one_whole_chain() -> None:
    first, second = chain("a1", "a2", "a3"), chain("b1", "b2")
    manager = mw.PluginManager(first)
    manager.initialize()
    seen: list[tuple[str, ...]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    issued = [0] * 4

    def caller(slot: int) -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            issued[slot] += 1
            try:
                seen.append(ran(manager.invoke_sync("tool_pre_invoke", PAYLOAD)))
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=caller, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    try:
        for index in range(20):
            manager.reload(second if index % 2 == 0 else first)
            time.sleep(0.005)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    manager.close()
    assert errors == []
    assert len(seen) == sum(issued) > 20  # none lost
    assert set(seen) <= {("a1", "a2", "a3"), ("b1", "b2")}
    assert {("a1", "a2", "a3"), ("b1", "b2")} <= set(seen)


async def test_areload_under_load_from_tasks() -> None:
    first, second = chain("a1", "a2"), chain("b1")
    manager = mw.PluginManager(first)
    await manager.ainitialize()
    seen: list[tuple[str, ...]] = []
    stop = asyncio.Event()

    async def caller() -> None:
        for _ in range(100_000):
            if stop.is_set():
                return
            seen.append(ran(await manager.invoke("tool_pre_invoke", PAYLOAD)))
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(caller()) for _ in range(4)]
    for index in range(20):
        await manager.areload(second if index % 2 == 0 else first)
        await asyncio.sleep(0.002)
    stop.set()
    await asyncio.gather(*tasks)  # none raised
    await manager.aclose()
    assert set(seen) == {("a1", "a2"), ("b1",)}


def test_unchanged_plugins_are_kept_and_retired_ones_stop() -> None:
    manager = mw.PluginManager(chain("keep", "drop"))
    manager.initialize()
    kept = manager.plugins[0]
    manager.reload(chain("keep", "new"))
    assert manager.plugins[0] is kept  # the same object, still running
    assert Stamp.started == ["keep", "drop", "new"]
    assert Stamp.stopped == ["drop"]
    manager.close()
    assert sorted(Stamp.stopped) == ["drop", "keep", "new"]


def test_a_retired_plugin_stops_after_the_call_running_on_it() -> None:
    manager = mw.PluginManager(chain("slow", kind="Slow"))
    manager.initialize()
    done: list[tuple[str, ...]] = []
    call = threading.Thread(target=lambda: done.append(ran(manager.invoke_sync("tool_pre_invoke", PAYLOAD))))
    call.start()
    time.sleep(0.05)
    manager.reload(chain("quick"))
    # The reload waited for the call: it finished on the old chain, then its plugin stopped.
    call.join(timeout=10)
    assert done == [("slow",)]
    assert Stamp.stopped == ["slow"]
    assert ran(manager.invoke_sync("tool_pre_invoke", PAYLOAD)) == ("quick",)
    manager.close()


def test_a_bad_reload_keeps_the_running_chain(tmp_path: Path) -> None:
    manager = mw.PluginManager(chain("a"))
    manager.initialize()
    with pytest.raises(mw.ConfigError) as caught:
        manager.reload({"plugins": [{"name": "x", "kind": "no_such_module_mw.Plugin"}]})
    assert "plugins[0] (x)" in str(caught.value)
    with pytest.raises(mw.ConfigError):
        manager.reload({"plugins": [{"name": "a", "kind": f"{HERE}.Stamp", "mode": "loud"}]})
    with pytest.raises(mw.ConfigError) as caught:
        manager.reload(
            chain("a", "b") | {"plugins": [*chain("a")["plugins"], *chain("b", kind="CannotStart")["plugins"]]}
        )
    assert "plugin 'b' failed to start: the backend is down" in str(caught.value)
    assert ran(manager.invoke_sync("tool_pre_invoke", PAYLOAD)) == ("a",)
    assert [p.name for p in manager.plugins] == ["a"]
    manager.close()


def test_set_mode_until_the_next_reload() -> None:
    manager = mw.PluginManager(chain("deny", kind="Deny"))
    assert not manager.invoke_sync("tool_pre_invoke", PAYLOAD).continue_processing
    manager.set_mode("deny", "permissive")
    result = manager.invoke_sync("tool_pre_invoke", PAYLOAD)
    assert result.continue_processing
    assert result.records[0].outcome is Outcome.VIOLATION_IGNORED
    with pytest.raises(KeyError, match="no plugin is named 'nobody'"):
        manager.set_mode("nobody", "permissive")
    with pytest.raises(ValueError, match="'loud' is not a mode; modes are: enforce"):
        manager.set_mode("deny", "loud")
    manager.reload()  # re-reads the configuration: the runtime change is gone
    assert not manager.invoke_sync("tool_pre_invoke", PAYLOAD).continue_processing
    manager.close()


def write_config(path: Path, *names: str, settings: str = "") -> None:
    entries = "".join(f"  - name: {name}\n    kind: {HERE}.Stamp\n" for name in names)
    path.write_text(f"plugin_settings:\n  watch: true\n  watch_interval: 0.05\n{settings}plugins:\n{entries}")


def wait_for(condition: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_watch_picks_up_a_file_edit_and_survives_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    write_config(path, "first")
    manager = mw.PluginManager(str(path))
    try:
        manager.initialize()
        time.sleep(0.2)
        write_config(path, "second", "third")
        assert wait_for(lambda: [p.name for p in manager.plugins] == ["second", "third"])
        path.write_text("plugins: [oops")  # broken: the running chain stays
        time.sleep(1.0)
        assert [p.name for p in manager.plugins] == ["second", "third"]
        write_config(path, "fourth")
        assert wait_for(lambda: [p.name for p in manager.plugins] == ["fourth"])
    finally:
        manager.close()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_reloads(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    settings = "plugin_settings:\n  reload_on_sighup: true\n"
    path.write_text(f"{settings}plugins:\n  - name: one\n    kind: {HERE}.Stamp\n")
    before = signal.getsignal(signal.SIGHUP)
    manager = mw.PluginManager(str(path))
    try:
        path.write_text(
            f"plugin_settings:\n  reload_on_sighup: true\nplugins:\n  - name: two\n    kind: {HERE}.Stamp\n"
        )
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: [p.name for p in manager.plugins] == ["two"])
    finally:
        manager.close()
    assert signal.getsignal(signal.SIGHUP) is before
