"""
MCP SDK client for the example server
=====================================

Needs ``pip install 'mcp-plugin-mw[examples]'`` (from a checkout:
``pip install -e '.[examples]'``). Start ``uvicorn server:app --host
127.0.0.1 --port 8004`` first, then::

    python client.py            # or: python client.py http://127.0.0.1:8004/mcp

It calls ``echo`` (its text comes back upper-cased by ``Shout``), ``add``,
the ``greet`` prompt and the ``res://motd`` resource, then ``echo`` with a
blocked word, which raises ``MCPError`` with the plugin's violation.
"""

from __future__ import annotations

import asyncio
import sys

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

URL = "http://127.0.0.1:8004/mcp"


async def main(url: str = URL, http_client: httpx2.AsyncClient | None = None) -> list[str]:
    """Run the calls and return what was printed, line by line."""
    lines: list[str] = []
    http = http_client or httpx2.AsyncClient()
    async with http, Client(streamable_http_client(url, http_client=http), mode="auto") as client:
        result = await client.call_tool("echo", {"text": "hello plugins"})
        lines.append(f"echo: {result.content[0].text}")
        result = await client.call_tool("add", {"a": 2, "b": 3})
        lines.append(f"add: {result.content[0].text}")
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        lines.append(f"greet: {prompt.messages[0].content.text}")
        resource = await client.read_resource("res://motd")
        lines.append(f"motd: {resource.contents[0].text}")
        try:
            await client.call_tool("echo", {"text": "this is forbidden"})
        except MCPError as exc:
            lines.append(f"blocked: {exc.code} {exc.message} ({exc.data['plugin_error_code']})")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
