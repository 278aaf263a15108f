"""
``mcp-plugin-mw demo --check``
==============================

Starts the demo on 127.0.0.1, drives it with the official SDK client and
prints, per plugin, what was expected and what the client saw. Returns True
only if every plugin behaved.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from .server import build_app


@dataclasses.dataclass
class Row:
    plugin: str
    action: str
    expected: str
    observed: str = ""
    ok: bool = False


class _AuditLines(logging.Handler):
    """Collects the audit plugin's decision lines."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = orjson.loads(record.getMessage())
        if line.get("event") == "decision":
            self.decisions.append(line)


@contextmanager
def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` on uvicorn in a thread; yields the MCP endpoint URL."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def _drive(url: str, rows: list[Row]) -> None:
    import httpx2
    from mcp import Client, MCPError
    from mcp.client.streamable_http import streamable_http_client

    async def attempt(row: Row, call: Callable[[], Any], judge: Callable[[Any], tuple[str, bool]]) -> None:
        try:
            outcome: Any = await call()
        except MCPError as error:
            outcome = error
        row.observed, row.ok = judge(outcome)

    def text(result: Any) -> str:
        return " ".join(getattr(item, "text", "") for item in getattr(result, "content", []))

    def blocked_by(name: str) -> Callable[[Any], tuple[str, bool]]:
        def judge(outcome: Any) -> tuple[str, bool]:
            if isinstance(outcome, MCPError):
                data = outcome.data or {}
                return f"error {outcome.code} {data.get('plugin_error_code')} from {data.get('plugin_name')}", (
                    data.get("plugin_name") == name
                )
            return f"not blocked: {text(outcome)!r}", False

        return judge

    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(20.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode="auto") as client,
    ):
        pii, deny, rewrite, limit = rows[:4]

        def masked(outcome: Any) -> tuple[str, bool]:
            shown = text(outcome)
            return shown, "ada@example.com" not in shown and "123-45-6789" not in shown and "Ada Lovelace" in shown

        await attempt(pii, lambda: client.call_tool("lookup_customer", {"name": "ada"}), masked)
        await attempt(
            deny,
            lambda: client.call_tool("send_message", {"to": "ops", "text": "here are the launch codes"}),
            blocked_by("deny_list"),
        )

        def rewritten(outcome: Any) -> tuple[str, bool]:
            shown = text(outcome)
            return shown, shown == "review: this is yikes"

        await attempt(rewrite, lambda: client.call_tool("review", {"text": "this is crap"}), rewritten)

        answers: list[str] = []

        async def six_pings() -> Any:
            for _ in range(6):
                try:
                    answers.append(text(await client.call_tool("ping", {})))
                except MCPError as error:
                    return error
            return None

        def limited(outcome: Any) -> tuple[str, bool]:
            if isinstance(outcome, MCPError):
                data = outcome.data or {}
                retry = (data.get("details") or {}).get("retry_after")
                return f"{len(answers)} pongs, then {data.get('plugin_error_code')} (retry after {retry}s)", (
                    len(answers) == 5 and data.get("plugin_name") == "rate_limit"
                )
            return f"{len(answers)} pongs, never limited", False

        await attempt(limit, six_pings, limited)


def run_check(print_line: Callable[[str], None] = print, config: Any = None) -> bool:
    """Start the demo, exercise every plugin, print the table; True if all behaved.

    :param config: the plugins to run instead of the shipped ones.
    """
    # The SDK and its HTTP client log every request at INFO: the table is the report.
    for name in ("mcp", "httpx", "httpx2", "uvicorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    audit = _AuditLines()
    audit_logger = logging.getLogger("mcp_plugin_mw.demo.audit")
    audit_logger.addHandler(audit)
    audit_logger.setLevel(logging.INFO)
    audit_logger.propagate = False
    rows = [
        Row("pii", "lookup_customer('ada')", "email, phone and SSN masked in the result"),
        Row("deny_list", "send_message('...launch codes')", "blocked, JSON-RPC error naming deny_list"),
        Row("rewrite", "review('this is crap')", "crap -> crud -> yikes"),
        Row("rate_limit", "ping() x 6", "5 pongs, the 6th refused with RATE_LIMITED"),
        Row("audit", "every hook call", "a decision line per plugin call"),
    ]
    try:
        with serve(build_app() if config is None else build_app(config)) as url:
            print_line(f"demo server on {url}")
            asyncio.run(_drive(url, rows))
    finally:
        audit_logger.removeHandler(audit)
    decided = sorted({line["plugin"] for line in audit.decisions})
    rows[4].observed = f"{len(audit.decisions)} decisions from {', '.join(decided)}"
    rows[4].ok = {"pii", "deny_list", "rewrite", "rate_limit"} <= set(decided)
    _print_table(rows, print_line)
    return all(row.ok for row in rows)


def _print_table(rows: list[Row], print_line: Callable[[str], None]) -> None:
    table = [("plugin", "call", "expected", "observed", "ok")]
    table += [(r.plugin, r.action, r.expected, r.observed, "yes" if r.ok else "NO") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for index, row in enumerate(table):
        print_line("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print_line("  ".join("-" * width for width in widths))
