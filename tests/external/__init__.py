"""
Helpers for the external-plugin tests
=====================================

Real processes on 127.0.0.1: :func:`start_server` runs a protocol-1 server
(``serve-plugin`` or :mod:`tests.external.stdlib_plugin`) the way a sidecar
runs, and every wait here is bounded by ``BOUND``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.sample_plugins import BOUND

ROOT = Path(__file__).resolve().parents[2]
STDLIB_PLUGIN = str(Path(__file__).with_name("stdlib_plugin.py"))
CLI = [sys.executable, "-c", "from mcp_plugin_mw.cli import main; main()"]
"""``mcp-plugin-mw`` run by this interpreter, whatever PATH holds."""
SERVE_PLUGIN = [*CLI, "serve-plugin"]


class Server:
    """A protocol-1 server process started by a test, in its own process group."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            process_group=0,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], BOUND)
        line = self.process.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT="):
            self.stop()
            raise RuntimeError(f"{argv}: expected PORT=<n>, got {line!r}")
        self.port = int(line.strip().removeprefix("PORT="))
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Kill the whole group and reap the process."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(BOUND)
        if self.process.stdout is not None:
            self.process.stdout.close()


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = BOUND) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """Whether process ``pid`` no longer runs.

    A zombie counts as gone: it runs no code, and an orphan's zombie waits for
    init to reap it, which some container inits never do.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"
