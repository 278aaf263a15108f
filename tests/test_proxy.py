"""
The reverse proxy in front of real MCP servers
==============================================

``mw.proxy_app`` and ``mcp-plugin-mw proxy`` (a real child process) in front
of the official Python SDK server (JSON and SSE responses, stateful and
stateless, 2026-07-28 and 2025-11-25 clients) and of the Node reference
server ``@modelcontextprotocol/server-everything`` in its streamable-HTTP
mode, always driven by the SDK client: a masked e-mail, a deny-list block
with the session usable after it, progress before the result, an upstream
killed mid-stream, a 100 MB upload refused unread; and the proxy's own
rules (hop-by-hop headers, X-Forwarded-*, paths, failures, TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer

import mcp_plugin_mw as mw
from mcp_plugin_mw.proxy import UpstreamProxy
from tests.fail_closed_support import free_socket, uvicorn_on
from tests.test_conformance import cache_root, install, run, unavailable

pytestmark = [pytest.mark.timeout(120)]

EMAIL = "ada.lovelace@example.com"
GUARDS: dict[str, Any] = {
    "plugins": [
        {"name": "pii", "kind": "pii_filter"},
        {"name": "banned", "kind": "deny_list", "config": {"terms": ["forbidden"]}},
    ]
}
BOUND = 20.0

progress_gate = threading.Event()
"""Set by the progress test once its client has seen the first progress notification."""


def build_server(calls: list[str] | None = None) -> MCPServer:
    server = MCPServer("upstream")

    @server.tool()
    def echo(text: str) -> str:
        if calls is not None:
            calls.append(text)
        return text

    @server.tool()
    def contact() -> str:
        return f"write to {EMAIL}"

    @server.tool()
    async def gated(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "first")
        released = await asyncio.to_thread(progress_gate.wait, BOUND)
        await ctx.report_progress(2, 2, "second")
        return "released" if released else "timed out"

    return server


class Recorder:
    """An ASGI wrapper noting the method, path and body size of every request reaching the upstream."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = [scope["method"], scope["path"], 0]
        self.seen.append(entry)  # type: ignore[arg-type]

        async def counting() -> Any:
            message = await receive()
            entry[2] += len(message.get("body", b""))
            return message

        await self.app(scope, counting, send)


@contextlib.contextmanager
def sdk_upstream(
    *, json_response: bool, stateless: bool, calls: list[str] | None = None
) -> Iterator[tuple[str, Recorder]]:
    app = Recorder(build_server(calls).streamable_http_app(json_response=json_response, stateless_http=stateless))
    with uvicorn_on(app) as port:
        yield f"http://127.0.0.1:{port}/mcp", app


@contextlib.asynccontextmanager
async def asgi_client(
    app: mw.PluginMiddleware, base_url: str = "http://proxy", client: tuple[str, int] = ("127.0.0.1", 123)
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the proxy app in this process; the proxy's upstream connections closed after.

    (httpx's ASGITransport sends no lifespan events, which would close them.)
    """
    transport = httpx.ASGITransport(app=app, client=client)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=BOUND) as http:
            yield http
    finally:
        await app.app.aclose()


@contextlib.contextmanager
def proxied(upstream: str, config: Any = GUARDS, **options: Any) -> Iterator[str]:
    app = mw.proxy_app(upstream, config=config, **options)
    with uvicorn_on(app) as port:
        yield f"http://127.0.0.1:{port}{httpx.URL(upstream).path}"


@contextlib.asynccontextmanager
async def sdk_client(url: str, mode: str = "legacy") -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(BOUND)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def texts(result: Any) -> list[str]:
    return [item.text for item in result.content]


async def guarded_session(client: Client, calls: list[str] | None = None) -> None:
    """The checks every upstream must pass behind the proxy."""
    masked = " ".join(texts(await client.call_tool("contact", {})))
    assert EMAIL not in masked
    assert "write to" in masked
    with pytest.raises(MCPError) as blocked:
        await client.call_tool("echo", {"text": "a forbidden plan"})
    assert blocked.value.error.code == -32602
    assert "Plugin Violation" in blocked.value.error.message
    if calls is not None:
        assert calls == []  # the blocked call never reached the server
    # The session is usable after the block.
    assert texts(await client.call_tool("echo", {"text": "hello"})) == ["hello"]


MATRIX = [
    pytest.param(
        json_response,
        stateless,
        mode,
        id=f"{'json' if json_response else 'sse'}-{'stateless' if stateless else 'stateful'}-{mode}",
    )
    for json_response in (True, False)
    for stateless in (False, True)
    for mode in ("legacy", "auto")
]


@pytest.mark.parametrize(("json_response", "stateless", "mode"), MATRIX)
async def test_sdk_server_behind_proxy_app(json_response: bool, stateless: bool, mode: str) -> None:
    calls: list[str] = []
    with (
        sdk_upstream(json_response=json_response, stateless=stateless, calls=calls) as (upstream, recorder),
        proxied(upstream) as url,
    ):
        async with sdk_client(url, mode) as client:
            await guarded_session(client, calls)
    assert calls == ["hello"]
    methods = {method for method, _, _ in recorder.seen}
    assert "POST" in methods
    if mode == "legacy" and not stateless:
        # The session's held-open GET stream and its DELETE on exit went through.
        assert "DELETE" in methods


async def test_progress_arrives_before_the_result() -> None:
    progress_gate.clear()
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(f"progress {message}")
        # The tool waits on this: the result cannot have been sent before the
        # client saw the first progress notification, through the proxy.
        progress_gate.set()

    with sdk_upstream(json_response=False, stateless=False) as (upstream, _), proxied(upstream) as url:
        async with sdk_client(url) as client:
            result = await client.call_tool("gated", {}, progress_callback=on_progress)
            seen.append("result " + texts(result)[0])
    assert seen[0] == "progress first"
    assert seen[-1] == "result released"


# --------------------------------------------------------------------------
# An upstream that dies
# --------------------------------------------------------------------------

UPSTREAM_SCRIPT = """
import asyncio, sys, uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("mortal")

@server.tool()
def echo(text: str) -> str:
    return text

@server.tool()
async def hang(ctx: Context) -> str:
    await ctx.report_progress(1, 2, "started")
    await asyncio.sleep(3600)
    return "never"

app = server.streamable_http_app(json_response=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def wait_for_port(port: int, process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + BOUND
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.05)


def free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@contextlib.contextmanager
def child_upstream(port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", UPSTREAM_SCRIPT, str(port)])
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.kill()
        process.wait(timeout=BOUND)


async def test_upstream_killed_mid_stream() -> None:
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/mcp"
    with proxied(upstream) as url:
        with child_upstream(port) as process:
            async with sdk_client(url) as client:
                started = asyncio.Event()

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    started.set()

                call = asyncio.ensure_future(client.call_tool("hang", {}, progress_callback=on_progress))
                await asyncio.wait_for(started.wait(), BOUND)
                process.kill()
                with pytest.raises(MCPError) as failed:
                    await asyncio.wait_for(call, BOUND)
                assert failed.value.error.code == -32603
                assert "failed before answering" in failed.value.error.message
        # Upstream down: a JSON-RPC request gets a JSON-RPC error under its id, at 502.
        async with httpx.AsyncClient(timeout=BOUND) as http:
            answer = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
                headers={"accept": "application/json, text/event-stream"},
            )
        assert answer.status_code == 502
        assert answer.json()["id"] == 7
        assert answer.json()["error"]["code"] == -32603
        # And back up: the same proxy serves again.
        with child_upstream(port):
            async with sdk_client(url) as client:
                assert texts(await client.call_tool("echo", {"text": "again"})) == ["again"]


async def test_unreachable_and_silent_upstreams() -> None:
    port = free_port()
    app = mw.proxy_app(f"http://127.0.0.1:{port}/mcp", config=GUARDS)
    async with asgi_client(app) as http:
        batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": "b", "method": "ping"}]
        answer = await http.post("/mcp", json=batch)
        assert answer.status_code == 502
        assert [m["id"] for m in answer.json()] == [1, "b"]
        answer = await http.get("/other")
        assert answer.status_code == 502
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 502
    # A server that accepts the connection but never answers: 504 after the read timeout.
    silent = free_socket()
    silent.listen()
    try:
        app = mw.proxy_app(f"http://127.0.0.1:{silent.getsockname()[1]}/mcp", config=GUARDS, read_timeout=0.3)
        async with asgi_client(app) as http:
            answer = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "ping"})
        assert answer.status_code == 504
        assert answer.json()["id"] == 0
    finally:
        silent.close()


# --------------------------------------------------------------------------
# The body size limit: the middleware decides before the proxy reads
# --------------------------------------------------------------------------


async def test_huge_upload_refused_unread() -> None:
    with sdk_upstream(json_response=True, stateless=True) as (upstream, recorder):
        # What the proxy app (the middleware and the proxy in it) takes from the server.
        proxy = Recorder(mw.proxy_app(upstream, config=GUARDS))
        with uvicorn_on(proxy) as port:
            total = 100 * 1024 * 1024
            chunk = b"a" * 65536

            async def body() -> AsyncIterator[bytes]:
                yield b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
                for _ in range(total // len(chunk)):
                    yield chunk
                yield b'"}}}'

            async with httpx.AsyncClient(timeout=BOUND) as http:
                answer = await http.post(
                    f"http://127.0.0.1:{port}/mcp", content=body(), headers={"content-type": "application/json"}
                )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    # The middleware stopped reading just past max_body_bytes (1 MiB); the
    # rest was uvicorn's to discard, and the upstream got none of it.
    [(method, _, read)] = proxy.seen
    assert method == "POST"
    assert read < 2 * 1024 * 1024
    assert recorder.seen == []


# --------------------------------------------------------------------------
# Headers and paths
# --------------------------------------------------------------------------


class Echo:
    """An upstream that answers with what it received (and hop-by-hop headers of its own)."""

    def __init__(self) -> None:
        self.scopes: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.scopes.append(scope)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        document = {
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]],
            "body": body.decode(),
        }
        content = json.dumps(document).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"connection", b"x-upstream-private"),
            (b"x-upstream-private", b"1"),
            (b"proxy-authenticate", b"Basic"),
            (b"mcp-session-id", b"upstream-session"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def test_headers_and_paths() -> None:
    echo = Echo()
    with uvicorn_on(echo) as port:
        app = mw.proxy_app(f"http://127.0.0.1:{port}/mcp", config=GUARDS)
        async with asgi_client(app, "https://proxy.example", ("10.0.0.7", 5555)) as http:
            answer = await http.post(
                "/other/a%20b",
                params={"q": "1"},
                content=b"plain text",
                headers={
                    "connection": "x-private",
                    "x-private": "secret",
                    "keep-alive": "timeout=5",
                    "te": "trailers",
                    "proxy-authorization": "Basic eA==",
                    "authorization": "Bearer token",
                    "mcp-session-id": "abc",
                    "mcp-protocol-version": "2025-11-25",
                    "last-event-id": "42",
                    "x-forwarded-for": "192.0.2.1",
                },
            )
    assert answer.status_code == 200
    got = answer.json()
    assert got["path"] == "/other/a b"
    assert got["query"] == "q=1"
    assert got["body"] == "plain text"
    headers = dict(got["headers"])
    for dropped in ("x-private", "keep-alive", "te", "proxy-authorization"):
        assert dropped not in headers, dropped
    assert headers["connection"] == "keep-alive"  # the proxy's own connection, not the client's
    assert headers["authorization"] == "Bearer token"
    assert headers["mcp-session-id"] == "abc"
    assert headers["mcp-protocol-version"] == "2025-11-25"
    assert headers["last-event-id"] == "42"
    assert headers["host"] == f"127.0.0.1:{port}"
    assert headers["accept-encoding"] == "identity"
    assert headers["x-forwarded-for"] == "192.0.2.1, 10.0.0.7"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "proxy.example"
    # Response side: hop-by-hop dropped, the MCP session header kept.
    assert "x-upstream-private" not in answer.headers
    assert "proxy-authenticate" not in answer.headers
    assert answer.headers["mcp-session-id"] == "upstream-session"


# --------------------------------------------------------------------------
# TLS to the upstream
# --------------------------------------------------------------------------


def make_certificates(directory: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def write_key(key: Any, name: str) -> Path:
        path = directory / name
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return path

    def issue(subject: str, issuer_key: Any, issuer: Any, key: Any, *, ca: bool, san: bool = False) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = issue("test CA", ca_key, ca_name, ca_key, ca=True)
    paths = {"ca": directory / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, san in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, ca_key, ca_name, key, ca=False, san=san)
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}_key"] = write_key(key, f"{name}.key")
    return paths


@contextlib.contextmanager
def tls_upstream(paths: dict[str, Path], *, require_client: bool) -> Iterator[str]:
    import uvicorn

    app = build_server().streamable_http_app(json_response=True, stateless_http=True)
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="critical",
        lifespan="on",
        ssl_certfile=str(paths["server"]),
        ssl_keyfile=str(paths["server_key"]),
        ssl_ca_certs=str(paths["ca"]) if require_client else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if require_client else ssl.CERT_NONE,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + BOUND
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=BOUND)
        sock.close()


async def test_tls_upstream(tmp_path: Path) -> None:
    paths = make_certificates(tmp_path)
    with tls_upstream(paths, require_client=False) as upstream:
        with proxied(upstream, verify=str(paths["ca"])) as url:
            async with sdk_client(url) as client:
                assert texts(await client.call_tool("echo", {"text": "over tls"})) == ["over tls"]
        # Not signed by a CA the proxy trusts: refused, as a JSON-RPC error.
        with proxied(upstream) as url:
            async with httpx.AsyncClient(timeout=BOUND) as http:
                answer = await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
            assert answer.status_code == 502
            assert answer.json()["id"] == 2
    with tls_upstream(paths, require_client=True) as upstream:
        cert = (str(paths["client"]), str(paths["client_key"]))
        with proxied(upstream, verify=str(paths["ca"]), cert=cert) as url:
            async with sdk_client(url) as client:
                assert texts(await client.call_tool("echo", {"text": "mutual"})) == ["mutual"]
        with proxied(upstream, verify=str(paths["ca"])) as url:
            async with httpx.AsyncClient(timeout=BOUND) as http:
                answer = await http.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"})
            assert answer.status_code == 502
            assert answer.json()["id"] == 3


# --------------------------------------------------------------------------
# mcp-plugin-mw proxy, a real child process
# --------------------------------------------------------------------------


@contextlib.contextmanager
def proxy_command(upstream: str, config: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from mcp_plugin_mw.cli import main; main()",
        "proxy",
        "--upstream",
        upstream,
        "--config",
        str(config),
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        os.killpg(process.pid, 15)
        _, stderr = process.communicate(timeout=BOUND)
        assert f"http://127.0.0.1:{port}/mcp -> {upstream}" in stderr


@pytest.mark.parametrize("workers", [1, 2])
async def test_proxy_command(tmp_path: Path, workers: int) -> None:
    config = tmp_path / "plugins.yaml"
    config.write_text(json.dumps(GUARDS))
    calls: list[str] = []
    with (
        sdk_upstream(json_response=False, stateless=False, calls=calls) as (upstream, _),
        proxy_command(upstream, config, "--workers", str(workers)) as url,
    ):
        async with sdk_client(url) as client:
            await guarded_session(client, calls)


# --------------------------------------------------------------------------
# The Node reference server, in its streamable-HTTP mode
# --------------------------------------------------------------------------

EVERYTHING = "@modelcontextprotocol/server-everything"
EVERYTHING_VERSION = "2026.8.31"


@pytest.fixture(scope="session")
def everything_server() -> Path:
    """The reference server's entry point, npm-installed once into the cache (``CI=true``: fail, never skip)."""
    import shutil

    programs = {name: shutil.which(name) for name in ("node", "npm", "npx")}
    missing = [name for name, path in programs.items() if path is None]
    if missing:
        unavailable(f"the Node reference server needs {', '.join(missing)} (Node.js and npm) on the PATH")
    package = f"{EVERYTHING}@{EVERYTHING_VERSION}"
    prefix = cache_root() / ("everything-" + package.lstrip("@").replace("/", "+"))
    root = prefix / "node_modules" / EVERYTHING
    manifest = root / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("version") != EVERYTHING_VERSION:
        shutil.rmtree(prefix, ignore_errors=True)
        install(str(programs["npm"]), prefix, [package])
    entry = root / "dist" / "index.js"
    assert entry.exists(), f"{entry} is missing after npm install"
    assert run([str(programs["node"]), "--version"], timeout=60).returncode == 0
    return entry


@contextlib.contextmanager
def everything_http(server: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        ["node", str(server), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait(timeout=BOUND)


async def test_node_reference_server_behind_proxy(everything_server: Path) -> None:
    with everything_http(everything_server) as upstream, proxied(upstream) as url:
        async with sdk_client(url) as client:
            echoed = " ".join(texts(await client.call_tool("echo", {"message": f"mail {EMAIL}"})))
            assert echoed.startswith("Echo: mail ")
            assert EMAIL not in echoed
            with pytest.raises(MCPError) as blocked:
                await client.call_tool("echo", {"message": "forbidden"})
            assert blocked.value.error.code == -32602
            assert texts(await client.call_tool("echo", {"message": "still here"})) == ["Echo: still here"]


# --------------------------------------------------------------------------
# The upstream client: framing, keep-alive, stale connections
# --------------------------------------------------------------------------


class RawUpstream:
    """A scripted HTTP/1.1 server on 127.0.0.1: ``answer(request_index, head, body)`` gives the raw reply.

    The reply ``None`` closes the connection without answering. Every request
    is recorded as ``(connection_number, head, body)``.
    """

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.handlers: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/mcp"

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        for handler in self.handlers:
            handler.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        with contextlib.suppress(asyncio.CancelledError):
            await self._answer(reader, writer)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lowered = head.lower()
                if b"transfer-encoding: chunked" in lowered:
                    body = b""
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                elif b"content-length:" in lowered:
                    length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                else:
                    body = b""
                self.requests.append((number, head, body))
                reply = self.answer(len(self.requests) - 1, head, body)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower().split(b"\r\n\r\n")[0]:
                    return
        finally:
            self.closed.set()
            writer.close()


def ok(body: bytes = b'{"ok":true}', *extra: bytes) -> bytes:
    headers = b"".join(line + b"\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%b\r\n%b" % (
        len(body),
        headers,
        body,
    )


def in_process(upstream: str, **options: Any) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    return asgi_client(mw.proxy_app(upstream, config={"plugins": []}, **options))


async def test_keep_alive_one_write_and_content_length() -> None:
    raw = RawUpstream(lambda index, head, body: ok(b'{"n":%d}' % index))
    async with raw as upstream, in_process(upstream) as http:
        for index in range(5):
            answer = await http.post("/mcp", content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
            assert answer.json() == {"n": index}
    # One connection for all five, each body with its own length, no chunking.
    assert raw.connections == 1
    for _, head, body in raw.requests:
        assert head.startswith(b"POST /mcp HTTP/1.1\r\n")
        assert b"content-length: %d\r\n" % len(body) in head.lower()
        assert b"transfer-encoding" not in head.lower()
        assert b"connection: keep-alive\r\n" in head.lower()


async def test_streamed_request_bodies() -> None:
    raw = RawUpstream(lambda index, head, body: ok(b'{"got":%d}' % len(body)))

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"one ", b"two ", b"three"):
            yield piece

    async with raw as upstream, in_process(upstream) as http:
        answer = await http.post("/mcp", content=pieces(), headers={"content-type": "text/plain"})
        assert answer.json() == {"got": 13}
        answer = await http.post(
            "/mcp", content=pieces(), headers={"content-type": "text/plain", "content-length": "13"}
        )
        assert answer.json() == {"got": 13}
        answer = await http.get("/mcp")
        assert answer.status_code == 200
    (_, chunked, first), (_, declared, second), (_, get, _) = raw.requests
    assert b"transfer-encoding: chunked\r\n" in chunked.lower()
    assert first == b"one two three"
    assert b"content-length: 13\r\n" in declared.lower()
    assert b"transfer-encoding" not in declared.lower()
    assert second == first
    assert b"content-length" not in get.lower()
    assert b"transfer-encoding" not in get.lower()


async def test_response_framings_relayed() -> None:
    replies = [
        # Chunked, with an extension and a trailer.
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        # An interim 103 before the answer.
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + ok(b"after hints"),
        # No body for a 204.
        b"HTTP/1.1 204 No Content\r\n\r\n",
        # Until the connection closes (HTTP/1.0, no length).
        b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nto the end",
    ]
    raw = RawUpstream(lambda index, head, body: replies[index])
    async with raw as upstream, in_process(upstream) as http:
        answer = await http.get("/mcp")
        assert (answer.status_code, answer.text) == (200, "hello world")
        assert "transfer-encoding" not in answer.headers
        answer = await http.get("/mcp")
        assert (answer.status_code, answer.text) == (200, "after hints")
        answer = await http.get("/mcp")
        assert (answer.status_code, answer.content) == (204, b"")
        answer = await http.get("/mcp")
        assert (answer.status_code, answer.text) == (200, "to the end")
    # Kept alive through the first three; the close-delimited one ended its connection.
    assert [number for number, _, _ in raw.requests] == [1, 1, 1, 1]


async def test_idle_connection_closed_by_the_upstream() -> None:
    def answer_then_hang_up(index: int, head: bytes, body: bytes) -> bytes | None:
        # Connection 1 answers once, then reads the next request and closes unanswered.
        return None if index == 1 else ok(b"%d" % index)

    raw = RawUpstream(answer_then_hang_up)
    async with raw as upstream, in_process(upstream) as http:
        assert (await http.get("/mcp")).text == "0"
        # A GET found its reused connection closed before any answer: sent again on a new one.
        answer = await http.get("/mcp")
        assert (answer.status_code, answer.text) == (200, "2")
    assert [number for number, _, _ in raw.requests] == [1, 1, 2]
    raw = RawUpstream(answer_then_hang_up)
    async with raw as upstream, in_process(upstream) as http:
        assert (await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})).status_code == 200
        # A POST may have been acted on: not sent twice, answered with the JSON-RPC error.
        answer = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert answer.status_code == 502
        assert answer.json()["id"] == 2
    assert len(raw.requests) == 2


async def test_bad_upstream_responses_and_headers() -> None:
    replies = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\ntoo short",
    ]
    raw = RawUpstream(lambda index, head, body: replies[index])
    async with raw as upstream, in_process(upstream) as http:
        assert (await http.get("/mcp")).status_code == 502
        assert (await http.get("/mcp")).status_code == 502
        # The status went out before the body broke: the body ends early.
        answer = await http.get("/mcp")
        assert answer.status_code == 200
        assert answer.content == b"too short"
    # A header value no HTTP/1.1 request can carry is refused, not sent.
    proxy = UpstreamProxy(upstream)
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "headers": [(b"x-evil", b"a\r\nx-injected: 1")],
    }
    await proxy(scope, receive, send)
    await proxy.aclose()
    assert sent[0]["status"] == 502


async def test_max_connections_queue() -> None:
    gate = asyncio.Event()

    class Slow:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    with uvicorn_on(Slow()) as port:
        async with in_process(f"http://127.0.0.1:{port}/mcp", max_connections=1) as http:
            calls = [asyncio.ensure_future(http.get("/mcp")) for _ in range(3)]
            await asyncio.sleep(0.2)
            gate.set()
            answers = await asyncio.wait_for(asyncio.gather(*calls), BOUND)
    assert [answer.text for answer in answers] == ["ok", "ok", "ok"]


async def test_client_gone_closes_the_upstream_stream() -> None:
    event = b"event: message\r\ndata: {}\r\n\r\n"
    stream = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    # The first event, then the stream is held open.
    raw = RawUpstream(lambda index, head, body: stream + b"%x\r\n%b\r\n" % (len(event), event))
    async with raw as upstream:
        with proxied(upstream, config={"plugins": []}) as url:
            async with httpx.AsyncClient(timeout=BOUND) as http, http.stream("GET", url) as answer:
                assert answer.headers["content-type"] == "text/event-stream"
                async for chunk in answer.aiter_raw():
                    assert b"data: {}" in chunk
                    break
            # The client went away: the proxy closed its upstream connection.
            await asyncio.wait_for(raw.closed.wait(), BOUND)
    assert raw.connections == 1


def asgi_scope(method: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "headers": headers,
    }


async def test_header_bytes_and_client_gone_mid_body() -> None:
    raw = RawUpstream(lambda index, head, body: ok())
    async with raw as upstream:
        proxy = UpstreamProxy(upstream)
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        def whole() -> Any:
            """The body, then nothing until the proxy is done."""
            messages = [{"type": "http.request", "body": b"", "more_body": False}]

            async def receive() -> Any:
                if messages:
                    return messages.pop()
                await asyncio.Event().wait()
                return {"type": "http.disconnect"}

            return receive

        # UTF-8 goes as it came; bytes that are not UTF-8 are refused, not re-encoded.
        await proxy(asgi_scope("GET", [(b"x-name", "café".encode())]), whole(), send)
        assert sent[0]["status"] == 200
        assert b"x-name: caf\xc3\xa9\r\n" in raw.requests[0][1]
        sent.clear()
        await proxy(asgi_scope("GET", [(b"x-name", b"caf\xe9")]), whole(), send)
        assert sent[0]["status"] == 502
        sent.clear()
        # Nor a target with a space in it (a second request line in the making).
        scope = asgi_scope("GET", [])
        scope["path"] = scope["raw_path"] = b"/mcp HTTP/1.1\r\nx: y"
        scope["path"] = scope["path"].decode()
        await proxy(scope, whole(), send)
        assert sent[0]["status"] == 502
        assert len(raw.requests) == 1
        sent.clear()
        # The client goes away halfway through its body: nothing is answered,
        # and the upstream never gets a whole request.
        messages = [{"type": "http.request", "body": b'{"jsonrpc":', "more_body": True}]

        async def half() -> Any:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        scope = asgi_scope("POST", [(b"content-type", b"application/json")])
        await asyncio.wait_for(proxy(scope, half, send), BOUND)
        assert sent == []
        await proxy.aclose()
    assert len(raw.requests) == 1


async def test_waiting_for_a_connection_times_out() -> None:
    event = b"event: message\r\ndata: {}\r\n\r\n"
    stream = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    raw = RawUpstream(lambda index, head, body: stream + b"%x\r\n%b\r\n" % (len(event), event))
    async with raw as upstream:
        with proxied(upstream, config={"plugins": []}, max_connections=1, connect_timeout=0.3) as url:
            async with httpx.AsyncClient(timeout=BOUND) as http, http.stream("GET", url) as held:
                chunks = held.aiter_raw()  # kept: leaving an async for would close the stream
                assert b"data: {}" in await chunks.__anext__()
                # The one connection is held by the open stream: the next request waits connect_timeout, then 504.
                started = time.monotonic()
                answer = await http.post(url, json={"jsonrpc": "2.0", "id": 4, "method": "ping"})
                assert answer.status_code == 504
                assert answer.json()["id"] == 4
                assert 0.25 < time.monotonic() - started < BOUND
    assert raw.connections == 1
