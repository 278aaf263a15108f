"""
The demo: an MCP server behind the middleware
=============================================

``mcp-plugin-mw demo`` serves a small MCP server, built with the official
``mcp`` SDK, behind :class:`~mcp_plugin_mw.PluginMiddleware` with the shipped
``plugins.yaml`` (PII masking, a deny list, a regex rewrite, a rate limit and
an audit log). ``mcp-plugin-mw demo --check`` starts it on a free port, drives
it with the SDK client and prints what each plugin did. Needs the ``demo``
extra.
"""
