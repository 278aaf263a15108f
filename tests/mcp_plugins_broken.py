"""A plugin that always raises, for the error-path tests."""

from __future__ import annotations

from mcp_plugin_mw import Plugin, PluginContext, PluginResult, ToolPreInvokePayload


class Broken(Plugin):
    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult:
        raise RuntimeError("kaboom: internal detail")
