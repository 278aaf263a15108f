"""
OpenTelemetry spans
===================

When ``opentelemetry-api`` is importable, each hook invocation that runs at
least one plugin becomes a span named ``mcp_plugin_mw <hook>``, with one event
per plugin call (name, outcome, duration) and the final decision as
attributes. Without the package, :func:`start` returns None and costs one
global lookup.
"""

from __future__ import annotations

import os
from typing import Any

from .models import GlobalContext, HookResult, HookType

__all__ = ["fail", "finish", "start"]

try:
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised when the extra is absent
    _trace = None  # type: ignore[assignment]

_tracer: Any = None
_UNKNOWN: Any = object()
# Read once: the API reads it to pick a provider the first time one is asked for.
_PROVIDER_FROM_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_IDLE_PROVIDERS: tuple[type, ...] = (
    (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider) if _trace is not None else ()
)


def start(hook: HookType, context: GlobalContext) -> Any:
    """Start the span for one hook invocation, or return None without OpenTelemetry."""
    global _tracer
    if _trace is None:
        return None
    if _tracer is None:
        _tracer = _trace.get_tracer("mcp_plugin_mw")
    if isinstance(_tracer, _trace.ProxyTracer) and _idle():
        # No SDK is configured (yet): a no-op span would still cost a few
        # microseconds per hook. Checked per call, so a provider set later counts.
        return None
    span = _tracer.start_span(f"mcp_plugin_mw {hook.value}")
    if not span.is_recording():
        return None
    span.set_attribute("mcp_plugin_mw.hook", hook.value)
    span.set_attribute("mcp_plugin_mw.request_id", context.request_id)
    return span


def _idle() -> bool:
    """Whether no tracer provider is set: OpenTelemetry would only hand out no-op spans."""
    # get_tracer_provider() looks the environment up on every call until a
    # provider is set; its module global tells the same without that cost.
    current = getattr(_trace, "_TRACER_PROVIDER", _UNKNOWN)
    if current is None:
        return not _PROVIDER_FROM_ENVIRONMENT
    if current is _UNKNOWN:  # an API without that global: ask it
        current = _trace.get_tracer_provider()
    return isinstance(current, _IDLE_PROVIDERS)


def finish(span: Any, result: HookResult) -> None:
    """Record each plugin's outcome and the decision, then end the span."""
    for record in result.records:
        attributes = {
            "mcp_plugin_mw.plugin": record.plugin,
            "mcp_plugin_mw.hook": record.hook.value,
            "mcp_plugin_mw.outcome": record.outcome.value,
            "mcp_plugin_mw.duration_ms": record.duration * 1000.0,
        }
        if record.error:
            attributes["mcp_plugin_mw.error"] = record.error
        span.add_event(f"plugin {record.plugin}", attributes)
    span.set_attribute("mcp_plugin_mw.blocked", not result.continue_processing)
    span.set_attribute("mcp_plugin_mw.modified", result.modified_payload is not None)
    if result.violation is not None:
        span.set_attribute("mcp_plugin_mw.violation.code", result.violation.code)
        span.set_attribute("mcp_plugin_mw.violation.plugin", result.violation.plugin_name or "")
    span.end()


def fail(span: Any, error: BaseException) -> None:
    """End the span of a hook invocation that raised (or was cancelled)."""
    span.set_attribute("mcp_plugin_mw.error", type(error).__name__)
    span.end()
