"""
The stdio wrapper around real MCP servers
=========================================

``mcp-plugin-mw stdio -- COMMAND`` as the server command of the official
SDK's ``stdio_client``, around the SDK's own stdio server and the Node
reference server: tool results, prompts, resources, lists and progress
messages filtered; a block answered by the wrapper (the server never runs
the call); the process rules (stderr, signals, exit status, EOF); and the
relay's line rules, sans-IO (batches, undecodable and overlong lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters, stdio_client

import mcp_plugin_mw as mw
from mcp_plugin_mw import Plugin, PluginContext, PluginResult, ToolListPayload
from mcp_plugin_mw.stdio import StdioRelay, _lines, _TooLong
from tests.test_proxy import everything_server  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "ada.lovelace@example.com"
WRAPPER = [sys.executable, "-c", "from mcp_plugin_mw.cli import main; main()", "stdio"]
BOUND = 20.0


class HideTool(Plugin):
    """Removes the tool named ``hidden`` from every tools/list page."""

    def tool_post_list(self, payload: ToolListPayload, context: PluginContext) -> PluginResult:
        tools = [tool for tool in payload.tools if tool.get("name") != "hidden"]
        if len(tools) == len(payload.tools):
            return PluginResult()
        return PluginResult(modified_payload=payload.model_copy(update={"tools": tools}))


GUARDS: dict[str, Any] = {
    "plugins": [
        {"name": "pii", "kind": "pii_filter"},
        {"name": "banned", "kind": "deny_list", "config": {"terms": ["forbidden"]}},
        {"name": "hide", "kind": "tests.test_stdio.HideTool", "hooks": ["tool_post_list"]},
    ]
}

SERVER = textwrap.dedent(
    f"""
    import sys
    from mcp.server.mcpserver import Context, MCPServer

    calls = sys.argv[1]
    server = MCPServer("stdio-upstream")

    @server.tool()
    def echo(text: str) -> str:
        with open(calls, "a") as f:
            f.write(text + "\\n")
        return text

    @server.tool()
    def hidden() -> str:
        return "you should not see me listed"

    @server.tool()
    async def slow(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "mail {EMAIL} about it")
        return "done"

    @server.prompt()
    def greet(name: str) -> str:
        return f"Hello {{name}}, write to {EMAIL}"

    @server.resource("res://card")
    def card() -> str:
        return "contact: {EMAIL}"

    print("sdk server starting", file=sys.stderr)
    server.run("stdio")
    """
)


def texts(result: Any) -> list[str]:
    return [item.text for item in result.content]


@contextlib.asynccontextmanager
async def wrapped(command: list[str], config: Any, tmp_path: Path, mode: str = "legacy") -> AsyncIterator[Client]:
    config_file = tmp_path / "plugins.yaml"
    config_file.write_text(json.dumps(config))
    args = [*WRAPPER[1:], "--config", str(config_file), "--", *command]
    params = StdioServerParameters(command=WRAPPER[0], args=args, cwd=str(ROOT))
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_stdio_server_wrapped(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    async with wrapped([sys.executable, str(script), str(calls)], GUARDS, tmp_path, mode) as client:
        # A tool result, a prompt, a resource: the e-mail masked.
        echoed = " ".join(texts(await client.call_tool("echo", {"text": f"reach {EMAIL}"})))
        assert echoed.startswith("reach ")
        assert EMAIL not in echoed
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert EMAIL not in json.dumps(prompt.model_dump(mode="json"))
        resource = await client.read_resource("res://card")
        assert EMAIL not in json.dumps(resource.model_dump(mode="json"))
        # A list hook.
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "echo" in names
        assert "hidden" not in names
        # server_message: the progress text filtered before the result.
        seen: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(message or "")

        assert texts(await client.call_tool("slow", {}, progress_callback=on_progress)) == ["done"]
        assert len(seen) == 1
        assert seen[0].startswith("mail ")
        assert EMAIL not in seen[0]
        # A block, answered by the wrapper: the server never ran the call.
        with pytest.raises(MCPError) as blocked:
            await client.call_tool("echo", {"text": "a forbidden plan"})
        assert blocked.value.error.code == -32602
        assert "Plugin Violation" in blocked.value.error.message
        # And the session goes on.
        assert texts(await client.call_tool("echo", {"text": "after"})) == ["after"]
    assert "forbidden" not in calls.read_text()
    assert "after" in calls.read_text()
    # The child's stderr came through.
    assert "sdk server starting" in (tmp_path / "stderr.log").read_text()


async def test_node_reference_server_wrapped(tmp_path: Path, everything_server: Path) -> None:  # noqa: F811
    async with wrapped(["node", str(everything_server), "stdio"], GUARDS, tmp_path) as client:
        echoed = " ".join(texts(await client.call_tool("echo", {"message": f"mail {EMAIL}"})))
        assert echoed.startswith("Echo: mail ")
        assert EMAIL not in echoed
        with pytest.raises(MCPError) as blocked:
            await client.call_tool("echo", {"message": "forbidden"})
        assert blocked.value.error.code == -32602
        assert texts(await client.call_tool("echo", {"message": "still here"})) == ["Echo: still here"]
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "echo" in names


# --------------------------------------------------------------------------
# The process: stdin, stdout, stderr, signals, exit status
# --------------------------------------------------------------------------

ECHO = textwrap.dedent(
    """
    import signal, sys
    def stop(signum, frame):
        print(f"child got signal {signum}", file=sys.stderr, flush=True)
        sys.exit(7)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("child ready", file=sys.stderr, flush=True)
    for line in sys.stdin:
        if line.strip() == '"exit"':
            sys.exit(3)
        sys.stdout.write(line)
        sys.stdout.flush()
    print("child saw EOF", file=sys.stderr, flush=True)
    """
)


@contextlib.contextmanager
def wrapper_process(tmp_path: Path, *options: str, config: Any = None) -> Iterator[subprocess.Popen[bytes]]:
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    if config is not None:
        config_file = tmp_path / "plugins.yaml"
        config_file.write_text(json.dumps(config))
        options = ("--config", str(config_file), *options)
    process = subprocess.Popen(
        [*WRAPPER, *options, "--", sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=BOUND)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def exchange(process: subprocess.Popen[bytes], line: bytes) -> Any:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(line + b"\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def wait_for_stderr(process: subprocess.Popen[bytes], text: bytes) -> bytes:
    assert process.stderr is not None
    seen = b""
    while text not in seen:
        line = process.stderr.readline()
        assert line, f"stderr ended before {text!r}: {seen!r}"
        seen += line
    return seen


def test_eof_stderr_and_exit_status(tmp_path: Path) -> None:
    with wrapper_process(tmp_path, config=GUARDS) as process:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        assert exchange(process, json.dumps(ping).encode()) == ping
        out, err = process.communicate(timeout=BOUND)  # closes stdin: the child's EOF
        assert out == b""
        assert process.returncode == 0
        assert b"child ready" in err
        assert b"child saw EOF" in err
    with wrapper_process(tmp_path) as process:
        process.communicate(b'"exit"\n', timeout=BOUND)
        assert process.returncode == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_forwarded(tmp_path: Path, signum: int) -> None:
    with wrapper_process(tmp_path) as process:
        wait_for_stderr(process, b"child ready")
        process.send_signal(signum)
        assert process.wait(timeout=BOUND) == 7  # the child's status after its handler ran
        assert process.stderr is not None
        assert f"child got signal {signum}".encode() in process.stderr.read()


def test_undecodable_and_overlong_lines(tmp_path: Path) -> None:
    with wrapper_process(tmp_path, "--max-line-bytes", "1024", config=GUARDS) as process:
        wait_for_stderr(process, b"child ready")
        for bad in (b"\xff\xfe{}", b"not json", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"'):
            answer = exchange(process, bad)
            assert answer["error"]["code"] == -32700
            assert answer["id"] is None
        big = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"t": "x" * 5000}},
            }
        )
        answer = exchange(process, big.encode())
        assert answer["id"] == 9
        assert answer["error"]["code"] == -32600
        # The wrapper and the child are fine after each.
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        assert exchange(process, json.dumps(ping).encode()) == ping


# --------------------------------------------------------------------------
# The relay, sans-IO
# --------------------------------------------------------------------------


async def test_overlong_line_read_in_bounded_memory() -> None:
    limit = 1024 * 1024
    chunk = b"x" * 65536
    chunks = [b'{"id": 4, "x": "', *[chunk] * 800, b'"}\n{"id": 5}\n']  # a 50 MiB line, then a short one

    async def read() -> bytes:
        return chunks.pop(0) if chunks else b""

    tracemalloc.start()
    try:
        got = [line async for line in _lines(read, limit)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(got[0], _TooLong)
    assert got[0].prefix.startswith(b'{"id": 4')
    assert got[1:] == [b'{"id": 5}']
    assert peak < 4 * limit


async def test_lines_one_per_chunk_and_split_across_chunks() -> None:
    limit = 10
    chunks = [
        b'{"a":1}\n',  # one whole line: the fast path
        b'{"b":2}\r\n',  # CRLF
        b"x" * 10 + b"\n",  # exactly the limit
        b"y" * 11 + b"\n",  # one over
        b'{"c"',  # split across chunks
        b':3}\n{"d":4}\n',
        b"\n",  # an empty line
        b'{"e":5}',  # no newline before the end
    ]

    async def read() -> bytes:
        return chunks.pop(0) if chunks else b""

    got = [line async for line in _lines(read, limit)]
    assert got[:3] == [b'{"a":1}', b'{"b":2}', b"x" * 10]
    assert isinstance(got[3], _TooLong)
    assert got[3].prefix == b"y" * 11
    assert got[4:] == [b'{"c":3}', b'{"d":4}', b"", b'{"e":5}']


async def test_agreed_protocol_version_reaches_the_hooks() -> None:
    from mcp_plugin_mw.mapping.state import Calls

    wrapper = relay({"plugins": [{"name": "banned", "kind": "deny_list", "config": {"terms": ["forbidden"]}}]})
    active = wrapper._active()
    assert active is not None
    assert wrapper._active() is active  # worked out once for the plugins' set
    assert dict(wrapper._sides(active, Calls()).request.headers).get("mcp-protocol-version") is None
    initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}
    assert (await wrapper.from_client(json.dumps(initialize).encode()))[0]
    answer = {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-11-25"}}
    assert (await wrapper.from_server(json.dumps(answer).encode()))[1]
    headers = dict(wrapper._sides(active, Calls()).request.headers)
    assert headers["mcp-protocol-version"] == "2025-11-25"
    assert headers["content-type"] == "application/json"


def relay(config: Any) -> StdioRelay:
    return StdioRelay(mw.PluginManager(config))


def call(id: Any, name: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def test_batches_match_answers_by_id() -> None:
    pipe = relay(GUARDS)
    batch = [call(1, "echo", text="fine"), call("two", "echo", text="forbidden")]
    to_server, to_client = await pipe.from_client(json.dumps(batch).encode())
    # The blocked member is answered at once; the other goes on alone.
    [blocked] = [json.loads(line) for line in to_client]
    assert blocked["id"] == "two"
    assert blocked["error"]["code"] == -32602
    [forwarded] = [json.loads(line) for line in to_server]
    assert [m["id"] for m in forwarded] == [1]
    # The answer (id spelt "1", as clients match it) meets its call's response hook.
    result = {"content": [{"type": "text", "text": f"mail {EMAIL}"}]}
    answer = [{"jsonrpc": "2.0", "id": "1", "result": result}]
    to_server, to_client = await pipe.from_server(json.dumps(answer).encode())
    assert to_server == []
    [line] = to_client
    assert EMAIL not in line.decode()
    assert json.loads(line)[0]["id"] == "1"
    # Answered once: the same id again matches no request and is dropped.
    assert await pipe.from_server(json.dumps(answer).encode()) == ([], [])
    assert pipe.outstanding == {}


async def test_unwatched_answers_pass_and_unknown_ids_are_dropped() -> None:
    pipe = relay(GUARDS)
    ping = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "ping"}).encode()
    assert await pipe.from_client(ping) == ([ping], [])
    pong = json.dumps({"jsonrpc": "2.0", "id": 0, "result": {}}).encode()
    assert await pipe.from_server(pong) == ([], [pong])
    stray = json.dumps({"jsonrpc": "2.0", "id": 99, "result": {"content": [{"type": "text", "text": EMAIL}]}})
    assert await pipe.from_server(stray.encode()) == ([], [])
    # The server's own notifications meet server_message.
    note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": EMAIL}}
    [], [line] = await pipe.from_server(json.dumps(note).encode())
    assert EMAIL not in line.decode()


async def test_undecodable_server_line_answered_to_the_server() -> None:
    pipe = relay(GUARDS)
    to_server, to_client = await pipe.from_server(b"\xff not json")
    assert to_client == []
    [error] = [json.loads(line) for line in to_server]
    assert error["error"]["code"] == -32700


async def test_client_message_block_answered() -> None:
    class NoCompletions(Plugin):
        def client_message(self, payload: Any, context: PluginContext) -> PluginResult:
            if payload.method == "completion/complete":
                return PluginResult(
                    continue_processing=False, violation=mw.PluginViolation(reason="no", description="no completions")
                )
            return PluginResult()

    manager = mw.PluginManager({})
    manager.register(NoCompletions(mw.PluginConfig(name="nc", kind="x", hooks=["client_message"])))
    pipe = StdioRelay(manager)
    request = {"jsonrpc": "2.0", "id": 5, "method": "completion/complete", "params": {}}
    to_server, to_client = await pipe.from_client(json.dumps(request).encode())
    assert to_server == []
    [answer] = [json.loads(line) for line in to_client]
    assert answer["id"] == 5
    assert answer["error"]["code"] == -32602


async def test_overlong_answer_replaced_by_an_error() -> None:
    pipe = relay(GUARDS)
    await pipe.from_client(json.dumps(call(3, "echo", text="hi")).encode())
    to_server, to_client = pipe.server_line_too_long(b'{"jsonrpc":"2.0","id":3,"result":{"content":[')
    assert to_server == []
    [error] = [json.loads(line) for line in to_client]
    assert error["id"] == 3
    assert error["error"]["code"] == -32603
    assert pipe.outstanding == {}


def test_no_plugins_pass_lines_as_they_came() -> None:
    pipe = relay({})
    line = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}'
    assert asyncio.run(pipe.from_client(line)) == ([line], [])
