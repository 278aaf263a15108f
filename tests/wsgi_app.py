"""
A hand-written Flask JSON-RPC app shaped like an MCP server, and a server for it
================================================================================

The MCP SDK has no WSGI server, so :func:`create_app` builds the Streamable
HTTP endpoint by hand: ``POST /mcp`` answers ``tools/call``, ``prompts/get``
and ``resources/read`` with results of the MCP shapes, notifications with 202
and no body, batches (2025-03-26) with an array, and the ``progress`` tool
with a ``text/event-stream`` streamed from a generator. ``GET``, ``DELETE``,
``HEAD`` and ``OPTIONS`` on ``/mcp`` and a few plain JSON routes complete it.

The app records the exact bytes it received and the exact bytes it produced
(:class:`Recorder`), so tests compare both ends of the middleware byte for
byte. Responses are written with :func:`json.dumps` and ``indent=1``, never
the compact form the middleware re-encodes with, so any re-encoding shows.

:func:`serve` runs a WSGI app on werkzeug's threaded server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, make_server

BOUND = 10.0
"""Seconds any wait in the WSGI tests lasts at most."""


@dataclasses.dataclass
class Received:
    """One request as the app saw it."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    content_length: str | None
    remote_user: str | None


@dataclasses.dataclass
class Recorder:
    """What the app received and produced, in order; thread-safe."""

    received: list[Received] = dataclasses.field(default_factory=list)
    produced: list[bytes] = dataclasses.field(default_factory=list)
    gates: dict[str, threading.Event] = dataclasses.field(default_factory=dict)
    """``progress`` calls whose ``gate`` argument names an event wait on it after the first event."""
    gate_timeouts: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add_received(self, item: Received) -> None:
        with self.lock:
            self.received.append(item)

    def add_produced(self, body: bytes) -> None:
        with self.lock:
            self.produced.append(body)

    @property
    def last(self) -> Received:
        with self.lock:
            return self.received[-1]

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())


def dumps(value: Any) -> bytes:
    """The app's own JSON formatting: indented, non-ASCII kept, newline at the end."""
    return json.dumps(value, indent=1, ensure_ascii=False).encode() + b"\n"


def result(request_id: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def sse_event(message: Any) -> bytes:
    """An event as the MCP SDK writes it."""
    return b"event: message\r\ndata: " + json.dumps(message).encode() + b"\r\n\r\n"


PING = b": ping\r\n\r\n"


def progress_events(request_id: Any, token: Any) -> list[bytes]:
    """The chunks the ``progress`` tool streams, in order, without waiting."""

    def note(progress: int) -> bytes:
        params = {"progressToken": token, "progress": progress, "total": 2, "message": f"step {progress}"}
        return sse_event({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

    final = result(request_id, {"content": [{"type": "text", "text": "done"}], "structuredContent": {"steps": 2}})
    return [note(1), PING, note(2), PING, sse_event(final)]


def handle(message: Any) -> dict[str, Any] | None:
    """The response to one JSON-RPC message; None for a notification or a client response."""
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        if isinstance(message, dict) and ("result" in message or "error" in message):
            return None
        return error(None, -32600, "Invalid Request")
    if "id" not in message:
        return None
    request_id, method, params = message["id"], message["method"], message.get("params") or {}
    if method == "tools/call":
        name, arguments = params.get("name"), params.get("arguments") or {}
        if name == "echo":
            text = str(arguments.get("text", ""))
            return result(
                request_id,
                {"content": [{"type": "text", "text": text}], "structuredContent": {"arguments": arguments}},
            )
        return result(request_id, {"content": [{"type": "text", "text": f"Unknown tool: {name}"}], "isError": True})
    if method == "prompts/get":
        topic = (params.get("arguments") or {}).get("topic", "nothing")
        text = f"Tell me about {topic}"
        return result(
            request_id,
            {
                "description": params.get("name"),
                "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
            },
        )
    if method == "resources/read":
        uri = params.get("uri")
        return result(request_id, {"contents": [{"uri": uri, "mimeType": "text/plain", "text": f"contents of {uri}"}]})
    if method == "ping":
        return result(request_id, {})
    return error(request_id, -32601, f"Method not found: {method}")


def create_app(recorder: Recorder) -> Flask:
    """The MCP-shaped Flask app; ``recorder`` gets every request and response body."""
    app = Flask(__name__)

    @app.before_request
    def record_request() -> None:
        recorder.add_received(
            Received(
                method=request.method,
                path=request.path,
                query_string=request.query_string.decode("latin-1"),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=request.get_data(cache=True),
                content_length=request.environ.get("CONTENT_LENGTH"),
                remote_user=request.environ.get("REMOTE_USER"),
            )
        )

    @app.after_request
    def record_response(response: Response) -> Response:
        if not response.is_streamed:
            recorder.add_produced(response.get_data())
        return response

    def json_response(value: Any, status: int = 200) -> Response:
        return Response(dumps(value), status=status, content_type="application/json")

    @app.route("/mcp", methods=["POST"], provide_automatic_options=False)
    def mcp_post() -> Response:
        raw = request.get_data(cache=True)
        try:
            document = json.loads(raw)
        except ValueError:
            return json_response(error(None, -32700, "Parse error"), status=400)
        if isinstance(document, list):
            answers = [answer for answer in map(handle, document) if answer is not None]
            return json_response(answers) if answers else Response(status=202)
        if (
            isinstance(document, dict)
            and document.get("method") == "tools/call"
            and "id" in document
            and (document.get("params") or {}).get("name") == "progress"
        ):
            return progress_response(document)
        answer = handle(document)
        return json_response(answer) if answer is not None else Response(status=202)

    def progress_response(document: dict[str, Any]) -> Response:
        params = document.get("params") or {}
        arguments = params.get("arguments") or {}
        token = (params.get("_meta") or {}).get("progressToken", "tok")
        gate_name = arguments.get("gate")
        gate = recorder.gate(gate_name) if isinstance(gate_name, str) else None
        chunks = progress_events(document["id"], token)

        def generate() -> Iterator[bytes]:
            produced = bytearray()
            try:
                for index, chunk in enumerate(chunks):
                    produced += chunk
                    yield chunk
                    if index == 0 and gate is not None and not gate.wait(BOUND):
                        recorder.gate_timeouts.append(str(gate_name))
            finally:
                recorder.add_produced(bytes(produced))

        return Response(generate(), content_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.route("/mcp", methods=["GET", "HEAD", "DELETE", "OPTIONS"])
    def mcp_other() -> Response:
        if request.method == "GET":
            return Response(PING, content_type="text/event-stream")
        if request.method == "HEAD":
            # An empty body, so the length the headers give is the length sent.
            return Response(b"", status=200, headers={"X-Head": "yes"})
        # 200 rather than 204: werkzeug drops Content-Length from a 204 and its
        # own LintMiddleware then warns that the length is not 0.
        if request.method == "DELETE":
            return Response(b"", status=200)
        return Response(b"", status=200, headers={"Allow": "GET, POST, DELETE, HEAD, OPTIONS"})

    @app.post("/api/echo")
    def api_echo() -> Response:
        return json_response({"received": request.get_json(silent=True)})

    @app.get("/api/info")
    def api_info() -> Response:
        return json_response({"service": "demo", "path": request.path})

    @app.route("/api/admin", methods=["GET", "POST"])
    def api_admin() -> Response:
        return json_response({"admin": True})

    @app.route("/api/teapot", methods=["GET", "POST"])
    def api_teapot() -> Response:
        return json_response({"teapot": True})

    @app.get("/health")
    def health() -> Response:
        return json_response({"ok": True})

    return app


class Server:
    """A WSGI app on werkzeug's threaded server on 127.0.0.1, on a free port."""

    def __init__(self, app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(BOUND)
        assert not self.thread.is_alive(), "the server thread did not stop"
