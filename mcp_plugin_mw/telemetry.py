"""
OpenTelemetry spans
===================

When ``opentelemetry-api`` is importable and a tracer provider is set (an
SDK), each hook invocation that runs at least one plugin becomes a span named
``mcp_plugin_mw <hook>``:

* It is the current span while the plugins run, so spans a plugin starts
  (and spans of the libraries it calls) are its children, on either path:
  ``invoke`` and ``invoke_sync``, sync plugins, async plugins on the caller's
  loop or on the background loop, and blocking plugins on worker threads.
* Each plugin call becomes a child span ``plugin <name>`` placed at the
  call's real start and end (created when the chain is done, from the
  executor's clock readings, so the hot loop records two floats per call and
  nothing else). A failed or timed-out call has an error status.
* Attributes: ``mcp_plugin_mw.hook``, ``mcp_plugin_mw.request_id``,
  ``mcp_plugin_mw.blocked``, ``mcp_plugin_mw.modified``, and for a violation
  ``mcp_plugin_mw.violation.code`` and ``mcp_plugin_mw.violation.plugin`` (also
  on the blocking plugin's span).
* The span always ends: when the chain raises or is cancelled it ends with an
  error status (:func:`fail`).

Out-of-process plugins continue the trace: :func:`inject` adds the current
context's W3C ``traceparent`` (and ``tracestate``, and whatever else the
configured propagators write) to each request a sidecar, a child process or
an MCP plugin server receives, and ``serve-plugin`` makes the context it
receives current while the hosted plugin runs (:func:`remote_context`).

Without the package, or with no SDK configured, :func:`start` returns None
after a few global reads, and nothing else happens: no span, no context
change, no timestamps beyond the executor's own clock readings.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from time import perf_counter, time_ns
from typing import Any

from .models import GlobalContext, HookResult, HookType, Outcome

__all__ = ["PROPAGATES", "HookSpan", "fail", "finish", "inject", "remote_context", "start"]

logger = logging.getLogger("mcp_plugin_mw.telemetry")

try:
    from opentelemetry import context as _context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised when the extra is absent
    _context = None  # type: ignore[assignment]
    _propagate = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

PROPAGATES = _propagate is not None
"""Whether :func:`inject` can add anything (OpenTelemetry is importable)."""

_tracer: Any = None
_UNKNOWN: Any = object()
# Read once: the API reads it to pick a provider the first time one is asked for.
_PROVIDER_FROM_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_IDLE_PROVIDERS: tuple[type, ...] = (
    (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider) if _trace is not None else ()
)
_FAILED = frozenset({Outcome.ERROR, Outcome.TIMEOUT})


class HookSpan:
    """A hook invocation's span while its chain runs: what :func:`finish` and :func:`fail` need."""

    __slots__ = ("context", "origin", "span", "start_ns", "token")

    def __init__(self, span: Any, context: Any, token: Any, start_ns: int, origin: float) -> None:
        self.span = span
        self.context = context
        """The OpenTelemetry context holding ``span``: the plugins' spans' parent."""
        self.token = token
        """What detaches ``context`` again, in the context it was attached in."""
        self.start_ns = start_ns
        self.origin = origin
        """``perf_counter()`` at ``start_ns``: maps the executor's clock to the span's."""

    def at(self, counter: float) -> int:
        """The span clock's time (ns since the epoch) of a ``perf_counter()`` reading."""
        return self.start_ns + int((counter - self.origin) * 1e9)


def start(hook: HookType, context: GlobalContext) -> HookSpan | None:
    """Start the span for one hook invocation and make it current; None without an SDK.

    The caller must hand what this returns to :func:`finish` or :func:`fail`
    in the same context (thread, or task) that called this.
    """
    global _tracer
    if _trace is None:
        return None
    if _tracer is None:
        _tracer = _trace.get_tracer("mcp_plugin_mw")
    if isinstance(_tracer, _trace.ProxyTracer) and _idle():
        # No SDK is configured (yet): a no-op span would still cost a few
        # microseconds per hook. Checked per call, so a provider set later counts.
        return None
    origin = perf_counter()
    start_ns = time_ns()
    span = _tracer.start_span(
        f"mcp_plugin_mw {hook.value}",
        attributes={"mcp_plugin_mw.hook": hook.value, "mcp_plugin_mw.request_id": context.request_id},
        start_time=start_ns,
    )
    if not span.is_recording():
        return None
    current = _trace.set_span_in_context(span)
    return HookSpan(span, current, _context.attach(current), start_ns, origin)


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


def finish(hook_span: HookSpan, result: HookResult) -> None:
    """Add a child span per plugin call and the decision, then end the span."""
    span = hook_span.span
    try:
        _plugin_spans(hook_span, result)
        violation = result.violation
        attributes: dict[str, Any] = {
            "mcp_plugin_mw.blocked": not result.continue_processing,
            "mcp_plugin_mw.modified": result.modified_payload is not None,
        }
        if violation is not None:
            attributes["mcp_plugin_mw.violation.code"] = violation.code
            attributes["mcp_plugin_mw.violation.plugin"] = violation.plugin_name or ""
        span.set_attributes(attributes)
    except Exception:
        # Telemetry is bookkeeping: it must never fail a request.
        logger.exception("recording the span of %s failed", span)
    finally:
        _end(hook_span)


def _plugin_spans(hook_span: HookSpan, result: HookResult) -> None:
    tracer, parent = _tracer, hook_span.context
    violation = result.violation
    # A record without a start (built by hand) follows the one before it.
    cursor = hook_span.origin
    for record in result.records:
        begun = cursor if record.start is None else record.start
        cursor = begun + record.duration
        outcome = record.outcome
        attributes: dict[str, Any] = {"mcp_plugin_mw.plugin": record.plugin, "mcp_plugin_mw.outcome": outcome.value}
        if record.error:
            attributes["mcp_plugin_mw.error"] = record.error
        if outcome is Outcome.BLOCKED and violation is not None and violation.plugin_name == record.plugin:
            attributes["mcp_plugin_mw.violation.code"] = violation.code
        child = tracer.start_span(
            f"plugin {record.plugin}", context=parent, attributes=attributes, start_time=hook_span.at(begun)
        )
        if outcome in _FAILED:
            child.set_status(_trace.Status(_trace.StatusCode.ERROR, record.error))
        child.end(end_time=hook_span.at(cursor))


def fail(hook_span: HookSpan, error: BaseException) -> None:
    """End the span of a hook invocation that raised (or was cancelled), with an error status."""
    span = hook_span.span
    try:
        name = type(error).__name__
        span.set_attributes({"mcp_plugin_mw.error": name, "error.type": type(error).__qualname__})
        if isinstance(error, Exception):
            span.record_exception(error)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{name}: {error}" if str(error) else name))
    except Exception:
        logger.exception("recording the failure on the span of %s failed", span)
    finally:
        _end(hook_span)


def _end(hook_span: HookSpan) -> None:
    try:
        _context.detach(hook_span.token)
    finally:
        # On the same clock as the plugins' spans, so they end within it.
        hook_span.span.end(end_time=hook_span.at(perf_counter()))


# --------------------------------------------------------------------------
# Across processes
# --------------------------------------------------------------------------


def inject(carrier: MutableMapping[str, str]) -> None:
    """Add the current trace context to ``carrier`` (HTTP headers): W3C ``traceparent`` and ``tracestate``.

    What is added is up to the configured propagators (``OTEL_PROPAGATORS``;
    W3C trace context and baggage by default). Nothing without OpenTelemetry,
    or when no span is current.
    """
    if _propagate is not None:
        _propagate.inject(carrier)


@contextlib.contextmanager
def remote_context(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context in ``carrier`` (a request's headers) current for the block.

    A plugin hosted out of process so continues the caller's trace: its
    spans become children of the span that sent the request.
    """
    if _propagate is None or _trace.get_current_span().get_span_context().is_valid:
        # A server span is current already (an instrumented server): it holds
        # the caller's context, and the plugin's spans belong under it.
        yield
        return
    token = _context.attach(_propagate.extract(carrier, _context.get_current()))
    try:
        yield
    finally:
        _context.detach(token)
