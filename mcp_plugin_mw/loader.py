"""
Plugin loading
==============

Turns a configuration entry into a plugin instance. ``kind`` is one of:

* a class path, ``package.module.ClassName`` or ``package.module:ClassName``;
* the name of an entry point in the group ``mcp_plugin_mw.plugins``
  (installed packages advertise their plugins there);
* a kind registered with :func:`register_kind` (out-of-process plugins);
* a built-in kind: ``cpex`` (a cpex plugin class in process) and ``mcpd``
  (an mcpd plugin executable), imported on first use so that their
  dependencies stay optional. A class path naming a cpex plugin class is
  loaded as ``kind: cpex``.

Every error says which plugin entry failed and why, so that a configuration
with several broken entries is fixed in one pass.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from importlib.metadata import entry_points
from typing import Any

from .models import EntryKeys, PluginConfig, register_entry_keys
from .plugin import Plugin, implemented_hooks

__all__ = ["ENTRY_POINT_GROUP", "PluginLoadError", "import_object", "load_plugin", "register_kind", "resolve_class"]

ENTRY_POINT_GROUP = "mcp_plugin_mw.plugins"

PluginFactory = Callable[[PluginConfig], Plugin]

_KINDS: dict[str, PluginFactory] = {}

_BUILTIN_KINDS = {
    "external": "mcp_plugin_mw.external",
    "cpex": "mcp_plugin_mw.external.cpex",
    "mcpd": "mcp_plugin_mw.external.mcpd",
}
"""Built-in kinds and the module whose ``load(config)`` builds them."""

_KINDS_WITH_OWN_KEYS = ("external", "mcpd")
"""Built-in kinds whose entries carry keys of their own, which the kind's
module gathers under ``external`` with ``split_entry(data, fields)``."""


class PluginLoadError(Exception):
    """A plugin entry that cannot be turned into a plugin."""


def _entry_keys(module_name: str) -> EntryKeys:
    def gather(data: dict[str, Any], fields: Collection[str]) -> dict[str, Any]:
        # Imported on first use: most configurations never name these kinds.
        split: EntryKeys = importlib.import_module(module_name).split_entry
        return split(data, fields)

    return gather


for _kind in _KINDS_WITH_OWN_KEYS:
    register_entry_keys(_kind, _entry_keys(_BUILTIN_KINDS[_kind]))


def register_kind(kind: str, factory: PluginFactory) -> None:
    """Make ``kind`` loadable by calling ``factory(config)``."""
    _KINDS[kind] = factory


def resolve_class(kind: str) -> type[Plugin]:
    """Find the plugin class named by ``kind``.

    :raises PluginLoadError: saying what was looked for and what went wrong.
    """
    target = _find(kind)
    if not (isinstance(target, type) and issubclass(target, Plugin)):
        raise PluginLoadError(f"{kind!r} is not a subclass of mcp_plugin_mw.Plugin")
    return target


def _find(kind: str) -> Any:
    if ":" in kind or "." in kind:
        return import_object(kind)
    return _entry_point(kind)


def _builtin_kind(kind: str) -> PluginFactory | None:
    module_name = _BUILTIN_KINDS.get(kind)
    if module_name is None:
        return None
    factory: PluginFactory = importlib.import_module(module_name).load
    return factory


def load_plugin(config: PluginConfig) -> Plugin:
    """Build the plugin for ``config``, with its hooks and category resolved.

    :raises PluginLoadError: if the class cannot be found, does not implement
        a listed hook, or its constructor raises.
    """
    factory = _KINDS.get(config.kind) or _builtin_kind(config.kind)
    if factory is not None:
        return factory(config)
    cls = _find(config.kind)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        # Imported here: the cpex adapter imports this module.
        from .external import cpex

        if cpex.is_cpex_class(cls):
            return cpex.load(config)
        raise PluginLoadError(f"{config.kind!r} is not a subclass of mcp_plugin_mw.Plugin")
    implemented = implemented_hooks(cls)
    if config.hooks is not None:
        missing = [hook.value for hook in config.hooks if hook not in implemented]
        if missing:
            raise PluginLoadError(
                f"hooks {', '.join(missing)} listed but {cls.__qualname__} does not implement "
                f"{'it' if len(missing) == 1 else 'them'} (it implements: "
                f"{', '.join(hook.value for hook in implemented) or 'none'})"
            )
        hooks = config.hooks
    else:
        hooks = list(cls.default_hooks) if cls.default_hooks is not None else implemented
        if not hooks:
            raise PluginLoadError(f"{cls.__qualname__} implements no hook methods")
    resolved = config.model_copy(update={"hooks": hooks, "category": config.category or cls.default_category})
    try:
        return cls(resolved)
    except Exception as exc:
        raise PluginLoadError(f"{cls.__qualname__}(...) raised {type(exc).__name__}: {exc}") from exc


def import_object(path: str) -> Any:
    """The object a class path names: ``package.module.Name`` or ``package.module:Name``.

    :raises PluginLoadError: saying which module failed to import and why.
    """
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    return _import_attribute(module_name, attribute, path)


def _import_attribute(module_name: str, attribute: str, kind: str) -> Any:
    if not module_name or not attribute:
        raise PluginLoadError(f"{kind!r} is not a class path of the form package.module.ClassName")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginLoadError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise PluginLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None


def _entry_point(name: str) -> Any:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_KINDS))
        raise PluginLoadError(
            f"unknown kind {name!r}: not a class path, not an entry point in {ENTRY_POINT_GROUP!r}"
            f" (installed: {', '.join(known) or 'none'})"
        )
    entry = next(iter(found))
    try:
        return entry.load()
    except Exception as exc:
        raise PluginLoadError(
            f"entry point {name!r} ({entry.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
