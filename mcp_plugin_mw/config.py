"""
Configuration loading
=====================

Turns a YAML file, a mapping or a :class:`~mcp_plugin_mw.models.Config`
into a validated ``Config``:

* ``${VAR}`` and ``${VAR:-default}`` are expanded in every string value
  (``$${`` stands for a literal ``${``); a variable that is unset and has no
  default is an error naming it.
* ``MCP_PLUGIN_MW_*`` environment variables override ``plugin_settings``:
  ``ENABLED``, ``PLUGIN_TIMEOUT``, ``MAX_BODY_BYTES``, ``EXCLUDED_URLS``
  (comma-separated), ``DISABLED_PLUGINS`` (comma-separated names, ``*`` for
  all) and ``LOG_LEVEL``; ``CONFIG`` names the file when none is given.
  Precedence: explicit settings > environment > file > defaults.
* ``excluded_urls`` and conditions' ``user_patterns`` must compile on RE2
  (they meet client-controlled paths and user ids); one that does not is an
  error unless ``plugin_settings.allow_backtracking`` is true.
* Every problem is reported at once, each with its place
  (``plugins[2].mode: ...``, or ``MCP_PLUGIN_MW_PLUGIN_TIMEOUT: ...``): in
  one pass over the whole file, the parts that do validate are checked
  further (duplicate names, patterns) and their plugins loaded, so that a
  second run finds nothing the first did not report. An unknown key close to
  a known one says which (``plugin_timout: unknown key (did you mean
  'plugin_timeout'?)``).
* Class paths in a YAML file are looked up in the file's folder first, then
  on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from . import loader
from ._regex import PatternError, compile_user_pattern
from .models import Config, PluginConfig, PluginMode, PluginSettings

__all__ = ["ENV_PREFIX", "ConfigError", "key_hint", "load_config"]

ENV_PREFIX = "MCP_PLUGIN_MW_"

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | Config | None

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Environment variable suffix -> plugin_settings key. Values stay text and are
# converted by the settings model, so a bad one is reported like a bad file.
_ENV_SETTINGS = {
    "ENABLED": "enabled",
    "PLUGIN_TIMEOUT": "plugin_timeout",
    "MAX_BODY_BYTES": "max_body_bytes",
    "EXCLUDED_URLS": "excluded_urls",
    "LOG_LEVEL": "log_level",
}


class ConfigError(ValueError):
    """A configuration that cannot be used, with every problem found.

    :param problems: one line per problem, each starting with where it is.
    :param source: the file or object the configuration came from.
    """

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {problem}" for problem in problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid plugin configuration{where} ({count}):\n{lines}")


def load_config(
    source: ConfigSource = None,
    *,
    settings: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate a configuration.

    :param source: a YAML path, a mapping of the YAML's shape, a ``Config``,
        or None to read the file named by ``MCP_PLUGIN_MW_CONFIG`` (and with
        no such variable, an empty configuration).
    :param settings: ``plugin_settings`` keys that override everything else.
    :param environ: the environment to read; ``os.environ`` by default.
    :raises ConfigError: listing every problem found.
    """
    env = os.environ if environ is None else environ
    label: str | None = None
    base_dir: Path | None = None
    if source is None and env.get(ENV_PREFIX + "CONFIG"):
        source = env[ENV_PREFIX + "CONFIG"]
    if isinstance(source, Config):
        # ``required`` already became ``mode`` when the object was built;
        # dumping both would read back as "give either, not both".
        raw: dict[str, Any] = source.model_dump(
            mode="json", exclude_unset=True, exclude={"plugins": {"__all__": {"required"}}}
        )
        label = "Config object"
    elif isinstance(source, Mapping):
        raw = dict(source)
        label = "mapping"
    elif source is None:
        raw = {}
    else:
        label = os.fspath(source)
        raw = _read_yaml(Path(label))
        base_dir = Path(label).resolve().parent

    problems: list[str] = []
    raw = _expand(raw, "", env, problems)
    if not isinstance(raw, dict):
        raise ConfigError(["<top>: expected a mapping with 'plugins' and 'plugin_settings'"], label)
    origins = _apply_environment(raw, env, settings or {}, problems)
    disabled = _split_list(env.get(ENV_PREFIX + "DISABLED_PLUGINS", ""))
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(error, origins) for error in exc.errors())
        # One pass: what did validate is checked and loaded all the same.
        plugin_settings, entries, names = _valid_parts(raw)
        problems.extend(_check_semantics(plugin_settings, entries, names))
        _unknown_disabled(disabled, [name for _, name in names], problems)
        if plugin_settings is None or plugin_settings.enabled:
            problems.extend(loader.entry_problems(_with_base_dir(entries, base_dir)))
        raise ConfigError(problems, label) from None
    entries = list(enumerate(config.plugins))
    names = [(index, entry.name) for index, entry in entries]
    problems.extend(_check_semantics(config.plugin_settings, entries, names))
    config = _disable(config, disabled, problems)
    if base_dir is not None:
        for entry in config.plugins:
            loader.set_base_dir(entry, base_dir)
    if problems:
        if config.plugin_settings.enabled:
            # The manager would load them next; report their problems now, not on the next run.
            problems.extend(loader.entry_problems(list(enumerate(config.plugins))))
        raise ConfigError(problems, label)
    if config.plugin_settings.log_level:
        logging.getLogger("mcp_plugin_mw").setLevel(config.plugin_settings.log_level.upper())
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"], str(path)) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: YAML syntax error: {problem}"], str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping at the top, got {type(data).__name__}"], str(path))
    return data


def _expand(value: Any, path: str, env: Mapping[str, str], problems: list[str]) -> Any:
    """Expand ``${VAR}`` in every string inside ``value``."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            # As in the shell, ``:-`` takes the default when unset or empty.
            if value is not None and (value or default is None):
                return value
            if default is not None:
                return default
            problems.append(f"{path or '<top>'}: environment variable {name} is not set and has no default")
            return ""

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {key: _expand(item, _join(path, key), env, problems) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, f"{path}[{index}]", env, problems) for index, item in enumerate(value)]
    return value


def _apply_environment(
    raw: dict[str, Any],
    env: Mapping[str, str],
    settings: Mapping[str, Any],
    problems: list[str],
) -> dict[str, str]:
    """Layer env and explicit settings over ``plugin_settings``.

    Returns where each overridden key came from, for error messages.
    """
    section = raw.get("plugin_settings")
    if section is None:
        section = {}
    if not isinstance(section, dict):
        return {}
    section = dict(section)
    origins: dict[str, str] = {}
    for suffix, key in _ENV_SETTINGS.items():
        text = env.get(ENV_PREFIX + suffix, "").strip()
        if text:
            section[key] = _split_list(text) if key == "excluded_urls" else text
            origins[key] = ENV_PREFIX + suffix
    for key, value in settings.items():
        section[key] = value
        origins[key] = f"setting {key!r}"
    raw["plugin_settings"] = section
    return origins


def _valid_parts(
    raw: dict[str, Any],
) -> tuple[PluginSettings | None, list[tuple[int, PluginConfig]], list[tuple[int, str]]]:
    """Of a configuration that does not validate: its settings if they do, the entries that do, every name given."""
    try:
        plugin_settings: PluginSettings | None = PluginSettings.model_validate(raw.get("plugin_settings") or {})
    except ValidationError:
        plugin_settings = None
    items = raw.get("plugins")
    entries: list[tuple[int, PluginConfig]] = []
    names: list[tuple[int, str]] = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
            names.append((index, item["name"]))
        with contextlib.suppress(ValidationError):  # already reported, with the whole configuration's errors
            entries.append((index, PluginConfig.model_validate(item)))
    return plugin_settings, entries, names


def _with_base_dir(entries: list[tuple[int, PluginConfig]], base_dir: Path | None) -> list[tuple[int, PluginConfig]]:
    if base_dir is not None:
        for _, entry in entries:
            loader.set_base_dir(entry, base_dir)
    return entries


def _check_semantics(
    plugin_settings: PluginSettings | None,
    entries: list[tuple[int, PluginConfig]],
    names: list[tuple[int, str]],
) -> list[str]:
    """Problems pydantic's field types cannot see, in the settings (None: invalid) and entries given."""
    problems: list[str] = []
    allow_backtracking = plugin_settings.allow_backtracking if plugin_settings is not None else False
    seen: dict[str, int] = {}
    for index, name in names:
        if name in seen:
            problems.append(f"plugins[{index}].name: duplicate name {name!r} (also plugins[{seen[name]}])")
        seen.setdefault(name, index)
    for index, plugin in entries:
        where = f"plugins[{index}]"
        if plugin.hooks is not None and not plugin.hooks:
            problems.append(f"{where}.hooks: empty list; omit it to use the hooks the class implements")
        for c_index, condition in enumerate(plugin.conditions):
            for p_index, pattern in enumerate(condition.user_patterns or ()):
                place = f"{where}.conditions[{c_index}].user_patterns[{p_index}]"
                problems.extend(_check_regex(pattern, place, allow_backtracking))
    if plugin_settings is None:
        return problems
    for index, pattern in enumerate(plugin_settings.excluded_urls):
        problems.extend(_check_regex(pattern, f"plugin_settings.excluded_urls[{index}]", allow_backtracking))
    level = plugin_settings.log_level
    if level is not None and level.upper() not in logging.getLevelNamesMapping():
        problems.append(f"plugin_settings.log_level: unknown level {level!r}")
    return problems


def _check_regex(pattern: str, where: str, allow_backtracking: bool) -> list[str]:
    # These patterns meet client-controlled text (paths, user ids): RE2, or
    # Python's engine only when plugin_settings.allow_backtracking says so.
    try:
        compile_user_pattern(
            pattern, where=where, allow_backtracking=allow_backtracking, setting="plugin_settings.allow_backtracking"
        )
    except PatternError as exc:
        return [str(exc)]
    return []


def _disable(config: Config, names: list[str], problems: list[str]) -> Config:
    """Apply ``MCP_PLUGIN_MW_DISABLED_PLUGINS``."""
    if not names:
        return config
    _unknown_disabled(names, [plugin.name for plugin in config.plugins], problems)
    everything = "*" in names
    plugins = [
        plugin.model_copy(update={"mode": PluginMode.DISABLED}) if everything or plugin.name in names else plugin
        for plugin in config.plugins
    ]
    return config.model_copy(update={"plugins": plugins})


def _unknown_disabled(names: list[str], known: list[str], problems: list[str]) -> None:
    for name in names:
        if name != "*" and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{ENV_PREFIX}DISABLED_PLUGINS: no plugin named {name!r}{hint}")


def key_hint(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """`` (did you mean 'x'?)`` for an unknown key at ``loc`` inside ``model``, or ``""``.

    ``loc`` is pydantic's: the path to the key, the key last. The known keys
    are the fields of the model found at that place.
    """
    key = loc[-1] if loc else None
    if not isinstance(key, str):
        return ""
    fields = _fields_at(model, loc[:-1])
    if fields is None:
        return ""
    top_setting = model is Config and len(loc) == 1
    if top_setting and key in PluginSettings.model_fields:
        # A setting written at the top, its plugin_settings: forgotten.
        return f" (did you mean 'plugin_settings.{key}'?)"
    # At the top, a misspelt setting is as likely as a misspelt top key:
    # the closest of both is the hint (plugin_timout: plugin_settings.plugin_timeout).
    candidates = {field: field for field in fields}
    if top_setting:
        candidates.update({field: f"plugin_settings.{field}" for field in PluginSettings.model_fields})
    close = difflib.get_close_matches(key, candidates, n=1)
    return f" (did you mean {candidates[close[0]]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], path: tuple[int | str, ...]) -> Collection[str] | None:
    current: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int):
            continue  # an item of a list: the list's model still holds
        field = current.model_fields.get(part) if current is not None else None
        current = _model_in(field.annotation) if field is not None else None
        if current is None:
            return None
    return current.model_fields if current is not None else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def _describe(error: Any, origins: Mapping[str, str]) -> str:
    loc = tuple(error["loc"])
    if len(loc) >= 2 and loc[0] == "plugin_settings" and loc[1] in origins:
        where = f"{origins[loc[1]]} (plugin_settings.{loc[1]})"
    else:
        where = format_location(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key" + key_hint(Config, loc)
    elif error["type"] == "missing":
        message = "required key is missing"
    return f"{where}: {message}"


def format_location(loc: tuple[Any, ...]) -> str:
    """``("plugins", 2, "mode")`` -> ``"plugins[2].mode"``."""
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    return path or "<top>"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _split_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]
