r"""
FastAPI example
===============

A JSON route and a hand-written MCP ``/mcp`` JSON-RPC route, behind
``PluginMiddleware`` with the plugins of ``plugins.yaml``. Needs
``pip install 'mcp-plugin-mw[examples]'`` (from a checkout:
``pip install -e '.[examples]'``)::

    cd contrib/fastapi && uvicorn app:app --host 127.0.0.1 --port 8003

Then try::

    # Shout upper-cases the tool result text: "HELLO"
    curl -s 127.0.0.1:8003/mcp -H 'content-type: application/json' \
      -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'

    # BlockWord answers with a JSON-RPC error (-32602, "Plugin Violation: ...")
    curl -s 127.0.0.1:8003/mcp -H 'content-type: application/json' \
      -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"forbidden"}}}'

    # Plain HTTP: passes, then 403 application/problem+json
    curl -s 127.0.0.1:8003/api/echo -H 'content-type: application/json' -d '{"text":"hello"}'
    curl -si 127.0.0.1:8003/api/echo -H 'content-type: application/json' -d '{"text":"forbidden"}'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

import mcp_plugin_mw as mw

HERE = Path(__file__).parent

# Built here rather than by Starlette on the first lifespan or request: a bad
# plugins.yaml then stops `uvicorn app:app` at import, with every problem,
# instead of a server that answers 500 (plugins.yaml's class paths are looked
# up in this folder).
manager = mw.PluginManager(HERE / "plugins.yaml")

app = FastAPI(title="mcp-plugin-mw FastAPI example")
app.add_middleware(mw.PluginMiddleware, manager=manager)

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
