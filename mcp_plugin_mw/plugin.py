"""
Plugin base class
=================

A plugin is a class with one method per hook it handles, named after the hook
(``tool_pre_invoke``, ``http_post_request``, ...). Each takes the payload and
the plugin's :class:`~mcp_plugin_mw.models.PluginContext` and returns a
:class:`~mcp_plugin_mw.models.PluginResult` (or None, meaning "no opinion").
Hook methods, ``initialize`` and ``shutdown`` may each be ``def`` or
``async def``.

.. code-block:: python

    class Shout(Plugin):
        def tool_post_invoke(self, payload, context):
            ...

A sync hook runs inline on the caller's thread. One that blocks (network I/O
without asyncio, heavy CPU) should set ``blocking = True``, or be configured
with ``run_in_thread: true``, so that it runs in a worker thread where its
timeout holds and an event loop is never stalled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import Any, ClassVar

from .models import Category, HookType, PluginConfig, PluginMode

__all__ = ["Plugin", "PluginStatus", "implemented_hooks"]


@dataclasses.dataclass(slots=True)
class PluginStatus:
    """A plugin's health as reported by :meth:`PluginManager.status`.

    Out-of-process plugins fill in ``healthy``, ``restarts``, ``last_error``
    and ``last_latency`` (seconds); in-process plugins are healthy once loaded.
    """

    name: str
    kind: str
    loaded: bool = True
    healthy: bool = True
    restarts: int = 0
    last_error: str | None = None
    last_latency: float | None = None


class Plugin:
    """Base class for plugins.

    :param config: the plugin's entry from the configuration.
    """

    blocking: ClassVar[bool] = False
    """Run sync hooks in a worker thread (see the module docstring)."""

    default_category: ClassVar[Category] = Category.CONTENT
    """The category used when the configuration does not give one."""

    default_hooks: ClassVar[tuple[HookType, ...] | None] = None
    """The hooks used when the configuration lists none; None means every
    hook the class implements. A plugin that can also work on plain HTTP
    bodies sets this to its MCP hooks, so that on an MCP endpoint it does not
    see each message twice (once as HTTP, once as a tool call) by default."""

    def __init__(self, config: PluginConfig) -> None:
        self._plugin_config = config

    @property
    def name(self) -> str:
        """The plugin's name from the configuration."""
        return self._plugin_config.name

    @property
    def config(self) -> dict[str, Any]:
        """The plugin's own ``config:`` mapping."""
        return self._plugin_config.config

    @property
    def plugin_config(self) -> PluginConfig:
        """The plugin's whole configuration entry."""
        return self._plugin_config

    @property
    def priority(self) -> int:
        """Lower runs first inside the plugin's category."""
        return self._plugin_config.priority

    @property
    def mode(self) -> PluginMode:
        """How violations and failures of this plugin are treated."""
        return self._plugin_config.mode

    @property
    def hooks(self) -> list[HookType]:
        """The hooks this plugin runs on."""
        if self._plugin_config.hooks:
            return self._plugin_config.hooks
        cls = type(self)
        return list(cls.default_hooks) if cls.default_hooks is not None else implemented_hooks(cls)

    def initialize(self) -> Awaitable[None] | None:
        """Acquire resources; called once before the first hook call."""
        return None

    def shutdown(self) -> Awaitable[None] | None:
        """Release resources; called once when the manager closes."""
        return None

    def status(self) -> PluginStatus:
        """This plugin's health; out-of-process plugins override it."""
        return PluginStatus(name=self.name, kind=self._plugin_config.kind)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def implemented_hooks(cls: type[Any]) -> list[HookType]:
    """The hooks for which ``cls`` defines a method, in :class:`HookType` order."""
    return [hook for hook in HookType if callable(getattr(cls, hook.value, None))]
