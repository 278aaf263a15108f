"""The demo's MCP server and the middleware in front of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..asgi import PluginMiddleware

CONFIG = Path(__file__).with_name("plugins.yaml")

CUSTOMERS = {
    "ada": "Ada Lovelace, ada@example.com, phone (415) 555-0172, SSN 123-45-6789",
    "alan": "Alan Turing, alan@example.org, card 4111 1111 1111 1111",
}


def build_app(config: Any = None) -> Any:
    """The MCP server's Starlette app wrapped by ``PluginMiddleware``."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("mcp-plugin-mw demo")

    @server.tool()
    def lookup_customer(name: str) -> str:
        """Find a customer record (it holds personal data)."""
        return CUSTOMERS.get(name.lower(), f"no customer named {name}")

    @server.tool()
    def send_message(to: str, text: str) -> str:
        """Send a message; echoes what the server received."""
        return f"sent to {to}: {text}"

    @server.tool()
    def review(text: str) -> str:
        """Review a text; the regex plugin tidies the wording of the answer."""
        return f"review: {text}"

    @server.tool()
    def ping() -> str:
        """Answer pong; rate-limited to 5 calls a minute."""
        return "pong"

    inner = server.streamable_http_app(json_response=False)
    return PluginMiddleware(inner, config=config if config is not None else CONFIG)
