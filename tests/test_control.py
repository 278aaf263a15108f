"""
Reloads and mode changes reach every process
============================================

Two worker processes and this one share a control channel on a real
``redis-server`` on 127.0.0.1. A reload and a mode change made here reach
both workers; a reload that one of them cannot apply leaves its chain as it
was while the others go on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mcp_plugin_mw as mw

ROOT = Path(__file__).resolve().parent.parent
STAMP = "tests.test_reload.Stamp"


def write(path: Path, url: str, *names: str) -> None:
    entries = "".join(f"  - name: {name}\n    kind: {STAMP}\n" for name in names)
    path.write_text(f"plugin_settings:\n  control:\n    redis_url: {url}\nplugins:\n{entries}")


def state(status: Path) -> Any:
    try:
        return json.loads(status.read_text())
    except (OSError, ValueError):
        return None


def wait_for(check: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[tuple[list[Path], list[Path]]]:
    configs = [tmp_path / f"worker{n}.yaml" for n in range(2)]
    statuses = [tmp_path / f"worker{n}.json" for n in range(2)]
    for config in configs:
        write(config, redis_url, "a")
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.control_worker", str(c), str(s)], cwd=ROOT)
        for c, s in zip(configs, statuses, strict=True)
    ]
    try:
        assert wait_for(lambda: all(state(s) == [["a", "enforce"]] for s in statuses)), "workers did not start"
        yield configs, statuses
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


def test_reload_and_set_mode_reach_every_worker(
    tmp_path: Path, redis_url: str, workers: tuple[list[Path], list[Path]]
) -> None:
    configs, statuses = workers
    here = tmp_path / "here.yaml"
    write(here, redis_url, "a")
    manager = mw.PluginManager(str(here))
    try:
        for path in [here, *configs]:
            write(path, redis_url, "a", "b")
        manager.reload()
        assert wait_for(lambda: all(state(s) == [["a", "enforce"], ["b", "enforce"]] for s in statuses))
        manager.set_mode("b", "permissive")
        assert wait_for(lambda: all(state(s) == [["a", "enforce"], ["b", "permissive"]] for s in statuses))
        # A worker whose file is now broken keeps its chain; the other reloads.
        configs[0].write_text("plugins: [oops")
        write(configs[1], redis_url, "c")
        write(here, redis_url, "c")
        manager.reload()
        assert wait_for(lambda: state(statuses[1]) == [["c", "enforce"]])
        time.sleep(0.5)
        assert state(statuses[0]) == [["a", "enforce"], ["b", "permissive"]]
    finally:
        manager.close()


def test_a_control_url_that_does_not_parse_is_a_config_error() -> None:
    with pytest.raises(mw.ConfigError, match=r"plugin_settings\.control"):
        mw.PluginManager({"plugin_settings": {"control": {"redis_url": "http://nope"}}})
