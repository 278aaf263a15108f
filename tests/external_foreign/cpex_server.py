"""
cpex's own external plugin server, as a real process
====================================================

:class:`CpexServer` writes a cpex configuration and starts cpex 0.1.x's MCP
plugin server runtime (``python -m cpex.framework.external.mcp.server.runtime``)
on 127.0.0.1, or describes how to start it over stdio. Every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "cpex.framework.external.mcp.server.runtime"

TAGGER = {
    "name": "tagger",
    "kind": "tests.external_foreign.cpex_plugins.Tagger",
    "hooks": ["tool_pre_invoke", "tool_post_invoke"],
    "mode": "sequential",
    "config": {"tag": "REMOTE"},
}
PII = {
    "name": "PIIFilter",
    "kind": "cpex_pii_filter.pii_filter.PIIFilterPlugin",
    "hooks": ["tool_pre_invoke", "tool_post_invoke", "prompt_pre_fetch"],
    "mode": "sequential",
    "config": {"redaction_text": "[REDACTED]"},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class CpexServer:
    """cpex's MCP plugin server hosting ``plugins`` (cpex plugin entries)."""

    def __init__(self, directory: Path, plugins: list[dict[str, Any]], port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.config_path = directory / "cpex-plugins.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {"plugins": plugins, "plugin_dirs": [], "server_settings": {"host": "127.0.0.1", "port": self.port}}
            )
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "cpex-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def env(self, transport: str) -> dict[str, str]:
        """The environment the runtime reads its settings from."""
        return {
            "PLUGINS_CONFIG_PATH": str(self.config_path),
            "PLUGINS_TRANSPORT": transport,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "ENABLE_METRICS": "false",
        }

    def stdio_entry(self) -> dict[str, Any]:
        """The ``mcp:`` block that starts this configuration over stdio instead."""
        return {"proto": "STDIO", "cmd": [sys.executable, "-m", RUNTIME], "env": self.env("stdio"), "cwd": str(ROOT)}

    def start(self, timeout: float = 30.0) -> CpexServer:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", RUNTIME],
                cwd=self.directory,  # cpex reads a .env from the working directory
                env={**os.environ, **self.env("http")},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"cpex server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"cpex server not ready within {timeout}s:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
