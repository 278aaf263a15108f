"""
Audit log
=========

:class:`AuditLogPlugin` writes one JSON line per hook call: when, which
request and hook, who (user, tenant), on what (tool, prompt, resource URI, or
HTTP method and path), and a SHA-256 digest of the payload, with the
configured fields redacted.

.. code-block:: yaml

    - name: audit
      kind: audit_log
      config:
        sink: file
        path: /var/log/mcp/audit.jsonl
        max_bytes: 10485760
        backup_count: 5
        redact_fields: [password, token, api_key]

.. code-block:: json

    {"ts":"2026-01-02T03:04:05.678Z","event":"hook","request_id":"7f3a...",
     "hook":"tool_pre_invoke","user":"alice","tenant_id":"acme","tool":"search",
     "args":{"query":"x","token":"[REDACTED]"},"digest":"sha256:9c1e...","size":38}

Sinks
    ``stdout`` (the default), ``file`` (``path``, rotated when it would
    exceed ``max_bytes``, keeping ``backup_count`` old files; ``max_bytes: 0``
    never rotates; one process per file: give each worker its own path), or
    ``logger`` (the Python logger ``logger_name`` at ``level``, for apps that
    route logs themselves). Writes are thread-safe. A file that cannot be
    written is an error, so with ``mode: enforce`` requests that cannot be
    audited are refused. Writing is inline; for a slow disk set
    ``run_in_thread: true``.

Content
    ``args`` (tool and prompt arguments) are logged unless ``include_args:
    false``; results only with ``include_results: true``. Every key named in
    ``redact_fields``, at any depth, has its value replaced by
    ``"[REDACTED]"``, and so have query parameters of those names in URIs and
    HTTP query strings. Names match ignoring case, ``-`` and ``_``
    (``api_key`` covers ``API-Key`` and ``apiKey``). HTTP headers are never
    logged. The digest is taken after redaction, so a short secret cannot be
    recovered by hashing guesses; JSON HTTP bodies are redacted the same way
    before their digest, other bodies are digested as sent.

Decisions
    The executor knows each plugin's outcome and duration only once the
    chain has run: the manager then calls the plugin's ``observe_result``
    (:meth:`~AuditLogPlugin.log_result`), which writes one ``"event":
    "decision"`` line per plugin, also for chains a block stopped before the
    audit plugin's turn.

The plugin runs on every hook, in the ``audit`` category: it never changes or
blocks a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import logging.handlers
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from pydantic import Field, model_validator

from ..models import (
    Category,
    ExecutionRecord,
    GlobalContext,
    HookResult,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PluginConfig,
    PluginContext,
    PluginViolation,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from ..plugin import Plugin
from ._config import Settings, parse_config

__all__ = ["AuditLogPlugin", "AuditLogSettings"]

REDACTED = "[REDACTED]"

_DEFAULT_REDACT = (
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "client_secret",
)


class AuditLogSettings(Settings):
    """The ``config:`` of :class:`AuditLogPlugin`."""

    sink: Literal["stdout", "file", "logger"] = "stdout"
    path: str | None = None
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    backup_count: int = Field(default=5, ge=0)
    logger_name: str = "mcp_plugin_mw.audit"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    redact_fields: tuple[str, ...] = _DEFAULT_REDACT
    include_args: bool = True
    include_results: bool = False

    @model_validator(mode="after")
    def _sink_options(self) -> AuditLogSettings:
        if self.sink == "file" and not self.path:
            raise ValueError("sink file needs a path")
        if self.sink != "file" and self.path is not None:
            raise ValueError("path is only used with sink: file")
        return self


# --------------------------------------------------------------------------
# Sinks
# --------------------------------------------------------------------------


class _Sink(Protocol):
    def open(self) -> None: ...
    def write(self, line: str) -> None: ...
    def close(self) -> None: ...


class _StdoutSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def open(self) -> None:
        pass

    def write(self, line: str) -> None:
        # Looked up on each write so that a replaced sys.stdout (test capture,
        # a supervisor's redirection) is honoured.
        with self._lock:
            stream = sys.stdout
            stream.write(line + "\n")
            stream.flush()

    def close(self) -> None:
        pass


class _RaisingRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose write errors reach the caller.

    Logging handlers print and swallow their errors; an audit trail must not
    lose lines silently. ``handleError`` runs inside ``emit``'s ``except``
    block, so a bare ``raise`` re-raises the write error.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        raise


class _FileSink:
    def __init__(self, path: str, max_bytes: int, backup_count: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._lock = threading.Lock()
        self._handler: _RaisingRotatingFileHandler | None = None

    def open(self) -> None:
        with self._lock:
            if self._handler is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handler = _RaisingRotatingFileHandler(
                    self.path, maxBytes=self.max_bytes, backupCount=self.backup_count, encoding="utf-8"
                )
                handler.setFormatter(logging.Formatter("%(message)s"))
                self._handler = handler

    def write(self, line: str) -> None:
        if self._handler is None:
            self.open()
        assert self._handler is not None
        # handle() takes the handler's lock around rotation and the write.
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))

    def close(self) -> None:
        with self._lock:
            if self._handler is not None:
                self._handler.close()
                self._handler = None


class _LoggerSink:
    def __init__(self, name: str, level: str) -> None:
        self._logger = logging.getLogger(name)
        self._level = logging.getLevelName(level)

    def open(self) -> None:
        pass

    def write(self, line: str) -> None:
        self._logger.log(self._level, "%s", line)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------


class AuditLogPlugin(Plugin):
    """Writes a JSON line per hook call, and per plugin decision on request; see the module docstring."""

    default_category: ClassVar[Category] = Category.AUDIT

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(AuditLogSettings, self.config)
        self._redact = frozenset(_normalize(name) for name in settings.redact_fields)
        self._sink: _Sink
        if settings.sink == "file":
            assert settings.path is not None
            self._sink = _FileSink(settings.path, settings.max_bytes, settings.backup_count)
        elif settings.sink == "logger":
            self._sink = _LoggerSink(settings.logger_name, settings.level)
        else:
            self._sink = _StdoutSink()

    def initialize(self) -> None:
        """Open the sink, so that an unwritable file fails at start."""
        self._sink.open()

    def shutdown(self) -> None:
        """Close the sink."""
        self._sink.close()

    # ------------------------------------------------------------------
    # Hooks
    # ------------------------------------------------------------------

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> None:
        """Log a tool call."""
        self._hook(HookType.TOOL_PRE_INVOKE, context, {"tool": payload.name}, args=payload.args)

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> None:
        """Log a tool result."""
        fields: dict[str, Any] = {"tool": payload.name}
        if isinstance(payload.result, dict) and "isError" in payload.result:
            fields["is_error"] = payload.result["isError"]
        self._hook(HookType.TOOL_POST_INVOKE, context, fields, result=payload.result)

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> None:
        """Log a prompt fetch."""
        self._hook(HookType.PROMPT_PRE_FETCH, context, {"prompt": payload.prompt_id}, args=payload.args)

    def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> None:
        """Log a rendered prompt."""
        self._hook(HookType.PROMPT_POST_FETCH, context, {"prompt": payload.prompt_id}, result=payload.result)

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> None:
        """Log a resource read."""
        fields = {"uri": self._redact_uri(payload.uri)}
        self._hook(HookType.RESOURCE_PRE_FETCH, context, fields, args=payload.metadata, log_args=False)

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> None:
        """Log fetched resource contents."""
        fields = {"uri": self._redact_uri(payload.uri)}
        self._hook(HookType.RESOURCE_POST_FETCH, context, fields, result=payload.content)

    def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> None:
        """Log an HTTP request (never its headers)."""
        fields: dict[str, Any] = {"method": payload.method, "path": payload.path}
        if payload.query_string:
            fields["query"] = self._redact_query(payload.query_string)
        if payload.client:
            fields["client"] = payload.client
        self._http(HookType.HTTP_PRE_REQUEST, context, fields, payload.body)

    def http_post_request(self, payload: HttpPostRequestPayload, context: PluginContext) -> None:
        """Log an HTTP response (never its headers)."""
        fields = {"method": payload.method, "path": payload.path, "status_code": payload.status_code}
        self._http(HookType.HTTP_POST_REQUEST, context, fields, payload.body)

    # ------------------------------------------------------------------
    # Decisions, after a chain
    # ------------------------------------------------------------------

    def log_records(
        self,
        hook: HookType | str,
        context: GlobalContext | PluginContext,
        records: Iterable[ExecutionRecord],
        *,
        violation: PluginViolation | None = None,
    ) -> None:
        """Write one ``"decision"`` line per plugin call of a finished chain.

        :param violation: the violation that stopped the chain, if any; its
            code and reason go on the blocking plugin's line.
        """
        base = self._base(HookType(hook), context, "decision")
        for record in records:
            entry = {
                **base,
                "plugin": record.plugin,
                "outcome": str(record.outcome),
                "duration_ms": round(record.duration * 1000, 3),
            }
            if record.error:
                entry["error"] = record.error
            if violation is not None and violation.plugin_name == record.plugin:
                entry["code"] = violation.code
                entry["reason"] = violation.reason
            self._write(entry)

    def log_result(self, hook: HookType | str, context: GlobalContext | PluginContext, result: HookResult) -> None:
        """:meth:`log_records` for the result of ``manager.invoke``."""
        self.log_records(hook, context, result.records, violation=result.violation)

    observe_result = log_result
    """Called by the manager after every chain, so decisions are logged without wiring."""

    # ------------------------------------------------------------------
    # Building lines
    # ------------------------------------------------------------------

    def _base(self, hook: HookType, context: GlobalContext | PluginContext, event: str) -> dict[str, Any]:
        shared = context.global_context if isinstance(context, PluginContext) else context
        entry: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "request_id": shared.request_id,
            "hook": hook.value,
            "user": shared.user,
            "tenant_id": shared.tenant_id,
        }
        if shared.server_id is not None:
            entry["server_id"] = shared.server_id
        return entry

    def _hook(
        self,
        hook: HookType,
        context: PluginContext,
        fields: dict[str, Any],
        *,
        args: Any = None,
        result: Any = None,
        log_args: bool = True,
    ) -> None:
        entry = {**self._base(hook, context, "hook"), **fields}
        redacted = self._redact_value(args if hook.is_request else result)
        if hook.is_request and log_args and self.settings.include_args:
            entry["args"] = redacted
        elif not hook.is_request and self.settings.include_results:
            entry["result"] = redacted
        # The digest covers the entity as well as its data: the same arguments
        # sent to two tools digest differently.
        encoded = _dumps({**fields, "data": redacted}, sort_keys=True)
        entry["digest"] = "sha256:" + hashlib.sha256(encoded).hexdigest()
        entry["size"] = len(encoded)
        self._write(entry)

    def _http(self, hook: HookType, context: PluginContext, fields: dict[str, Any], body: bytes) -> None:
        entry = {**self._base(hook, context, "hook"), **fields}
        digested = body
        if body[:1] in (b"{", b"["):
            # A JSON body is digested after redaction, like arguments: a
            # digest of the raw bytes would let a short secret be guessed.
            with contextlib.suppress(orjson.JSONDecodeError):
                digested = _dumps(self._redact_value(orjson.loads(body)))
        entry["digest"] = "sha256:" + hashlib.sha256(digested).hexdigest()
        entry["size"] = len(body)
        self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        self._sink.write(_dumps(entry).decode("utf-8"))

    # ------------------------------------------------------------------
    # Redaction
    # ------------------------------------------------------------------

    def _redact_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: REDACTED if isinstance(key, str) and _normalize(key) in self._redact else self._redact_value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._redact_value(item) for item in value]
        return value

    def _redact_query(self, query: str) -> str:
        pairs = parse_qsl(query, keep_blank_values=True)
        if not any(_normalize(name) in self._redact for name, _ in pairs):
            return query
        redacted = [(name, REDACTED if _normalize(name) in self._redact else value) for name, value in pairs]
        return urlencode(redacted, safe="[]")

    def _redact_uri(self, uri: str) -> str:
        try:
            parts = urlsplit(uri)
        except ValueError:
            return uri
        if not parts.query:
            return uri
        query = self._redact_query(parts.query)
        return uri if query == parts.query else urlunsplit(parts._replace(query=query))


def _normalize(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    # default=str: an audit line must be written even for a value JSON cannot
    # hold (bytes, a custom object a plugin left in a payload).
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(value, default=str, option=option)
