"""
cpex plugins in process
=======================

Runs an unmodified ContextForge/cpex 0.1.x plugin class (for example PyPI's
``cpex-pii-filter``) on our hooks, in process:

.. code-block:: yaml

    plugins:
      - name: pii
        kind: cpex                                   # or the class path itself as kind
        plugin: cpex_pii_filter.pii_filter.PIIFilterPlugin
        hooks: [tool_pre_invoke, tool_post_invoke]   # default: every hook the class handles
        config: {redaction_text: "[REDACTED]"}       # the cpex plugin's own config

Mode, flow, category, priority, timeout and conditions are ours and work as
for native plugins; the cpex plugin is built with ``mode: sequential`` and its
``config``. Each call converts our payload to cpex's pydantic payload class,
our contexts to cpex's (the ``state`` and ``metadata`` dicts are shared, so a
plugin's state survives from the pre to the post hook), and cpex's result and
violation back to ours.

Shapes differ from what ContextForge hands its plugins in a few places:

* ``prompt_post_fetch``: plugins read the result's attributes
  (``result.messages[0].content.text``); in process the JSON-RPC result is
  wrapped in :class:`PromptResult`, and unwrapped again.
* ``resource_post_fetch``: ContextForge hands a plugin one resource content
  object (``.text`` / ``.blob``), not the JSON-RPC result; the hook is called
  once per item of ``contents``.
* ``http_pre_request`` / ``http_post_request``: cpex payloads carry headers as
  a mapping and no body; changed headers (and status) are mapped back.
* Contexts: cpex's ``GlobalContext`` and ``PluginContext`` are pydantic models.

The plain-value conversions here are shared with the ``mcp`` transport, which
sends the same shapes as JSON.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..loader import PluginLoadError, import_object
from ..models import (
    PAYLOAD_TYPES,
    Category,
    GlobalContext,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PluginConfig,
    PluginContext,
    PluginError,
    PluginResult,
    PluginViolation,
    ResourcePostFetchPayload,
)
from ..plugin import Plugin

__all__ = [
    "CpexPlugin",
    "ResourceContent",
    "context_fields",
    "from_cpex_fields",
    "is_cpex_class",
    "load",
    "resource_items",
    "result_from_fields",
    "to_cpex_fields",
    "violation_from_fields",
]

_CPEX_BASE = "cpex.framework.base.Plugin"
_INSTALL_HINT = "kind 'cpex' needs the cpex package: pip install 'mcp-plugin-mw[cpex]'"


# --------------------------------------------------------------------------
# Shapes shared with the mcp transport (no cpex import needed)
# --------------------------------------------------------------------------


class ResourceContent(BaseModel):
    """One resource content item as ContextForge hands it to a plugin.

    Plugins read ``.text`` (or ``.blob``) and return a copy made with
    ``model_copy(update=...)``.
    """

    model_config = ConfigDict(extra="allow")

    type: str = "resource"
    uri: str
    mime_type: str | None = None
    text: str | None = None
    blob: str | None = None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PromptContent(_Open):
    """One message content of a prompt result (``.type``, ``.text``, the rest as extras)."""

    type: str = "text"
    text: str | None = None


class PromptMessage(_Open):
    """One message of a prompt result."""

    role: str
    content: PromptContent


class PromptResult(_Open):
    """A ``prompts/get`` result with attribute access, as ContextForge hands it to a plugin."""

    messages: list[PromptMessage]
    description: str | None = None


def resource_items(payload: ResourcePostFetchPayload) -> list[dict[str, Any]] | None:
    """The ``contents`` items of a ``resources/read`` result, or None if it has another shape."""
    content = payload.content
    if not isinstance(content, dict):
        return None
    items = content.get("contents")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None
    return items


def item_fields(item: Mapping[str, Any], uri: str) -> dict[str, Any]:
    """A wire ``contents`` item as :class:`ResourceContent` fields."""
    return {
        "type": "resource",
        "uri": item.get("uri", uri),
        "mime_type": item.get("mimeType"),
        "text": item.get("text"),
        "blob": item.get("blob"),
    }


def item_from_fields(original: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The wire item ``original`` with the changes a plugin made to its fields."""
    item = dict(original)
    for name, wire in (("uri", "uri"), ("mime_type", "mimeType"), ("text", "text"), ("blob", "blob")):
        if name in fields and fields[name] != original.get(wire):
            if fields[name] is None:
                item.pop(wire, None)
            else:
                item[wire] = fields[name]
    return item


def to_cpex_fields(hook: HookType, payload: Any) -> dict[str, Any]:
    """The fields of cpex's payload for ``hook``, from ours (plain values)."""
    if hook is HookType.HTTP_PRE_REQUEST or hook is HookType.HTTP_POST_REQUEST:
        return _http_fields(hook, payload)
    return dict(payload.__dict__)


def from_cpex_fields(hook: HookType, original: Any, fields: Mapping[str, Any]) -> Any:
    """Our payload for ``hook`` from the fields of a cpex payload a plugin returned."""
    if hook is HookType.HTTP_PRE_REQUEST or hook is HookType.HTTP_POST_REQUEST:
        return _http_from_fields(original, fields)
    model = PAYLOAD_TYPES[hook]
    values = {name: fields[name] for name in model.model_fields if name in fields}
    return original.model_copy(update=values)


def _http_fields(hook: HookType, payload: HttpPreRequestPayload | HttpPostRequestPayload) -> dict[str, Any]:
    if isinstance(payload, HttpPreRequestPayload):
        host, port = _split_client(payload.client)
        return {
            "path": payload.path,
            "method": payload.method,
            "client_host": host,
            "client_port": port,
            "headers": _header_map(payload.headers),
        }
    return {
        "path": payload.path,
        "method": payload.method,
        "client_host": None,
        "client_port": None,
        "headers": {},
        "response_headers": _header_map(payload.headers),
        "status_code": payload.status_code,
    }


def _http_from_fields(original: HttpPreRequestPayload | HttpPostRequestPayload, fields: Mapping[str, Any]) -> Any:
    if isinstance(original, HttpPreRequestPayload):
        headers = _merge_headers(original.headers, _unwrap(fields.get("headers")))
        return original.model_copy(update={"headers": headers, "path": fields.get("path") or original.path})
    headers = _merge_headers(original.headers, _unwrap(fields.get("response_headers")))
    status = fields.get("status_code") or original.status_code
    return original.model_copy(update={"headers": headers, "status_code": status})


def _split_client(client: str | None) -> tuple[str | None, int | None]:
    if not client:
        return None, None
    host, _, port = client.rpartition(":")
    return (host, int(port)) if port.isdigit() and host else (client, None)


def _header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    # A mapping has one value per name: repeated fields are joined as HTTP
    # allows (RFC 9110 5.3).
    mapped: dict[str, str] = {}
    for name, value in headers:
        mapped[name] = f"{mapped[name]}, {value}" if name in mapped else value
    return mapped


def _merge_headers(original: list[tuple[str, str]], mapped: Any) -> list[tuple[str, str]]:
    """``original`` changed to match the mapping a plugin returned.

    Names whose joined value is unchanged keep their original fields (and
    order); changed names get the new value; names left out are removed.
    """
    if not isinstance(mapped, Mapping):
        return original
    new = {str(name).lower(): str(value) for name, value in mapped.items()}
    before = _header_map(original)
    kept = [(name, value) for name, value in original if name in new and new[name] == before[name]]
    added = [(name, value) for name, value in new.items() if before.get(name) != value]
    return kept + added


def _unwrap(value: Any) -> Any:
    # cpex wraps header mappings in a pydantic RootModel.
    return getattr(value, "root", value)


def context_fields(context: PluginContext) -> dict[str, Any]:
    """Our plugin context as the fields of cpex's ``PluginContext`` (plain values)."""
    return {
        "state": context.state,
        "global_context": _global_fields(context.global_context),
        "metadata": context.metadata,
    }


def _global_fields(context: GlobalContext) -> dict[str, Any]:
    return {
        "request_id": context.request_id,
        "user": context.user,
        "user_context": None,
        "tenant_id": context.tenant_id,
        "server_id": context.server_id,
        "content_type": context.content_type,
        "state": context.state,
        "metadata": context.metadata,
    }


def violation_from_fields(fields: Mapping[str, Any]) -> PluginViolation:
    """Our violation from the fields of a cpex ``PluginViolation``."""
    details = fields.get("details")
    return PluginViolation(
        reason=str(fields.get("reason") or "Blocked"),
        description=str(fields.get("description") or ""),
        code=str(fields.get("code") or "BLOCKED"),
        details=dict(details) if isinstance(details, Mapping) else {},
        http_status_code=fields.get("http_status_code"),
        mcp_error_code=fields.get("mcp_error_code"),
    )


def result_from_fields(
    hook: HookType,
    payload: Any,
    *,
    continue_processing: bool,
    modified: Mapping[str, Any] | None,
    violation: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> PluginResult:
    """Our result from the parts of a cpex ``PluginResult``."""
    return PluginResult(
        continue_processing=continue_processing,
        modified_payload=from_cpex_fields(hook, payload, modified) if modified is not None else None,
        violation=violation_from_fields(violation) if violation is not None else None,
        metadata=dict(metadata or {}),
    )


def is_cpex_class(target: Any) -> bool:
    """Whether ``target`` is a cpex plugin class (checked without importing cpex)."""
    return isinstance(target, type) and any(f"{c.__module__}.{c.__qualname__}" == _CPEX_BASE for c in target.__mro__)


# --------------------------------------------------------------------------
# The in-process adapter
# --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Hook:
    """A cpex hook method bound for calls: the method, its arity and payload class."""

    method: Callable[..., Awaitable[Any]]
    extensions: bool
    payload_type: type[BaseModel]


class CpexPlugin(Plugin):
    """An unmodified cpex plugin class running on our hooks.

    Built by :func:`load`; ``plugin`` is the cpex plugin instance.
    """

    def __init__(self, config: PluginConfig, plugin: Any, hooks: dict[HookType, _Hook], cpex: Any) -> None:
        super().__init__(config)
        self.plugin = plugin
        self._hooks = hooks
        self._cpex = cpex
        self._violation_error: type[Exception] = cpex.PluginViolationError
        self._plugin_error: type[Exception] = cpex.PluginError

    async def initialize(self) -> None:
        """Run the cpex plugin's ``initialize``."""
        await self.plugin.initialize()

    async def shutdown(self) -> None:
        """Run the cpex plugin's ``shutdown``."""
        await self.plugin.shutdown()

    async def _call(self, hook: HookType, payload: Any, context: PluginContext) -> PluginResult | None:
        if hook is HookType.RESOURCE_POST_FETCH:
            items = resource_items(payload)
            if items is not None:
                return await self._per_item(payload, items, context)
        entry = self._hooks[hook]
        fields = to_cpex_fields(hook, payload)
        if hook is HookType.PROMPT_POST_FETCH:
            fields["result"] = _prompt_result(fields["result"])
        if hook is HookType.HTTP_PRE_REQUEST or hook is HookType.HTTP_POST_REQUEST:
            cpex_payload = entry.payload_type.model_validate(fields)  # headers become cpex's RootModel
        else:
            # Not validated: our values are wire JSON, which cpex's annotations
            # (``args: dict[str, str]`` on prompts) may be narrower than.
            cpex_payload = _construct(entry.payload_type, fields)
        result = await self._invoke(entry, cpex_payload, context)
        if isinstance(result, PluginResult) or result is None:
            return result
        modified = dict(result.modified_payload.__dict__) if result.modified_payload is not None else None
        if modified is not None and isinstance(modified.get("result"), PromptResult):
            modified["result"] = modified["result"].model_dump(exclude_unset=True)
        return result_from_fields(
            hook,
            payload,
            continue_processing=result.continue_processing,
            modified=modified,
            violation=dict(result.violation.__dict__) if result.violation is not None else None,
            metadata=result.metadata,
        )

    async def _per_item(
        self, payload: ResourcePostFetchPayload, items: list[dict[str, Any]], context: PluginContext
    ) -> PluginResult | None:
        entry = self._hooks[HookType.RESOURCE_POST_FETCH]
        changed: list[dict[str, Any]] = []
        metadata: dict[str, Any] = {}
        modified = False
        for item in items:
            content = ResourceContent(**item_fields(item, payload.uri))
            cpex_payload = _construct(entry.payload_type, {"uri": payload.uri, "content": content})
            result = await self._invoke(entry, cpex_payload, context)
            if isinstance(result, PluginResult):
                return result  # a violation raised as an exception
            if result is None:
                changed.append(item)
                continue
            metadata.update(result.metadata or {})
            if not result.continue_processing:
                violation = result.violation
                return PluginResult(
                    continue_processing=False,
                    violation=violation_from_fields(violation.__dict__) if violation is not None else None,
                    metadata=metadata,
                )
            new = result.modified_payload.content if result.modified_payload is not None else content
            if isinstance(new, BaseModel) and new is not content:
                item = item_from_fields(item, new.__dict__ | (new.model_extra or {}))
                modified = True
            changed.append(item)
        if not modified:
            return PluginResult(metadata=metadata) if metadata else None
        content_result = {**payload.content, "contents": changed}
        return PluginResult(modified_payload=payload.model_copy(update={"content": content_result}), metadata=metadata)

    async def _invoke(self, entry: _Hook, cpex_payload: Any, context: PluginContext) -> Any:
        """Call the cpex hook; a raised violation comes back as our blocking result."""
        cpex_context = self._context(context)
        try:
            if entry.extensions:
                result = await entry.method(cpex_payload, cpex_context, None)
            else:
                result = await entry.method(cpex_payload, cpex_context)
        except self._violation_error as exc:
            violation = getattr(exc, "violation", None)
            fields = violation.__dict__ if violation is not None else {"reason": str(exc), "code": "BLOCKED"}
            return PluginResult(continue_processing=False, violation=violation_from_fields(fields))
        except self._plugin_error as exc:
            error = getattr(exc, "error", None)
            raise PluginError(
                str(getattr(error, "message", exc)),
                plugin_name=self.name,
                code=str(getattr(error, "code", "") or "PLUGIN_ERROR"),
                details=dict(getattr(error, "details", None) or {}),
            ) from exc
        finally:
            # A plugin may replace the dicts rather than change them in place.
            context.state = cpex_context.state
            context.metadata = cpex_context.metadata
            context.global_context.state = cpex_context.global_context.state
        return result

    def _context(self, context: PluginContext) -> Any:
        # Constructed, not validated, so our dicts are kept (no copy): state
        # set by the plugin lands in our PluginContext, which lives from the
        # pre to the post hook.
        cpex = self._cpex
        fields = context_fields(context)
        fields["global_context"] = _construct(cpex.GlobalContext, fields["global_context"])
        return _construct(cpex.PluginContext, fields)

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``tool_pre_invoke``."""
        return await self._call(HookType.TOOL_PRE_INVOKE, payload, context)

    async def tool_post_invoke(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``tool_post_invoke``."""
        return await self._call(HookType.TOOL_POST_INVOKE, payload, context)

    async def prompt_pre_fetch(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``prompt_pre_fetch``."""
        return await self._call(HookType.PROMPT_PRE_FETCH, payload, context)

    async def prompt_post_fetch(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``prompt_post_fetch``."""
        return await self._call(HookType.PROMPT_POST_FETCH, payload, context)

    async def resource_pre_fetch(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``resource_pre_fetch``."""
        return await self._call(HookType.RESOURCE_PRE_FETCH, payload, context)

    async def resource_post_fetch(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``resource_post_fetch``, once per content item."""
        return await self._call(HookType.RESOURCE_POST_FETCH, payload, context)

    async def http_pre_request(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``http_pre_request`` (headers only: cpex has no body)."""
        return await self._call(HookType.HTTP_PRE_REQUEST, payload, context)

    async def http_post_request(self, payload: Any, context: PluginContext) -> PluginResult | None:
        """Run the cpex plugin's ``http_post_request`` (headers and status only)."""
        return await self._call(HookType.HTTP_POST_REQUEST, payload, context)


def load(config: PluginConfig) -> CpexPlugin:
    """Build the plugin for a ``kind: cpex`` entry, or an entry whose kind is a cpex class path.

    :raises PluginLoadError: if cpex is missing, the class is not a cpex
        plugin, a listed hook is not handled, or the constructor raises.
    """
    path = config.plugin if config.kind == "cpex" else config.kind
    if not path:
        raise PluginLoadError("kind 'cpex' needs 'plugin: package.module.ClassName'")
    try:
        cpex = importlib.import_module("cpex.framework")
    except ImportError as exc:
        raise PluginLoadError(f"{_INSTALL_HINT} ({exc})") from None
    cls = import_object(path)
    if not (isinstance(cls, type) and issubclass(cls, cpex.Plugin)):
        raise PluginLoadError(f"{path!r} is not a cpex plugin class (a subclass of cpex.framework.Plugin)")
    available = _handled_hooks(cls, cpex)
    if config.hooks is not None:
        missing = [hook.value for hook in config.hooks if hook not in available]
        if missing:
            raise PluginLoadError(
                f"hooks {', '.join(missing)} listed but {cls.__qualname__} does not handle "
                f"{'it' if len(missing) == 1 else 'them'} (it handles: {', '.join(available) or 'none'})"
            )
        hooks = list(config.hooks)
    else:
        hooks = list(available)
        if not hooks:
            raise PluginLoadError(f"{cls.__qualname__} handles none of our hooks")
    cpex_config = cpex.PluginConfig(
        name=config.name,
        kind=path,
        description=config.description,
        author=config.author,
        version=config.version,
        tags=config.tags,
        hooks=[hook.value for hook in hooks],
        mode="sequential",
        priority=config.priority,
        config=config.config,
    )
    try:
        instance = cls(cpex_config)
    except Exception as exc:
        raise PluginLoadError(f"{cls.__qualname__}(...) raised {type(exc).__name__}: {exc}") from exc
    registry = cpex.get_hook_registry()
    bound: dict[HookType, _Hook] = {}
    for hook in hooks:
        method = _hook_method(instance, hook)
        if method is None or not inspect.iscoroutinefunction(method):
            raise PluginLoadError(f"{cls.__qualname__}.{hook.value} must be 'async def'")
        arity = len(inspect.signature(method).parameters)
        if arity not in (2, 3):
            raise PluginLoadError(
                f"{cls.__qualname__}.{hook.value} takes {arity} parameters; cpex hooks take "
                "(payload, context[, extensions])"
            )
        bound[hook] = _Hook(method, arity == 3, registry.get_payload_type(hook.value))
    resolved = config.model_copy(update={"hooks": hooks, "category": config.category or Category.CONTENT})
    return CpexPlugin(resolved, instance, bound, cpex)


def _construct(cls: type[BaseModel], fields: dict[str, Any]) -> Any:
    """``cls.model_construct(**fields)`` at a fraction of its cost.

    It runs three times on every call; pydantic's version looks up every
    field's default and alias each time, which is done once per class here.
    """
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = _shape(cls)
    order, names, defaults = shape
    if defaults is None:
        return cls.model_construct(**fields)
    given = set(fields)
    if given != names:
        if not given <= names or not names - given <= defaults.keys():
            return cls.model_construct(**fields)  # pydantic reports what is wrong
        fields = {name: fields[name] if name in fields else defaults[name]() for name in order}
    instance = cls.__new__(cls)
    object.__setattr__(instance, "__dict__", fields)
    object.__setattr__(instance, "__pydantic_fields_set__", given)
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


_Shape = tuple[tuple[str, ...], frozenset[str], dict[str, Callable[[], Any]] | None]
_SHAPES: dict[type[BaseModel], _Shape] = {}


def _shape(cls: type[BaseModel]) -> _Shape:
    """A class's field names and a function making each optional field's default.

    Classes with private attributes or extra fields are left to pydantic.
    """
    order = tuple(cls.model_fields)
    if cls.__private_attributes__ or cls.model_config.get("extra") == "allow":
        return order, frozenset(order), None
    defaults: dict[str, Callable[[], Any]] = {}
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            defaults[name] = info.default_factory  # type: ignore[assignment]
        elif not info.is_required():
            defaults[name] = _constant(info.default)
    return order, frozenset(order), defaults


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _prompt_result(result: Any) -> Any:
    """The wire result as a :class:`PromptResult` when it has the expected shape."""
    if isinstance(result, dict) and isinstance(result.get("messages"), list):
        try:
            return PromptResult.model_validate(result)
        except ValueError:
            pass
    return result


def _handled_hooks(cls: type, cpex: Any) -> list[HookType]:
    """Our hooks that ``cls`` handles, by method name or cpex's ``@hook`` decorator."""
    decorated: set[str] = set()
    get_metadata = importlib.import_module("cpex.framework.decorator").get_hook_metadata
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            metadata = get_metadata(member)
            if metadata is not None:
                decorated.update(metadata.hook_types)
    base = cpex.Plugin
    return [
        hook
        for hook in HookType
        if hook.value in decorated or (callable(getattr(cls, hook.value, None)) and not hasattr(base, hook.value))
    ]


def _hook_method(instance: Any, hook: HookType) -> Callable[..., Awaitable[Any]] | None:
    method: Callable[..., Awaitable[Any]] | None = getattr(instance, hook.value, None)
    if callable(method):
        return method
    get_metadata = importlib.import_module("cpex.framework.decorator").get_hook_metadata
    for name, member in inspect.getmembers(instance, inspect.ismethod):
        metadata = None if name.startswith("_") else get_metadata(member)
        if metadata is not None and metadata.matches(hook.value):
            return member
    return None
