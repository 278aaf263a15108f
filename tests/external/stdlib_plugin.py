"""
A protocol-1 plugin with nothing but the standard library
=========================================================

Shows that a plugin needs no part of mcp-plugin-mw (so it could be written in
any language), and misbehaves on request for the failure tests. Run as a
script::

    python tests/external/stdlib_plugin.py [options]

It prints ``PORT=<n>`` and serves ``GET /health`` and ``POST /call``. On
``tool_pre_invoke`` the tool name picks the behaviour: ``hang`` (answers
after 30 s), ``garbage`` (200 with non-JSON), ``fail500`` (500 with plain
text), ``error`` (500 with an ``error`` object), ``badshape`` (a result of
the wrong shape), ``noresult`` (neither result nor error); any other name
gets its ``text`` argument upper-cased. With ``MCP_PLUGIN_MW_SERVE_TOKEN``
set, calls without the bearer token get 401.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = 30.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-port", action="store_true", help="never print PORT=")
    parser.add_argument("--first-line", help="print this instead of PORT=")
    parser.add_argument("--exit-early", type=int, help="write to stderr and exit with this code before PORT=")
    parser.add_argument("--unhealthy", action="store_true", help="answer /health with 503")
    parser.add_argument("--chatter", action="store_true", help="write a line to stdout and one to stderr")
    parser.add_argument("--die-after", type=float, help="exit with code 7 after this many seconds")
    parser.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM")
    parser.add_argument("--grandchild", help="start a process that ignores SIGTERM; write its pid here")
    parser.add_argument("--pid-file", help="write our own pid here")
    options = parser.parse_args()

    if options.pid_file:
        write(options.pid_file, os.getpid())
    if options.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if options.grandchild:
        script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
        grandchild = subprocess.Popen([sys.executable, "-c", script])
        write(options.grandchild, grandchild.pid)
    if options.no_port:
        time.sleep(60)
        return
    if options.exit_early is not None:
        sys.stderr.write("stdlib_plugin: giving up early\n")
        sys.stderr.flush()
        sys.exit(options.exit_early)
    if options.first_line:
        print(options.first_line, flush=True)
        time.sleep(60)
        return

    token = os.environ.get("MCP_PLUGIN_MW_SERVE_TOKEN")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(token, options.unhealthy))
    server.daemon_threads = True
    print(f"PORT={server.server_address[1]}", flush=True)
    if options.chatter:
        print("stdlib_plugin: hello on stdout", flush=True)
        sys.stderr.write("stdlib_plugin: hello on stderr\n")
        sys.stderr.flush()
    if options.die_after is not None:
        threading.Timer(options.die_after, os._exit, args=(7,)).start()
    server.serve_forever()


def write(path: str, pid: int) -> None:
    with open(path, "w") as file:
        file.write(str(pid))


def make_handler(token: str | None, unhealthy: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != "/health":
                self.answer(404, b"{}")
            elif unhealthy:
                self.answer(503, b'{"status": "starting"}')
            else:
                self.answer(200, b'{"status": "ok"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if token and self.headers.get("authorization") != f"Bearer {token}":
                self.answer(401, json.dumps({"error": {"code": "UNAUTHORIZED", "message": "bad token"}}).encode())
                return
            message = json.loads(body)
            params = message["params"]
            payload, context = params["payload"], params["context"]
            name = payload.get("name")
            if name == "hang":
                time.sleep(HANG)
            if name == "garbage":
                self.answer(200, b"<html>not json</html>", "text/html")
            elif name == "fail500":
                self.answer(500, b"Internal Server Error", "text/plain")
            elif name == "error":
                self.answer(500, json.dumps({"error": {"code": "NOPE", "message": "nope"}}).encode())
            elif name == "badshape":
                self.answer(200, json.dumps({"result": {"modified_payload": {"name": 5}}}).encode())
            elif name == "noresult":
                self.answer(200, b'{"hello": "world"}')
            else:
                args = {**payload["args"], "text": str(payload["args"].get("text", "")).upper()}
                result = {"modified_payload": {**payload, "args": args}, "metadata": {"by": "stdlib"}}
                reply = {"result": result, "context": {"state": context["state"], "metadata": context["metadata"]}}
                self.answer(200, json.dumps(reply).encode())

    return Handler


if __name__ == "__main__":
    main()
