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

A class path is looked up first in the folder of the YAML file that names it
(:func:`set_base_dir`, which :func:`~mcp_plugin_mw.config.load_config`
calls), then on ``sys.path``; a module already imported under that name is
used as it is. Every error says which plugin entry failed and why (for a
module that cannot be found, where it was looked for), so that a
configuration with several broken entries is fixed in one pass.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import os
import sys
import weakref
from collections.abc import Callable, Collection
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .models import EntryKeys, PluginConfig, register_entry_keys
from .plugin import Plugin, implemented_hooks

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginLoadError",
    "available_kinds",
    "base_dir_of",
    "entry_problems",
    "import_object",
    "load_plugin",
    "register_kind",
    "resolve_class",
    "set_base_dir",
]

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

_BUILTIN_DESCRIPTIONS = {
    "external": "An out-of-process plugin: a sidecar (http), a child process (subprocess) or an MCP server (mcp).",
    "cpex": "An unmodified ContextForge/cpex 0.1.x plugin class, run in process (extra cpex).",
    "mcpd": "An mcpd plugin executable, spoken to over gRPC on a unix socket (extra mcpd).",
}
"""Said by ``mcp-plugin-mw kinds``; the modules are not imported for it, their dependencies being optional."""

_BASE_DIRS: dict[int, Path] = {}
"""The folder of the YAML file each live entry came from, by ``id(entry)``."""


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


def set_base_dir(entry: PluginConfig, directory: str | os.PathLike[str]) -> None:
    """Look up ``entry``'s class path in ``directory`` first (the folder of its YAML file)."""
    key = id(entry)
    if key not in _BASE_DIRS:
        # Keyed by identity, as entries are not hashable; forgotten with the entry.
        weakref.finalize(entry, _BASE_DIRS.pop, key, None)
    _BASE_DIRS[key] = Path(directory)


def base_dir_of(entry: PluginConfig) -> Path | None:
    """The folder given to :func:`set_base_dir` for ``entry``, if any."""
    return _BASE_DIRS.get(id(entry))


def resolve_class(kind: str, base_dir: str | os.PathLike[str] | None = None) -> type[Plugin]:
    """Find the plugin class named by ``kind``, looking in ``base_dir`` first.

    :raises PluginLoadError: saying what was looked for and what went wrong.
    """
    target = _find(kind, base_dir)
    if not (isinstance(target, type) and issubclass(target, Plugin)):
        raise PluginLoadError(f"{kind!r} is not a subclass of mcp_plugin_mw.Plugin")
    return target


def _find(kind: str, base_dir: str | os.PathLike[str] | None = None) -> Any:
    if ":" in kind or "." in kind:
        return import_object(kind, base_dir)
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
    cls = _find(config.kind, base_dir_of(config))
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


def entry_problems(entries: list[tuple[int, PluginConfig]]) -> list[str]:
    """Try to load each ``(index, entry)``; one ``plugins[i] (name): why`` line per entry that fails.

    The plugins built are dropped: this only checks (``initialize`` never runs).
    """
    problems: list[str] = []
    for index, entry in entries:
        try:
            load_plugin(entry)
        except PluginLoadError as exc:
            problems.append(f"plugins[{index}] ({entry.name}): {exc}")
    return problems


def import_object(path: str, base_dir: str | os.PathLike[str] | None = None) -> Any:
    """The object a class path names: ``package.module.Name`` or ``package.module:Name``.

    :param base_dir: a folder searched before ``sys.path`` (a YAML file's folder).
    :raises PluginLoadError: saying which module failed to import and why, and
        where it was looked for.
    """
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    return _import_attribute(module_name, attribute, path, base_dir)


def _import_attribute(module_name: str, attribute: str, kind: str, base_dir: str | os.PathLike[str] | None) -> Any:
    if not module_name or not attribute:
        raise PluginLoadError(f"{kind!r} is not a class path of the form package.module.ClassName")
    try:
        module = _import_module(module_name, base_dir)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        where = f" ({_where_looked(base_dir)})" if exc.name in (top, module_name) else ""
        raise PluginLoadError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}{where}") from exc
    except Exception as exc:
        raise PluginLoadError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        public = [name for name in vars(module) if not name.startswith("_")]
        close = difflib.get_close_matches(attribute, public, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PluginLoadError(f"module {module_name!r} has no attribute {attribute!r}{hint}") from None


def _import_module(module_name: str, base_dir: str | os.PathLike[str] | None) -> Any:
    if base_dir is None or module_name in sys.modules:
        return importlib.import_module(module_name)
    folder = os.fspath(base_dir)
    top = module_name.partition(".")[0]
    if top in sys.modules or importlib.machinery.PathFinder.find_spec(top, [folder]) is None:
        return importlib.import_module(module_name)
    # The folder goes first only while the module (and what it imports at the
    # top) loads, so that it never shadows other imports of the process.
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(module_name)
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def _where_looked(base_dir: str | os.PathLike[str] | None) -> str:
    places = [f"{os.getcwd()} (current directory)" if entry in ("", ".") else entry for entry in sys.path]
    on_path = f"sys.path: {', '.join(places)}"
    if base_dir is None:
        return f"looked on {on_path}"
    return f"looked in the configuration's folder {os.fspath(base_dir)}, then on {on_path}"


def available_kinds() -> list[tuple[str, str]]:
    """Every kind a configuration may name without a class path, with a one-line description.

    The built-in kinds, then the entry points of ``mcp_plugin_mw.plugins``
    (described by the first line of their class's docstring), then kinds
    added with :func:`register_kind`; sorted by name within each group.
    """
    kinds = [(name, description) for name, description in sorted(_BUILTIN_DESCRIPTIONS.items())]
    seen = set(_BUILTIN_DESCRIPTIONS)
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        if entry.name in seen:
            continue
        seen.add(entry.name)
        try:
            target = entry.load()
        except Exception as exc:
            kinds.append((entry.name, f"cannot be loaded ({entry.value}): {type(exc).__name__}: {exc}"))
            continue
        kinds.append((entry.name, _first_line(target.__doc__) or entry.value))
    for name, factory in sorted(_KINDS.items()):
        if name not in seen:
            kinds.append((name, _first_line(factory.__doc__) or "registered with register_kind"))
    return kinds


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


def _entry_point(name: str) -> Any:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_KINDS))
        close = difflib.get_close_matches(name, [*known, *_BUILTIN_KINDS], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PluginLoadError(
            f"unknown kind {name!r}: not a class path, not an entry point in {ENTRY_POINT_GROUP!r}"
            f" (installed: {', '.join(known) or 'none'}){hint}"
        )
    entry = next(iter(found))
    try:
        return entry.load()
    except Exception as exc:
        raise PluginLoadError(
            f"entry point {name!r} ({entry.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
