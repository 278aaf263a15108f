"""
A plugin that does nothing, on every hook
=========================================

:class:`NoOp` has one method per :class:`mcp_plugin_mw.HookType`, generated
from the enum, so a hook added there is covered here without an edit. Each
method returns None ("no opinion") after counting the call in :data:`CALLS`,
so a test can tell that the plugin really ran. Through the middleware with
this plugin the conformance suite must see what it sees from the bare app.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import mcp_plugin_mw
from mcp_plugin_mw import HookType, Plugin, PluginContext

__all__ = ["CALLS", "KIND", "NoOp", "config"]

KIND = f"{__name__}.NoOp"
"""The class path a configuration names the plugin by."""

CALLS: collections.Counter[str] = collections.Counter()
"""Calls per hook name, over every :class:`NoOp` instance; tests clear it."""

_lock = threading.Lock()


class NoOp(Plugin):
    """Runs on every hook and never changes, blocks or fails anything."""


def _hook(name: str) -> Any:
    def hook(self: NoOp, payload: Any, context: PluginContext) -> None:
        with _lock:
            CALLS[name] += 1

    hook.__name__ = name
    hook.__qualname__ = f"NoOp.{name}"
    hook.__doc__ = f"``{name}``: no opinion."
    return hook


for _type in HookType:
    setattr(NoOp, _type.value, _hook(_type.value))
del _type


def config() -> dict[str, Any]:
    """A middleware configuration with :class:`NoOp` subscribed to every hook."""
    return {"plugins": [{"name": "noop", "kind": KIND, "hooks": [hook.value for hook in mcp_plugin_mw.HookType]}]}
