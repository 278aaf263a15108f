"""
FastAPI example
===============

A JSON route and a hand-written MCP ``/mcp`` JSON-RPC route, behind
``PluginMiddleware`` with the plugins of ``plugins.yaml``::

    cd contrib/fastapi && uvicorn app:app --host 127.0.0.1 --port 8000

Then try::

    # Shout upper-cases the tool result text: "HELLO"
    curl -s localhost:8000/mcp -H 'content-type: application/json' \\
      -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'

    # BlockWord answers with a JSON-RPC error (-32602, "Plugin Violation: ...")
    curl -s localhost:8000/mcp -H 'content-type: application/json' \\
      -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"forbidden"}}}'

    # Plain HTTP: passes, then 403 application/problem+json
    curl -s localhost:8000/api/echo -H 'content-type: application/json' -d '{"text":"hello"}'
    curl -si localhost:8000/api/echo -H 'content-type: application/json' -d '{"text":"forbidden"}'
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

import mcp_plugin_mw as mw

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # plugins.yaml names classes in plugins_example.py

app = FastAPI(title="mcp-plugin-mw FastAPI example")
app.add_middleware(mw.PluginMiddleware, config=HERE / "plugins.yaml")

TOOLS = [{"name": "echo", "description": "Echo text back", "inputSchema": {"type": "object"}}]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/echo")
def echo(body: dict[str, Any]) -> dict[str, Any]:
    return {"text": body.get("text", "")}


@app.post("/mcp")
async def mcp(request: Request) -> Response:
    """A tiny MCP-style JSON-RPC endpoint with one tool, ``echo``."""
    message = await request.json()
    if "id" not in message:
        return Response(status_code=202)  # a notification
    method, params = message.get("method"), message.get("params") or {}
    if method == "tools/list":
        result: dict[str, Any] = {"tools": TOOLS}
    elif method == "tools/call" and params.get("name") == "echo":
        text = str((params.get("arguments") or {}).get("text", ""))
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    else:
        error = {"code": -32601, "message": f"unknown method or tool: {method}"}
        return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "error": error})
    return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})
