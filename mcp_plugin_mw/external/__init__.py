"""
Out-of-process plugins
======================

``kind: external`` plugins run in another process and are reached over the
transport named by ``transport:``. They take the same ``hooks`` (required),
``mode``, ``flow``, ``category``, ``priority``, ``timeout`` and
``conditions`` as native plugins, plus their transport's own keys at the top
level of the entry:

.. code-block:: yaml

    - name: upper
      kind: external
      transport: http                       # a sidecar at a URL
      url: https://plugins.internal:9000
      headers: {Authorization: "Bearer ${TOKEN}"}
      tls: {ca_bundle: /etc/ssl/internal-ca.pem}
      hooks: [tool_pre_invoke]
    - name: heavy
      kind: external
      transport: subprocess                 # a child process we start and restart
      exec: mcp-plugin-mw
      args: [serve-plugin, my.module.Plugin]
      hooks: [tool_pre_invoke, tool_post_invoke]

A transport is one line in :data:`TRANSPORTS`: its name and the
:class:`~mcp_plugin_mw.external.base.RemotePlugin` subclass that serves it,
as ``"module:Class"`` so that the module, and what it imports, loads only
when a configuration uses it. The class's ``options_model`` validates the
transport's keys when the configuration loads (errors name them as written:
``plugins[2].url: ...``); the class is then built with the ``PluginConfig``,
whose ``external`` field holds those keys.

Nothing here is imported by ``import mcp_plugin_mw``; the configuration
imports this package when an entry says ``kind: external``.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..loader import PluginLoadError
from ..models import PluginConfig
from ..plugin import Plugin

__all__ = ["KIND", "TRANSPORTS", "load", "split_entry", "transport_class"]

KIND = "external"

TRANSPORTS: dict[str, str | type[Plugin]] = {
    "http": "mcp_plugin_mw.external.http:HttpPlugin",
    "subprocess": "mcp_plugin_mw.external.subprocess:SubprocessPlugin",
    "mcp": "mcp_plugin_mw.external.mcp:McpPlugin",
}
"""``transport:`` of ``kind: external`` -> the class that serves it."""


def transport_class(transport: Any) -> type[Plugin]:
    """The class serving ``transport``, imported on first use.

    :raises LookupError: with a message fit for the ``transport`` key.
    """
    if transport is None:
        raise LookupError(f"required for kind external (one of: {', '.join(TRANSPORTS)})")
    if not isinstance(transport, str) or transport not in TRANSPORTS:
        raise LookupError(f"unknown transport {transport!r} (one of: {', '.join(TRANSPORTS)})")
    target = TRANSPORTS[transport]
    if not isinstance(target, str):
        return target
    module_name, _, name = target.partition(":")
    try:
        found: type[Plugin] = getattr(importlib.import_module(module_name), name)
    except ImportError as exc:
        raise LookupError(f"cannot load {target}: {exc}") from exc
    return found


def split_entry(data: dict[str, Any], fields: Collection[str]) -> dict[str, Any]:
    """Validate a ``kind: external`` entry's transport keys and gather them in ``external``.

    Called by :class:`~mcp_plugin_mw.models.PluginConfig` before its own
    validation, with its field names. The keys may also come already gathered
    under ``external`` (as a dumped ``PluginConfig`` has them).

    :raises ValidationError: naming each bad key where it was written.
    """
    errors: list[InitErrorDetails] = []
    prefix: tuple[str, ...] = ()
    gathered = data.get("external")
    if gathered is not None:
        prefix = ("external",)
        if not isinstance(gathered, dict):
            errors.append(_error(prefix, "expected a mapping"))
            gathered = {}
    transport = (gathered if gathered is not None else data).get("transport")
    try:
        cls = transport_class(transport)
    except LookupError as exc:
        errors.append(_error((*prefix, "transport"), str(exc)))
        model = None
    else:
        model = getattr(cls, "options_model", None)
    # A key is the transport's if its model declares it or the plugin entry
    # does not (then the model reports it as unknown).
    own = set(model.model_fields) if model is not None else {"transport"}
    taken = [key for key in data if key != "external" and (key in own or key not in fields)]
    options = {key: data[key] for key in taken}
    if gathered is not None:
        if taken:
            errors.append(_error(prefix, "give the transport keys at the top level or under 'external', not both"))
        options = gathered
    if model is not None:
        try:
            model.model_validate(options)
        except ValidationError as exc:
            for error in exc.errors():
                loc = prefix + tuple(error["loc"])
                custom = PydanticCustomError(error["type"], error["msg"])
                errors.append(InitErrorDetails(type=custom, loc=loc, input=error["input"]))
    if data.get("hooks") is None:
        errors.append(_error(("hooks",), f"required for kind {KIND}"))
    if errors:
        raise ValidationError.from_exception_data(PluginConfig.__name__, errors)
    rest = {key: value for key, value in data.items() if key not in taken and key != "external"}
    return {**rest, "external": options}


def _error(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("external_entry", message), loc=loc, input=None)


def load(config: PluginConfig) -> Plugin:
    """Build the plugin for a ``kind: external`` entry (the loader calls this).

    :raises PluginLoadError: if its transport's class cannot be loaded or built.
    """
    options = config.external or {}
    try:
        cls = transport_class(options.get("transport"))
    except LookupError as exc:
        raise PluginLoadError(f"transport: {exc}") from None
    try:
        return cls(config)
    except Exception as exc:
        raise PluginLoadError(f"{cls.__qualname__}(...) raised {type(exc).__name__}: {exc}") from exc
