"""
Text filtering over payloads
============================

The machinery shared by the content plugins (PII, secrets, deny list, regex
rewriting): a walker that applies a ``str -> str`` function to the text a
payload carries, and :class:`TextFilterPlugin`, which turns such a function
into hook methods for every hook but the list hooks.

Which strings are text:

* tool and prompt arguments: every string value, at any depth (keys are
  left alone);
* tool results: ``content[].text`` of ``text`` items, ``resource.text`` of
  embedded ``resource`` items, and every string in ``structuredContent``;
  ``image`` and ``audio`` data, ``blob`` and ``resource_link`` items are left
  alone, as are the result's other fields (``isError``, ``_meta``, ...);
* prompt results: ``description`` and ``messages[].content`` (as for tool
  content items);
* resource results: ``contents[].text``;
* resource requests: the ``uri``, only for plugins that block or that
  :attr:`~TextFilterPlugin.rewrites_uris` (masking a URI would fetch some
  other resource);
* HTTP bodies: JSON (a JSON media type, or no ``content-type`` and a body
  that starts with ``{`` or ``[``) is parsed, walked and re-encoded; ``text/*``
  is filtered as text in its charset; compressed and other bodies are left
  alone;
* server messages (``server_message``) and other client messages
  (``client_message``): their ``params``, by method:

  - ``notifications/progress``: ``message``;
  - ``notifications/message`` (logging): every string in ``data`` at any
    depth (keys are left alone), and ``logger``; ``level`` is left alone;
  - ``sampling/createMessage``: ``systemPrompt`` and each message's
    ``content`` (one item or a list): ``text`` and ``resource`` items as
    for tool content, a ``tool_use`` item's ``input`` (every string, as for
    tool arguments), a ``tool_result`` item's ``content`` items and
    ``structuredContent``; ``tools``, ``metadata``, ``stopSequences`` and
    ``modelPreferences`` are left alone;
  - ``elicitation/create``: ``message`` and every string in
    ``requestedSchema`` (titles, descriptions, ``enum`` / ``enumNames``
    values, ``oneOf`` / ``anyOf`` ``const`` and ``title``, defaults), except
    the JSON Schema keywords ``type``, ``format``, ``pattern`` and
    ``required`` (property names are keys, left alone); a URL-mode ``url`` as
    a resource URI is (below);
  - ``completion/complete``: ``argument.value`` and the values of
    ``context.arguments`` (``ref`` is left alone);
  - ``notifications/tasks/status``: ``statusMessage``;
  - ``initialize`` and ``logging/setLevel``: nothing (versions,
    capabilities, a level);
  - any other method: every string at any depth except under the protocol
    keys below;

  and a client's response ``result``, by shape: a sampling result
  (``model`` and ``content``): its ``content`` as for sampling messages
  (``model``, ``role`` and ``stopReason`` are left alone); an elicitation
  result (``action``): the values of ``content`` (strings and string
  arrays); a task (``taskId`` and ``status``), ``{"task": ...}`` or
  ``{"tasks": [...]}``: ``statusMessage``; anything else (``roots``, ...):
  every string except under the protocol keys.

  The protocol keys, never filtered, at any depth: ``_meta``; the opaque
  identifiers a peer echoes back (``progressToken``, ``cursor``,
  ``nextCursor``, ``requestId``, ``taskId``, ``elicitationId``,
  ``toolUseId``), which a secrets filter's entropy check could otherwise
  redact and so break pagination or correlation; and the discriminators
  ``type``, ``role`` and ``mimeType``, whose values are enumerations. A
  ``uri`` or ``url`` value is filtered only as resource request URIs are:
  for plugins that block or :attr:`~TextFilterPlugin.rewrites_uris`.

The walker keeps identity: when the function changes nothing, the very same
payload object comes back, so the executor records the plugin as "passed";
when something changes, only the containers on the path to the change are
copied.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import orjson

from ..models import (
    Category,
    ClientMessagePayload,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ServerMessagePayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from ..plugin import Plugin

__all__ = [
    "Findings",
    "TextFilterPlugin",
    "TextFunction",
    "config_error",
    "counted",
    "labels",
    "map_client_result",
    "map_content_item",
    "map_http_body",
    "map_json",
    "map_message_params",
    "map_prompt_result",
    "map_resource_result",
    "map_tool_result",
    "printable_text",
    "transform_payload",
]

TextFunction = Callable[[str], str]
"""Returns its argument (the same object, or an equal string) when it changes nothing."""

Findings = dict[str, int]
"""What a filter found: a label (``"EMAIL"``, a rule id) and how many times."""

_T = TypeVar("_T")


def config_error(problems: list[tuple[str, str]]) -> ValueError:
    """A ``ValueError`` in the same shape as ``_config.parse_config`` raises.

    For checks made after the model validated (those that involve several
    fields): ``problems`` are ``(field, message)`` pairs, ``field`` written as
    ``rules[0].search``.
    """
    return ValueError("; ".join(f"config.{field}: {message}" for field, message in problems))


# --------------------------------------------------------------------------
# Walking JSON values
# --------------------------------------------------------------------------


def _changed(new: object, old: object) -> bool:
    # Filters usually hand back the very same string; comparing is the
    # fallback for those that rebuild an equal one.
    return new is not old and new != old


def map_json(value: Any, fn: TextFunction) -> Any:
    """Apply ``fn`` to every string inside ``value`` (dict values, list items)."""
    kind = type(value)
    if kind is str:
        new = fn(value)
        return new if _changed(new, value) else value
    if kind is dict:
        copied: dict[Any, Any] | None = None
        for key, item in value.items():
            new_item = map_json(item, fn)
            if new_item is not item:
                if copied is None:
                    copied = dict(value)
                copied[key] = new_item
        return value if copied is None else copied
    if kind is list:
        copied_list: list[Any] | None = None
        for index, item in enumerate(value):
            new_item = map_json(item, fn)
            if new_item is not item:
                if copied_list is None:
                    copied_list = list(value)
                copied_list[index] = new_item
        return value if copied_list is None else copied_list
    return value


def _map_key(mapping: dict[str, Any], key: str, fn: Callable[[Any], Any]) -> dict[str, Any]:
    """``mapping`` with ``fn`` applied to ``mapping[key]``; the same dict if nothing changed."""
    if key not in mapping:
        return mapping
    old = mapping[key]
    new = fn(old)
    if new is old:
        return mapping
    return {**mapping, key: new}


def _map_text(value: Any, fn: TextFunction) -> Any:
    return map_json(value, fn) if type(value) is str else value


def map_content_item(item: Any, fn: TextFunction) -> Any:
    """Filter the text of one MCP content item (``text`` and ``resource`` items)."""
    if type(item) is not dict:
        return item
    kind = item.get("type")
    if kind == "text":
        return _map_key(item, "text", lambda text: _map_text(text, fn))
    if kind == "resource":
        resource = item.get("resource")
        if type(resource) is dict:
            return _map_key(item, "resource", lambda res: _map_key(res, "text", lambda text: _map_text(text, fn)))
    return item


def _map_items(items: Any, fn: Callable[[Any], Any]) -> Any:
    if type(items) is not list:
        return fn(items)
    copied: list[Any] | None = None
    for index, item in enumerate(items):
        new = fn(item)
        if new is not item:
            if copied is None:
                copied = list(items)
            copied[index] = new
    return items if copied is None else copied


def map_tool_result(result: Any, fn: TextFunction) -> Any:
    """Filter a ``tools/call`` result: content items and ``structuredContent``.

    A result that is not MCP-shaped (a bare string or list, a dict with
    neither ``content`` nor ``structuredContent``) is walked as plain JSON.
    """
    if type(result) is dict and ("content" in result or "structuredContent" in result):
        result = _map_key(result, "content", lambda items: _map_items(items, lambda i: map_content_item(i, fn)))
        return _map_key(result, "structuredContent", lambda value: map_json(value, fn))
    return map_json(result, fn)


def map_prompt_result(result: Any, fn: TextFunction) -> Any:
    """Filter a ``prompts/get`` result: ``description`` and each message's content."""
    if type(result) is not dict:
        return map_json(result, fn)

    def message(item: Any) -> Any:
        if type(item) is not dict:
            return item
        return _map_key(item, "content", lambda content: _map_items(content, lambda c: map_content_item(c, fn)))

    result = _map_key(result, "description", lambda text: _map_text(text, fn))
    return _map_key(result, "messages", lambda messages: _map_items(messages, message))


def map_resource_result(content: Any, fn: TextFunction) -> Any:
    """Filter a ``resources/read`` result: ``contents[].text`` (``blob`` is left alone)."""
    if type(content) is dict:

        def item(entry: Any) -> Any:
            if type(entry) is not dict:
                return entry
            return _map_key(entry, "text", lambda text: _map_text(text, fn))

        if "contents" in content:
            return _map_key(content, "contents", lambda items: _map_items(items, item))
        return item(content)
    return map_json(content, fn)


# --------------------------------------------------------------------------
# HTTP bodies
# --------------------------------------------------------------------------


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _is_json_media_type(media_type: str) -> bool:
    return media_type.endswith(("/json", "+json"))


def map_http_body(body: bytes, headers: list[tuple[str, str]], fn: TextFunction) -> bytes:
    """Filter an HTTP body according to its ``content-type`` (see the module docstring).

    Returns ``body`` itself when nothing changed or the body is not text.
    """
    if not body:
        return body
    encoding = _header(headers, "content-encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        return body
    content_type = _header(headers, "content-type")
    media_type, _, params = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    if _is_json_media_type(media_type) or (content_type is None and body.lstrip()[:1] in (b"{", b"[")):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            # Mislabelled or broken JSON is still text a filter may need to see.
            return _map_text_body(body, "utf-8", fn) if content_type is not None else body
        new = map_json(document, fn)
        return body if new is document else orjson.dumps(new)
    if media_type.startswith("text/"):
        return _map_text_body(body, _charset(params), fn)
    return body


def _charset(params: str) -> str:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"')
            try:
                return codecs.lookup(charset).name
            except LookupError:
                return "utf-8"
    return "utf-8"


def _map_text_body(body: bytes, charset: str, fn: TextFunction) -> bytes:
    try:
        text = body.decode(charset)
    except UnicodeDecodeError:
        return body
    new = fn(text)
    if not _changed(new, text):
        return body
    try:
        return new.encode(charset)
    except UnicodeEncodeError:
        # A replacement the charset cannot hold: fall back to what can carry it.
        return new.encode(charset, errors="xmlcharrefreplace")


# --------------------------------------------------------------------------
# Server and client messages
# --------------------------------------------------------------------------

_PROTOCOL_KEYS = frozenset(
    {
        "_meta",
        "progressToken",
        "cursor",
        "nextCursor",
        "requestId",
        "taskId",
        "elicitationId",
        "toolUseId",
        "type",
        "role",
        "mimeType",
    }
)
"""Keys whose values generic message walks leave alone, at any depth (see the module docstring)."""

_URI_KEYS = frozenset({"uri", "url"})
"""Keys whose values generic message walks filter only when URIs are."""

_SCHEMA_KEYWORDS = frozenset({"type", "format", "pattern", "required", "$schema", "$id", "$ref"})
"""JSON Schema keywords whose values are not text (``required`` lists property names)."""

_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
"""JSON Schema keywords mapping names (keys, left alone) to subschemas."""

_ParamsMap = Callable[[dict[str, Any], TextFunction, bool], dict[str, Any]]


def _map_entries(mapping: dict[str, Any], fn: Callable[[str, Any], Any]) -> dict[str, Any]:
    """``mapping`` with each value replaced by ``fn(key, value)``; the same dict if nothing changed."""
    copied: dict[str, Any] | None = None
    for key, item in mapping.items():
        new = fn(key, item)
        if new is not item:
            if copied is None:
                copied = dict(mapping)
            copied[key] = new
    return mapping if copied is None else copied


def _map_message_json(value: Any, fn: TextFunction, uri: bool) -> Any:
    """Every string in ``value`` except under the protocol keys (and URI keys unless ``uri``)."""
    kind = type(value)
    if kind is str:
        return _map_text(value, fn)
    if kind is list:
        return _map_items(value, lambda item: _map_message_json(item, fn, uri))
    if kind is dict:

        def entry(key: str, item: Any) -> Any:
            if key in _PROTOCOL_KEYS or (not uri and key in _URI_KEYS):
                return item
            return _map_message_json(item, fn, uri)

        return _map_entries(value, entry)
    return value


def _map_schema(value: Any, fn: TextFunction) -> Any:
    """The strings of a JSON Schema (an elicitation's ``requestedSchema``) that people read."""
    kind = type(value)
    if kind is str:
        return _map_text(value, fn)
    if kind is list:
        return _map_items(value, lambda item: _map_schema(item, fn))
    if kind is dict:

        def entry(key: str, item: Any) -> Any:
            if key in _SCHEMA_KEYWORDS:
                return item
            if key in _SCHEMA_MAPS and type(item) is dict:
                return _map_entries(item, lambda _name, schema: _map_schema(schema, fn))
            return _map_schema(item, fn)

        return _map_entries(value, entry)
    return value


def _map_sampling_block(item: Any, fn: TextFunction) -> Any:
    """One sampling content item: text, embedded resource, tool use input, tool result."""
    if type(item) is not dict:
        return item
    kind = item.get("type")
    if kind == "tool_use":
        return _map_key(item, "input", lambda value: map_json(value, fn))
    if kind == "tool_result":
        item = _map_key(item, "content", lambda items: _map_items(items, lambda i: map_content_item(i, fn)))
        return _map_key(item, "structuredContent", lambda value: map_json(value, fn))
    return map_content_item(item, fn)


def _map_sampling_content(content: Any, fn: TextFunction) -> Any:
    """A sampling message's or result's ``content``: one item or a list of items."""
    return _map_items(content, lambda item: _map_sampling_block(item, fn))


def _progress_params(params: dict[str, Any], fn: TextFunction, uri: bool) -> dict[str, Any]:
    return _map_key(params, "message", lambda text: _map_text(text, fn))


def _log_params(params: dict[str, Any], fn: TextFunction, uri: bool) -> dict[str, Any]:
    params = _map_key(params, "data", lambda data: map_json(data, fn))
    return _map_key(params, "logger", lambda text: _map_text(text, fn))


def _sampling_params(params: dict[str, Any], fn: TextFunction, uri: bool) -> dict[str, Any]:
    def message(item: Any) -> Any:
        if type(item) is not dict:
            return item
        return _map_key(item, "content", lambda content: _map_sampling_content(content, fn))

    params = _map_key(params, "messages", lambda messages: _map_items(messages, message))
    return _map_key(params, "systemPrompt", lambda text: _map_text(text, fn))


def _elicitation_params(params: dict[str, Any], fn: TextFunction, uri: bool) -> dict[str, Any]:
    params = _map_key(params, "message", lambda text: _map_text(text, fn))
    params = _map_key(params, "requestedSchema", lambda schema: _map_schema(schema, fn))
    if uri:
        params = _map_key(params, "url", lambda text: _map_text(text, fn))
    return params


def _completion_params(params: dict[str, Any], fn: TextFunction, uri: bool) -> dict[str, Any]:
    def argument(value: Any) -> Any:
        return _map_key(value, "value", lambda text: _map_text(text, fn)) if type(value) is dict else value

    def context(value: Any) -> Any:
        return _map_key(value, "arguments", lambda args: map_json(args, fn)) if type(value) is dict else value

    params = _map_key(params, "argument", argument)
    return _map_key(params, "context", context)


def _task(value: Any, fn: TextFunction) -> Any:
    if type(value) is not dict:
        return value
    return _map_key(value, "statusMessage", lambda text: _map_text(text, fn))


def _task_params(params: dict[str, Any], fn: TextFunction, uri: bool) -> dict[str, Any]:
    return _map_key(params, "statusMessage", lambda text: _map_text(text, fn))


def _no_text(params: dict[str, Any], fn: TextFunction, uri: bool) -> dict[str, Any]:
    return params


_PARAMS_BY_METHOD: dict[str, _ParamsMap] = {
    "notifications/progress": _progress_params,
    "notifications/message": _log_params,
    "sampling/createMessage": _sampling_params,
    "elicitation/create": _elicitation_params,
    "completion/complete": _completion_params,
    "notifications/tasks/status": _task_params,
    "initialize": _no_text,
    "logging/setLevel": _no_text,
}
"""How the ``params`` of known methods are filtered; other methods' by :func:`_map_message_json`."""


def map_message_params(method: str | None, params: Any, fn: TextFunction, *, uri: bool = False) -> Any:
    """Filter a server or client message's ``params`` according to its ``method``."""
    if type(params) is not dict:
        return params if params is None else _map_message_json(params, fn, uri)
    mapper = _PARAMS_BY_METHOD.get(method) if method is not None else None
    if mapper is None:
        return _map_message_json(params, fn, uri)
    return mapper(params, fn, uri)


def map_client_result(result: Any, fn: TextFunction, *, uri: bool = False) -> Any:
    """Filter a client's response to a server request, recognised by its shape."""
    if type(result) is dict:
        if "action" in result:
            return _map_key(result, "content", lambda content: map_json(content, fn))
        if "model" in result and "content" in result:
            return _map_key(result, "content", lambda content: _map_sampling_content(content, fn))
        if "taskId" in result and "status" in result:
            return _task(result, fn)
        if type(result.get("task")) is dict:
            return _map_key(result, "task", lambda task: _task(task, fn))
        if type(result.get("tasks")) is list:
            return _map_key(result, "tasks", lambda tasks: _map_items(tasks, lambda task: _task(task, fn)))
    return _map_message_json(result, fn, uri)


# --------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------


def transform_payload(payload: _T, fn: TextFunction, *, uri: bool = False) -> _T:
    """Apply ``fn`` to the text ``payload`` carries; ``payload`` itself if nothing changed.

    :param uri: also filter ``ResourcePreFetchPayload.uri`` and the URIs in
        server and client messages.
    """
    field: str
    old: Any
    new: Any
    if isinstance(payload, ToolPreInvokePayload | PromptPrehookPayload):
        field, old = "args", payload.args
        new = map_json(old, fn)
    elif isinstance(payload, ToolPostInvokePayload):
        field, old = "result", payload.result
        new = map_tool_result(old, fn)
    elif isinstance(payload, PromptPosthookPayload):
        field, old = "result", payload.result
        new = map_prompt_result(old, fn)
    elif isinstance(payload, ResourcePostFetchPayload):
        field, old = "content", payload.content
        new = map_resource_result(old, fn)
    elif isinstance(payload, ResourcePreFetchPayload):
        if not uri:
            return payload
        field, old = "uri", payload.uri
        new = map_json(old, fn)
    elif isinstance(payload, HttpPreRequestPayload | HttpPostRequestPayload):
        field, old = "body", payload.body
        new = map_http_body(old, payload.headers, fn)
    elif isinstance(payload, ServerMessagePayload):
        field, old = "params", payload.params
        new = map_message_params(payload.method, old, fn, uri=uri)
    elif isinstance(payload, ClientMessagePayload):
        update: dict[str, Any] = {}
        params = map_message_params(payload.method, payload.params, fn, uri=uri)
        if params is not payload.params:
            update["params"] = params
        if payload.result is not None:
            result = map_client_result(payload.result, fn, uri=uri)
            if result is not payload.result:
                update["result"] = result
        return payload.model_copy(update=update) if update else payload
    else:
        return payload
    if new is old:
        return payload
    return payload.model_copy(update={field: new})  # type: ignore[attr-defined, no-any-return]


# --------------------------------------------------------------------------
# The plugin base
# --------------------------------------------------------------------------


MCP_HOOKS = (
    HookType.TOOL_PRE_INVOKE,
    HookType.TOOL_POST_INVOKE,
    HookType.PROMPT_PRE_FETCH,
    HookType.PROMPT_POST_FETCH,
    HookType.RESOURCE_PRE_FETCH,
    HookType.RESOURCE_POST_FETCH,
    HookType.SERVER_MESSAGE,
    HookType.CLIENT_MESSAGE,
)
"""The hooks text filters use unless configured: list ``http_pre_request`` /
``http_post_request`` to filter plain HTTP bodies as well. The list hooks
(``tool_post_list``, ...) are not among them: the walker has no text for
their payloads."""


class TextFilterPlugin(Plugin):
    """A content plugin defined by what it does to one string.

    Subclasses implement :meth:`filter_text` and :meth:`violation`, and set
    ``self.blocks`` in their constructor; every hook then walks the payload's
    text (see the module docstring). In blocking mode a payload with any
    finding is refused with :meth:`violation`; otherwise a changed payload is
    returned with the counts of what was found in the result's metadata,
    under the plugin's name.
    """

    default_category: ClassVar[Category] = Category.CONTENT
    default_hooks: ClassVar[tuple[HookType, ...] | None] = MCP_HOOKS

    rewrites_uris: ClassVar[bool] = False
    """Whether masking applies to resource URIs (blocking always checks them)."""

    blocks: bool = False
    """Refuse payloads with findings instead of passing them on changed."""

    def filter_text(self, text: str, found: Findings) -> str:
        """Return ``text`` filtered, counting what was found into ``found``.

        Return ``text`` itself when there is nothing to change (always, when
        blocking: only the findings matter then).
        """
        raise NotImplementedError

    def violation(self, found: Findings) -> PluginViolation:
        """The violation for a blocked payload; it must not quote the payload."""
        raise NotImplementedError

    def process(self, payload: Any) -> PluginResult | None:
        """Filter ``payload``: None when nothing was found, else a change or a block."""
        found: Findings = {}
        filter_text = self.filter_text
        new = transform_payload(payload, lambda text: filter_text(text, found), uri=self.blocks or self.rewrites_uris)
        if self.blocks:
            return PluginResult(continue_processing=False, violation=self.violation(found)) if found else None
        if new is payload:
            return None
        return PluginResult(modified_payload=new, metadata={self.name: {"found": found}})

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Filter the tool's arguments."""
        return self.process(payload)

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult | None:
        """Filter the tool's result."""
        return self.process(payload)

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Filter the prompt's arguments."""
        return self.process(payload)

    def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PluginResult | None:
        """Filter the rendered prompt's messages."""
        return self.process(payload)

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Check (or, with :attr:`rewrites_uris`, rewrite) the resource URI."""
        return self.process(payload)

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> PluginResult | None:
        """Filter the resource's text contents."""
        return self.process(payload)

    def server_message(self, payload: ServerMessagePayload, context: PluginContext) -> PluginResult | None:
        """Filter a server's notification or request (progress, log, sampling, elicitation, ...)."""
        return self.process(payload)

    def client_message(self, payload: ClientMessagePayload, context: PluginContext) -> PluginResult | None:
        """Filter a client's notification or request, or its answer to a sampling or elicitation request."""
        return self.process(payload)

    def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> PluginResult | None:
        """Filter a plain HTTP request body."""
        return self.process(payload)

    def http_post_request(self, payload: HttpPostRequestPayload, context: PluginContext) -> PluginResult | None:
        """Filter a plain HTTP response body."""
        return self.process(payload)


def counted(found: Findings, label: str, times: int = 1) -> None:
    """Add ``times`` findings of ``label``."""
    found[label] = found.get(label, 0) + times


def labels(found: Mapping[str, int]) -> list[str]:
    """The labels in ``found``, sorted, for violation details."""
    return sorted(found)


_LINE_BREAKS = str.maketrans("\n\r\t", "   ")


def printable_text(data: bytes) -> str | None:
    """``data`` as text when it is UTF-8 and mostly printable, else None.

    What decoded base64 or hex must be to be scanned as text (by
    ``prompt_injection`` and ``exfil_guard``): an image or a digest is not.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    # str.isprintable runs in C; the count is only for text with a few controls.
    if text.isprintable() or text.translate(_LINE_BREAKS).isprintable():
        return text
    printable = sum(map(str.isprintable, text.translate(_LINE_BREAKS)))
    return text if printable >= 0.9 * len(text) else None
