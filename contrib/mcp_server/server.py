"""
MCP SDK server example
======================

An ``MCPServer`` (official ``mcp`` SDK) with two tools, a prompt and a
resource, its Streamable HTTP app wrapped in ``PluginMiddleware`` with the
plugins of ``plugins.yaml``. Needs ``pip install 'mcp-plugin-mw[examples]'``
(from a checkout: ``pip install -e '.[examples]'``)::

    cd contrib/mcp_server && uvicorn server:app --host 127.0.0.1 --port 8004

Then run ``python client.py`` next to it, or try by hand (the SDK wants
Host 127.0.0.1 or localhost with a port)::

    H='-H content-type:application/json -H accept:application/json,text/event-stream'
    H="$H -H mcp-protocol-version:2026-07-28 -H mcp-method:tools/call -H mcp-name:echo"
    M='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
      "io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"},
      "io.modelcontextprotocol/clientCapabilities":{}}'

    # Shout upper-cases the result of echo: "HELLO"
    curl -s 127.0.0.1:8004/mcp $H -d '{"jsonrpc":"2.0","id":1,"method":"tools/call",
      "params":{"name":"echo","arguments":{"text":"hello"},'"$M"'}}'

    # BlockWord: a JSON-RPC error -32602 "Plugin Violation: ..."
    curl -s 127.0.0.1:8004/mcp $H -d '{"jsonrpc":"2.0","id":2,"method":"tools/call",
      "params":{"name":"echo","arguments":{"text":"forbidden"},'"$M"'}}'
"""

from __future__ import annotations

from pathlib import Path

from mcp.server.mcpserver import MCPServer

import mcp_plugin_mw as mw

HERE = Path(__file__).parent  # plugins.yaml's class paths are looked up here

server = MCPServer("mcp-plugin-mw example")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged (Shout upper-cases it on the way out)."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers (Shout's condition leaves this tool alone)."""
    return a + b


@server.prompt()
def greet(name: str) -> str:
    """A greeting prompt."""
    return f"Hello, {name}!"


@server.resource("res://motd")
def motd() -> str:
    """The message of the day."""
    return "plugins are watching"


inner = server.streamable_http_app()
app = mw.PluginMiddleware(inner, config=HERE / "plugins.yaml")
"""Run with uvicorn; the SDK app's lifespan passes through the middleware."""
