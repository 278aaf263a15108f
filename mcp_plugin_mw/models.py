"""
Hook types, payloads, results and contexts
==========================================

The vocabulary shared by plugins, the executor and the middlewares.

Payloads are frozen pydantic models, as in ContextForge/cpex 0.1.x, so a
plugin written for cpex ports with an import change and returns a changed copy
made with ``model_copy(update=...)``. The middlewares build them with
``model_construct`` (no validation: the values come straight off the wire and
are plain JSON), which keeps a payload at well under a microsecond. Frozen
covers the fields, not the dicts and lists they hold: a plugin that changes
those in place has changed the payload all the same, and the executor treats
it so (see :mod:`mcp_plugin_mw.executor`).

Results, violations and contexts are created on every plugin call, so they are
slotted dataclasses rather than pydantic models: keyword construction works as
in cpex, at a fraction of the cost.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Category",
    "ClientMessagePayload",
    "Config",
    "EntryKeys",
    "ExecutionRecord",
    "Flow",
    "GlobalContext",
    "HookResult",
    "HookType",
    "HttpPostRequestPayload",
    "HttpPreRequestPayload",
    "Outcome",
    "Payload",
    "PluginCondition",
    "PluginConfig",
    "PluginContext",
    "PluginError",
    "PluginMode",
    "PluginResult",
    "PluginSettings",
    "PluginViolation",
    "PromptListPayload",
    "PromptPosthookPayload",
    "PromptPrehookPayload",
    "ResourceListPayload",
    "ResourcePostFetchPayload",
    "ResourcePreFetchPayload",
    "ServerMessagePayload",
    "ToolListPayload",
    "ToolPostInvokePayload",
    "ToolPreInvokePayload",
    "register_entry_keys",
]


class HookType(enum.StrEnum):
    """The points in an exchange where plugins run."""

    TOOL_PRE_INVOKE = "tool_pre_invoke"
    TOOL_POST_INVOKE = "tool_post_invoke"
    PROMPT_PRE_FETCH = "prompt_pre_fetch"
    PROMPT_POST_FETCH = "prompt_post_fetch"
    RESOURCE_PRE_FETCH = "resource_pre_fetch"
    RESOURCE_POST_FETCH = "resource_post_fetch"
    HTTP_PRE_REQUEST = "http_pre_request"
    HTTP_POST_REQUEST = "http_post_request"
    TOOL_POST_LIST = "tool_post_list"
    PROMPT_POST_LIST = "prompt_post_list"
    RESOURCE_POST_LIST = "resource_post_list"
    SERVER_MESSAGE = "server_message"
    CLIENT_MESSAGE = "client_message"

    @property
    def is_request(self) -> bool:
        """True for hooks that see the request, False for the response."""
        return self in _REQUEST_HOOKS

    @property
    def flow(self) -> Flow:
        """The direction this hook runs in."""
        return Flow.REQUEST if self in _REQUEST_HOOKS else Flow.RESPONSE


_REQUEST_HOOKS = frozenset(
    {
        HookType.TOOL_PRE_INVOKE,
        HookType.PROMPT_PRE_FETCH,
        HookType.RESOURCE_PRE_FETCH,
        HookType.HTTP_PRE_REQUEST,
        HookType.CLIENT_MESSAGE,
    }
)


class PluginMode(enum.StrEnum):
    """How the executor treats a plugin's violations and failures.

    ``enforce`` obeys violations and blocks on errors and timeouts;
    ``enforce_ignore_error`` obeys violations but continues past errors;
    ``permissive`` logs violations and continues past errors;
    ``disabled`` never runs the plugin.
    """

    ENFORCE = "enforce"
    ENFORCE_IGNORE_ERROR = "enforce_ignore_error"
    PERMISSIVE = "permissive"
    DISABLED = "disabled"


class Flow(enum.StrEnum):
    """Which direction of an exchange a plugin runs on."""

    REQUEST = "request"
    RESPONSE = "response"
    BOTH = "both"

    def includes(self, direction: Flow) -> bool:
        """Whether this setting covers ``direction`` (``REQUEST`` or ``RESPONSE``)."""
        return self is Flow.BOTH or self is direction


class Category(enum.StrEnum):
    """Plugin categories, declared in the order they run (after mcpd)."""

    OBSERVABILITY = "observability"
    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    RATE_LIMITING = "rate_limiting"
    VALIDATION = "validation"
    CONTENT = "content"
    AUDIT = "audit"

    @property
    def order(self) -> int:
        """Position in the fixed run order."""
        return _CATEGORY_ORDER[self]

    @property
    def may_modify(self) -> bool:
        """Whether changes returned by plugins of this category are applied."""
        return self is Category.CONTENT

    @property
    def may_block(self) -> bool:
        """Whether violations from plugins of this category are obeyed."""
        return self not in (Category.OBSERVABILITY, Category.AUDIT)

    @property
    def parallel(self) -> bool:
        """Whether plugins of this category run concurrently."""
        return self is Category.OBSERVABILITY


_CATEGORY_ORDER = {category: index for index, category in enumerate(Category)}


class Outcome(enum.StrEnum):
    """What one plugin call came to, as recorded in :class:`ExecutionRecord`."""

    PASSED = "passed"
    MODIFIED = "modified"
    BLOCKED = "blocked"
    VIOLATION_IGNORED = "violation_ignored"
    MODIFICATION_DROPPED = "modification_dropped"
    ERROR = "error"
    TIMEOUT = "timeout"


# --------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolPreInvokePayload(_Payload):
    """A ``tools/call`` request: the tool's name and its arguments."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolPostInvokePayload(_Payload):
    """A ``tools/call`` response: the JSON-RPC ``result`` object as sent."""

    name: str
    result: Any = None


class PromptPrehookPayload(_Payload):
    """A ``prompts/get`` request: the prompt's name and its arguments."""

    prompt_id: str
    args: dict[str, Any] = Field(default_factory=dict)


class PromptPosthookPayload(_Payload):
    """A ``prompts/get`` response: the JSON-RPC ``result`` object as sent."""

    prompt_id: str
    result: Any = None


class ResourcePreFetchPayload(_Payload):
    """A ``resources/read`` request: the URI and the rest of ``params``."""

    uri: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class ResourcePostFetchPayload(_Payload):
    """A ``resources/read`` response: the JSON-RPC ``result`` object as sent."""

    uri: str
    content: Any = None


class HttpPreRequestPayload(_Payload):
    """A plain HTTP request, body included.

    ``headers`` are ``(name, value)`` pairs with lower-case names, in wire
    order, repeated names kept. ``client`` is ``"host:port"`` when known.
    """

    method: str
    path: str
    query_string: str = ""
    headers: list[tuple[str, str]] = Field(default_factory=list)
    client: str | None = None
    body: bytes = b""


class HttpPostRequestPayload(_Payload):
    """A plain HTTP response to the request in ``method`` and ``path``."""

    method: str
    path: str
    status_code: int
    headers: list[tuple[str, str]] = Field(default_factory=list)
    body: bytes = b""


class ToolListPayload(_Payload):
    """A ``tools/list`` result page: its ``tools``, each a tool definition as sent."""

    tools: list[dict[str, Any]] = Field(default_factory=list)


class PromptListPayload(_Payload):
    """A ``prompts/list`` result page: its ``prompts`` as sent."""

    prompts: list[dict[str, Any]] = Field(default_factory=list)


class ResourceListPayload(_Payload):
    """A ``resources/list`` result page, or a ``resources/templates/list`` one.

    The first fills ``resources``, the second ``resource_templates``.
    """

    resources: list[dict[str, Any]] = Field(default_factory=list)
    resource_templates: list[dict[str, Any]] = Field(default_factory=list)


class ServerMessagePayload(_Payload):
    """A notification or request the server sends the client (``notifications/progress``, ``sampling/createMessage``).

    ``id`` is the request's id, None for a notification.
    """

    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | int | float | None = None


class ClientMessagePayload(_Payload):
    """A client-to-server message no other hook maps: a notification, a request, or a response.

    A notification or request has ``method`` and ``params``; a response to a
    server's request (sampling, elicitation) has ``method`` None and its
    ``result``. ``id`` is the message's id, None for a notification.
    """

    method: str | None = None
    params: dict[str, Any] | None = None
    result: Any = None
    id: str | int | float | None = None


Payload = (
    ToolPreInvokePayload
    | ToolPostInvokePayload
    | PromptPrehookPayload
    | PromptPosthookPayload
    | ResourcePreFetchPayload
    | ResourcePostFetchPayload
    | HttpPreRequestPayload
    | HttpPostRequestPayload
    | ToolListPayload
    | PromptListPayload
    | ResourceListPayload
    | ServerMessagePayload
    | ClientMessagePayload
)

PAYLOAD_TYPES: dict[HookType, type[BaseModel]] = {
    HookType.TOOL_PRE_INVOKE: ToolPreInvokePayload,
    HookType.TOOL_POST_INVOKE: ToolPostInvokePayload,
    HookType.PROMPT_PRE_FETCH: PromptPrehookPayload,
    HookType.PROMPT_POST_FETCH: PromptPosthookPayload,
    HookType.RESOURCE_PRE_FETCH: ResourcePreFetchPayload,
    HookType.RESOURCE_POST_FETCH: ResourcePostFetchPayload,
    HookType.HTTP_PRE_REQUEST: HttpPreRequestPayload,
    HookType.HTTP_POST_REQUEST: HttpPostRequestPayload,
    HookType.TOOL_POST_LIST: ToolListPayload,
    HookType.PROMPT_POST_LIST: PromptListPayload,
    HookType.RESOURCE_POST_LIST: ResourceListPayload,
    HookType.SERVER_MESSAGE: ServerMessagePayload,
    HookType.CLIENT_MESSAGE: ClientMessagePayload,
}
"""The payload class each hook receives."""


# --------------------------------------------------------------------------
# Results and violations
# --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class PluginViolation:
    """Why a plugin blocks a message.

    ``code`` is a short machine-readable tag (``"PII_DETECTED"``);
    ``http_status_code`` and ``mcp_error_code`` choose the status and the
    JSON-RPC error code the middlewares answer with (403 and -32602 when
    unset). The executor fills in ``plugin_name``.
    """

    reason: str
    description: str = ""
    code: str = "BLOCKED"
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    http_status_code: int | None = None
    mcp_error_code: int | None = None
    plugin_name: str | None = None


@dataclasses.dataclass(slots=True)
class PluginResult:
    """What a plugin hook returns.

    Leave ``modified_payload`` as None when nothing changed. Set
    ``continue_processing=False`` with a ``violation`` to block. A change
    made in place to the payload's dicts and lists counts as a
    ``modified_payload`` even when the hook returns None.
    """

    continue_processing: bool = True
    modified_payload: Any = None
    violation: PluginViolation | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class ExecutionRecord:
    """One plugin call: who ran, what came of it, and how long it took."""

    plugin: str
    hook: HookType
    outcome: Outcome
    duration: float
    """Seconds."""
    error: str | None = None
    start: float | None = dataclasses.field(default=None, compare=False)
    """``time.perf_counter()`` when the call began (None if unknown); spans are placed by it."""


_new = object.__new__


class HookResult:
    """The outcome of running every applicable plugin on one hook.

    ``modified_payload`` is None when no plugin changed the payload;
    ``violation`` is the violation that stopped processing, if any;
    ``records`` holds one :class:`ExecutionRecord` per plugin call, in order.
    """

    __slots__ = ("_hook", "_records", "continue_processing", "metadata", "modified_payload", "violation")

    def __init__(
        self,
        continue_processing: bool = True,
        modified_payload: Any = None,
        violation: PluginViolation | None = None,
        metadata: dict[str, Any] | None = None,
        records: list[ExecutionRecord] | None = None,
    ) -> None:
        self.continue_processing = continue_processing
        self.modified_payload = modified_payload
        self.violation = violation
        self.metadata = {} if metadata is None else metadata
        self._records: list[Any] = [] if records is None else records
        self._hook: HookType | None = None

    @classmethod
    def _of_calls(
        cls,
        hook: HookType,
        calls: list[Any],
        continue_processing: bool,
        modified_payload: Any,
        violation: PluginViolation | None,
        metadata: dict[str, Any],
    ) -> HookResult:
        """A result whose ``calls`` hold records, or ``(plugin, seconds, end)`` for calls that passed.

        Most calls pass and most results are never looked at: the executor
        keeps tuples, and the records are built when first read.
        """
        result = _new(cls)
        result.continue_processing = continue_processing
        result.modified_payload = modified_payload
        result.violation = violation
        result.metadata = metadata
        result._records = calls
        result._hook = hook
        return result

    @property
    def records(self) -> list[ExecutionRecord]:
        """One record per plugin call, in the order the calls were made."""
        hook, records = self._hook, self._records
        if hook is not None:
            passed = Outcome.PASSED
            records[:] = [
                ExecutionRecord(r[0], hook, passed, r[1], None, r[2] - r[1]) if type(r) is tuple else r for r in records
            ]
            self._hook = None
        return records

    @records.setter
    def records(self, records: list[ExecutionRecord]) -> None:
        self._records, self._hook = records, None

    def __repr__(self) -> str:
        return (
            f"HookResult(continue_processing={self.continue_processing!r}, "
            f"modified_payload={self.modified_payload!r}, violation={self.violation!r}, "
            f"metadata={self.metadata!r}, records={self.records!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HookResult):
            return NotImplemented
        return (
            self.continue_processing == other.continue_processing
            and self.modified_payload == other.modified_payload
            and self.violation == other.violation
            and self.metadata == other.metadata
            and self.records == other.records
        )

    __hash__ = None  # type: ignore[assignment]


class PluginError(Exception):
    """A plugin failed, or a plugin could not be loaded.

    Raise it from a hook to report a failure with a code; the executor treats
    it like any other exception, according to the plugin's mode.
    """

    def __init__(
        self,
        message: str,
        *,
        plugin_name: str | None = None,
        code: str = "PLUGIN_ERROR",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.plugin_name = plugin_name
        self.code = code
        self.details = details or {}


# --------------------------------------------------------------------------
# Contexts
# --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class GlobalContext:
    """What is known about the exchange, shared by every plugin.

    One instance lives for one request and its response: pass the same object
    to the pre and the post hook so each plugin's :class:`PluginContext`
    state carries over.
    """

    request_id: str
    user: str | None = None
    tenant_id: str | None = None
    server_id: str | None = None
    content_type: str | None = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    plugin_contexts: dict[str, PluginContext] = dataclasses.field(default_factory=dict)


class PluginContext:
    """A plugin's view of the exchange, private to that plugin.

    ``state`` set on a pre hook is seen again by the same plugin on the
    matching post hook of the same request.
    """

    # One is made per plugin per request, and most plugins never touch their
    # dicts: they are made on first use.
    __slots__ = ("_metadata", "_state", "global_context")

    def __init__(
        self,
        global_context: GlobalContext,
        state: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.global_context = global_context
        self._state = state
        self._metadata = metadata

    @property
    def state(self) -> dict[str, Any]:
        """The plugin's own state for this exchange."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    @state.setter
    def state(self, state: dict[str, Any]) -> None:
        self._state = state

    @property
    def metadata(self) -> dict[str, Any]:
        """The plugin's own metadata for this exchange."""
        metadata = self._metadata
        if metadata is None:
            metadata = self._metadata = {}
        return metadata

    @metadata.setter
    def metadata(self, metadata: dict[str, Any]) -> None:
        self._metadata = metadata

    @property
    def request_id(self) -> str:
        """The request id of the exchange."""
        return self.global_context.request_id

    def __repr__(self) -> str:
        return (
            f"PluginContext(global_context={self.global_context!r}, state={self.state!r}, metadata={self.metadata!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginContext):
            return NotImplemented
        return (self.global_context, self.state, self.metadata) == (
            other.global_context,
            other.state,
            other.metadata,
        )

    __hash__ = None  # type: ignore[assignment]


def fresh_plugin_context(global_context: GlobalContext) -> PluginContext:
    """A new, empty :class:`PluginContext`: what the executor makes per plugin per request.

    Equal to ``PluginContext(global_context)``, at half the cost: it is made
    on every request, once per plugin.
    """
    context = _new(PluginContext)
    context.global_context = global_context
    context._state = None
    context._metadata = None
    return context


# --------------------------------------------------------------------------
# Configuration models
# --------------------------------------------------------------------------


class _ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginCondition(_ConfigModel):
    """When a plugin applies. Every field given must match (AND).

    ``tools``, ``prompts`` and ``resources`` are globs on the tool name,
    prompt name and resource URI; they constrain hooks of their own kind, and
    a condition that names only other kinds does not match. ``user_patterns``
    are regexes searched in the user id; ``content_types`` are globs on the
    request's media type.
    """

    server_ids: list[str] | None = None
    tenant_ids: list[str] | None = None
    tools: list[str] | None = None
    prompts: list[str] | None = None
    resources: list[str] | None = None
    user_patterns: list[str] | None = None
    content_types: list[str] | None = None


EntryKeys = Callable[[dict[str, Any], Collection[str]], dict[str, Any]]
"""Gathers the keys a kind owns: called with a plugin entry as written and
the names of :class:`PluginConfig`'s fields, returns the entry with the
kind's own keys moved under ``external`` (raising ``ValidationError`` for bad
ones)."""

_ENTRY_KEYS: dict[str, EntryKeys] = {}


def register_entry_keys(kind: str, gather: EntryKeys) -> None:
    """Let entries of ``kind`` carry keys of their own, gathered by ``gather``.

    The loader, which owns plugin kinds, registers its built-in ``external``
    and ``mcpd`` kinds this way (this module imports nothing of the package).
    """
    _ENTRY_KEYS[kind] = gather


class PluginConfig(_ConfigModel):
    """One entry of ``plugins:``.

    ``hooks`` defaults to the hook methods the plugin class defines;
    ``category`` to the class's ``default_category``; ``timeout`` to
    ``plugin_settings.plugin_timeout``. ``required`` is mcpd's shorthand for
    ``mode`` (true: enforce, false: enforce_ignore_error).
    """

    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    description: str | None = None
    author: str | None = None
    version: str | None = None
    tags: list[str] = Field(default_factory=list)
    hooks: list[HookType] | None = None
    flow: Flow = Flow.BOTH
    category: Category | None = None
    mode: PluginMode = PluginMode.ENFORCE
    required: bool | None = None
    priority: int = 100
    timeout: float | None = Field(default=None, gt=0)
    run_in_thread: bool = False
    conditions: list[PluginCondition] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    plugin: str | None = None
    """``kind: cpex``: the cpex plugin class to run, ``package.module.ClassName``."""
    external: dict[str, Any] | None = None
    """``kind: external``: the transport's keys (``transport``, ``url``, ...), written
    at the top level of the entry and gathered here; see :mod:`mcp_plugin_mw.external`.
    ``kind: mcpd`` gathers its keys (``exec``, ``flows``, ...) here too."""

    @model_validator(mode="before")
    @classmethod
    def _gather_external_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("kind")
        gather = _ENTRY_KEYS.get(kind) if isinstance(kind, str) else None
        if gather is not None:
            return gather(data, cls.model_fields)
        if data.get("external") is not None:
            raise ValueError("'external' is only for kind external")
        return data

    @model_validator(mode="before")
    @classmethod
    def _required_is_mode_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("required") is not None:
            if "mode" in data:
                raise ValueError("give either 'required' or 'mode', not both")
            required = data["required"]
            if isinstance(required, bool):
                data = {**data, "mode": "enforce" if required else "enforce_ignore_error"}
        return data

    @model_validator(mode="after")
    def _plugin_is_for_cpex(self) -> PluginConfig:
        if self.plugin is not None and self.kind != "cpex":
            raise ValueError("'plugin' is only for kind cpex")
        return self


def check_redis_url(url: str, option: str) -> None:
    """Raise ValueError unless the redis package is installed and ``url`` parses as a Redis URL.

    ``option`` names the setting that chose Redis (``backend redis``), for the message.
    """
    try:
        from redis.asyncio import ConnectionPool
    except ImportError:
        raise ValueError(f"{option} needs the redis package: pip install 'mcp-plugin-mw[redis]'") from None
    try:
        ConnectionPool.from_url(url)  # parses only; connections open on first use
    except ValueError as exc:
        raise ValueError(f"url {url!r}: {exc}") from None


class PendingCallsSettings(_ConfigModel):
    """``plugin_settings.pending_calls:``, where calls still unanswered when their stream ends are kept.

    A result the server sends on a resumed stream (``Last-Event-ID``) is
    matched to its call there and inspected. ``memory`` keeps them in this
    process; ``redis`` at ``url``, shared by every worker.
    """

    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None
    """The Redis URL (``redis://127.0.0.1:6379/0``); only with ``backend: redis``."""
    ttl: float = Field(default=600.0, gt=0)
    """Seconds a call is kept after its stream ended."""
    max_calls: int = Field(default=10_000, gt=0)
    """With ``memory``: at most this many calls are kept, the oldest forgotten first."""
    key_prefix: str = "mcp-plugin-mw:pending:"

    @model_validator(mode="after")
    def _url_matches_backend(self) -> PendingCallsSettings:
        if self.backend == "memory":
            if self.url:
                raise ValueError("url is only used with backend: redis")
            return self
        if not self.url:
            raise ValueError("backend redis needs a url (redis://host:port/db)")
        check_redis_url(self.url, "backend redis")
        return self


class ControlSettings(_ConfigModel):
    """``plugin_settings.control:``, a Redis channel that carries reloads and mode changes to every process."""

    redis_url: str
    """``redis://host:port/db``; every process sharing it applies what any of them is told."""
    channel: str = "mcp-plugin-mw:control"

    @model_validator(mode="after")
    def _url_parses(self) -> ControlSettings:
        check_redis_url(self.redis_url, "control")
        return self


class PluginSettings(_ConfigModel):
    """``plugin_settings:``, the settings shared by all plugins."""

    enabled: bool = True
    plugin_timeout: float = Field(default=30.0, gt=0)
    fail_on_plugin_error: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    parallel_execution_within_band: bool = False
    excluded_urls: list[str] = Field(default_factory=list)
    allow_backtracking: bool = False
    """Let ``excluded_urls`` and conditions' ``user_patterns`` that RE2 cannot
    compile run on Python's ``re`` (unsafe on client input) instead of refusing them."""
    log_level: str | None = None
    max_response_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """JSON responses larger than this are not inspected by post hooks; they
    are replaced with an error rather than passed unchecked."""
    block_tools_as_result: bool = False
    """Answer a blocked ``tools/call`` with an ``isError: true`` result
    instead of a JSON-RPC error."""
    user_header: str | None = None
    """Request header that names the user (trusted only behind a proxy that sets it)."""
    tenant_header: str | None = None
    """Request header that names the tenant."""
    server_id_header: str | None = None
    """Request header that names the server; defaults to none."""
    pending_calls: PendingCallsSettings = Field(default_factory=PendingCallsSettings)
    watch: bool = False
    """Reload when the configuration file changes (``watchfiles`` when installed, else polling)."""
    watch_interval: float = Field(default=1.0, gt=0)
    """Seconds between two looks at the file when polling."""
    reload_on_sighup: bool = False
    """Reload on SIGHUP (the main thread's signal handler is replaced)."""
    control: ControlSettings | None = None
    """Publish reloads and mode changes on Redis, and apply those of the other processes."""


class Config(_ConfigModel):
    """A whole configuration: ``plugin_settings`` and ``plugins``."""

    plugin_settings: PluginSettings = Field(default_factory=PluginSettings)
    plugins: list[PluginConfig] = Field(default_factory=list)
