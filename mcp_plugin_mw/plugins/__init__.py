"""
Built-in plugins
================

Each module holds one plugin class, loadable by class path
(``mcp_plugin_mw.plugins.rate_limiter.RateLimiterPlugin``) or by its entry-point
name (``rate_limiter``). Every plugin validates its ``config:`` mapping when it
is constructed, so a bad setting fails at start, naming the field.
"""
