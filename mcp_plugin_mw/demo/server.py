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


def python_recipe(url: str) -> str:
    """Shell lines that call the demo with the official SDK client; pasted as they are, they run."""
    # A heredoc, not `python -c`: the code keeps its indentation only at the left margin.
    return f"""\
python - <<'PY'
import asyncio

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main():
    async with Client(streamable_http_client("{url}", http_client=httpx2.AsyncClient())) as client:
        result = await client.call_tool("lookup_customer", {{"name": "ada"}})
        print(result.content[0].text)


asyncio.run(main())
PY"""


_INITIALIZE = (
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
    '"capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
)
_CALL = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"lookup_customer","arguments":{"name":"ada"}}}'


def curl_recipe(url: str) -> str:
    """Shell lines that call the demo with curl: initialize, the session id, initialized, then tools/call."""
    # Streamable HTTP wants both media types in Accept, and every request
    # after initialize needs the session id the server answered with.
    session = '-H "Mcp-Session-Id: $SID" -H "Mcp-Protocol-Version: 2025-11-25"'
    return "\n".join(
        [
            f"URL={url}",
            "ACCEPT='Accept: application/json, text/event-stream'",
            """SID=$(curl -s -D - -o /dev/null "$URL" -H 'Content-Type: application/json' -H "$ACCEPT" \\""",
            f"  -d '{_INITIALIZE}' \\",
            """  | tr -d '\\r' | awk 'tolower($1) == "mcp-session-id:" {print $2}')""",
            f"""curl -s "$URL" -H 'Content-Type: application/json' -H "$ACCEPT" {session} \\""",
            """  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'""",
            f"""curl -s "$URL" -H 'Content-Type: application/json' -H "$ACCEPT" {session} \\""",
            f"  -d '{_CALL}'",
        ]
    )
