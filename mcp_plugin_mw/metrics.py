"""
Prometheus metrics
==================

With ``prometheus-client`` installed (extra ``metrics``), :func:`enable`
counts what a manager's plugins do::

    import mcp_plugin_mw.metrics

    mcp_plugin_mw.metrics.enable(manager)              # the default registry
    mcp_plugin_mw.metrics.enable(manager, registry=my_registry)

Families (one set per registry, shared by every manager enabled on it):

``mcp_plugin_mw_plugin_calls_total{plugin,hook,outcome}``
    Counter: plugin calls by outcome (``passed``, ``modified``, ``blocked``,
    ``violation_ignored``, ``modification_dropped``, ``error``, ``timeout``).
``mcp_plugin_mw_plugin_duration_seconds{plugin,hook}``
    Histogram: seconds per plugin call (:data:`DURATION_BUCKETS`).
``mcp_plugin_mw_violations_total{plugin,code}``
    Counter: violations that blocked a message, by the violation's code.
``mcp_plugin_mw_hook_invocations_total{hook,outcome}``
    Counter: hook invocations that ran plugins, by what came of the message
    (``passed``, ``modified``, ``blocked``): the requests by outcome.

A manager that was never enabled pays nothing: no observer is registered.
:func:`mcp_plugin_mw.admin_app` enables its manager when ``prometheus-client``
is installed and serves the text at ``GET /metrics``.

In one process every count lives in the manager's :class:`Tally` (plain
lists under one lock, under a microsecond per plugin call: see
``benchmarks/metrics.py``; the admin app's ``/plugins`` reads the same one),
and the samples are built when the registry is scraped.

Several worker processes (gunicorn): set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory before the workers start (prometheus-client reads it when it
is imported); the counts are then kept in prometheus-client's own metrics
(a few microseconds per plugin call), which every worker writes there, and
``/metrics``, whichever worker answers it, reports the sums over all of them
(:func:`collect_text` uses ``prometheus_client.multiprocess``). In the
gunicorn configuration::

    from prometheus_client import multiprocess

    def child_exit(server, worker):
        multiprocess.mark_process_dead(worker.pid)
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_left as _bisect_left
from typing import TYPE_CHECKING, Any

from .models import GlobalContext, HookResult, HookType, Outcome

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .manager import PluginManager

__all__ = [
    "DURATION_BUCKETS",
    "MetricsUnavailable",
    "Tally",
    "available",
    "collect_text",
    "enable",
    "is_enabled",
    "tally_for",
]

DURATION_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Seconds: plugin calls take from microseconds (in process) to seconds (out of process)."""

INSTALL_HINT = "metrics need prometheus-client: pip install 'mcp-plugin-mw[metrics]'"


class MetricsUnavailable(RuntimeError):
    """``prometheus-client`` is not installed."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def available() -> bool:
    """Whether ``prometheus-client`` can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


_CALLS = ("mcp_plugin_mw_plugin_calls", "Plugin calls, by plugin, hook and outcome.", ("plugin", "hook", "outcome"))
_DURATION = ("mcp_plugin_mw_plugin_duration_seconds", "Seconds per plugin call.", ("plugin", "hook"))
_VIOLATIONS = (
    "mcp_plugin_mw_violations",
    "Violations that blocked a message, by plugin and violation code.",
    ("plugin", "code"),
)
_INVOCATIONS = (
    "mcp_plugin_mw_hook_invocations",
    "Hook invocations that ran plugins, by hook and what came of the message (passed, modified, blocked).",
    ("hook", "outcome"),
)


def _message_outcome(result: HookResult) -> str:
    if result.violation is not None or not result.continue_processing:
        return "blocked"
    return "passed" if result.modified_payload is None else "modified"


# --------------------------------------------------------------------------
# In one process: plain counts, turned into samples when scraped
# --------------------------------------------------------------------------


def plain_records(result: HookResult) -> list[Any]:
    """``result``'s calls without building their records: ``(plugin, seconds)`` pairs for calls that passed.

    An observer that reads ``result.records`` builds an :class:`ExecutionRecord`
    per call that passed, which the executor goes out of its way not to do;
    counting needs only the name, the outcome and the time. Each item is
    either an ``ExecutionRecord`` or a ``(plugin, seconds)`` pair (outcome
    ``passed``); see :func:`call_outcome`.
    """
    raw = getattr(result, "_records", None)
    return raw if type(raw) is list else result.records


def call_outcome(item: Any) -> tuple[str, str, float]:
    """``(plugin, outcome, seconds)`` of an item of :func:`plain_records`."""
    if type(item) is tuple:
        return item[0], _PASSED, item[1]
    return item.plugin, item.outcome._value_, item.duration


_PASSED = Outcome.PASSED.value
_OUTCOMES = [outcome.value for outcome in Outcome]
_OUTCOME_SLOT = {name: index for index, name in enumerate(_OUTCOMES)}
_BUCKETS_AT = len(_OUTCOMES)
_SUM_AT = _BUCKETS_AT + len(DURATION_BUCKETS) + 1
_BLOCKED, _ERROR, _TIMEOUT = (_OUTCOME_SLOT[o.value] for o in (Outcome.BLOCKED, Outcome.ERROR, Outcome.TIMEOUT))
_BOUNDS = [*(repr(float(bound)) for bound in DURATION_BUCKETS), "+Inf"]  # as prometheus-client writes ``le``


class Tally:
    """One manager's counts, kept in lists under one lock; attach it with :func:`tally_for`.

    It needs nothing installed: the admin app's ``/plugins`` counts come
    from it, and in one process ``/metrics`` turns it into samples when
    scraped (:class:`_Collector`). A prometheus-client counter or histogram
    update costs about a microsecond (a lock and a few checks each); this
    costs a fraction of that per plugin call.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Per (plugin, hook): the calls per outcome, the calls per duration
        # bucket (the last for +Inf), and the sum of the durations.
        self.rows: dict[tuple[str, str], list[float]] = {}
        self.violations: dict[tuple[str, str], int] = {}
        self.invocations: dict[tuple[str, str], int] = {}

    def __call__(self, hook: HookType, context: GlobalContext, result: HookResult) -> None:
        calls = plain_records(result)
        hook_name = hook._value_
        violation = result.violation
        outcome = _message_outcome(result)
        buckets, slot_of, at, sum_at, bisect_left = DURATION_BUCKETS, _OUTCOME_SLOT, _BUCKETS_AT, _SUM_AT, _bisect_left
        with self.lock:
            rows = self.rows
            for item in calls:
                if type(item) is tuple:
                    plugin, slot, duration = item[0], 0, item[1]
                else:
                    plugin, slot, duration = item.plugin, slot_of[item.outcome._value_], item.duration
                row = rows.get((plugin, hook_name))
                if row is None:
                    row = rows[plugin, hook_name] = [0.0] * (sum_at + 1)
                row[slot] += 1
                row[at + bisect_left(buckets, duration)] += 1
                row[sum_at] += duration
            if violation is not None:
                vkey = (violation.plugin_name or "", violation.code)
                self.violations[vkey] = self.violations.get(vkey, 0) + 1
            ikey = (hook_name, outcome)
            self.invocations[ikey] = self.invocations.get(ikey, 0) + 1

    def snapshot(self) -> tuple[dict[Any, int], dict[Any, list[float]], dict[Any, int], dict[Any, int]]:
        """Calls by (plugin, hook, outcome); buckets and sum by (plugin, hook); violations; invocations."""
        with self.lock:
            rows = {key: list(row) for key, row in self.rows.items()}
            violations, invocations = dict(self.violations), dict(self.invocations)
        calls: dict[Any, int] = {}
        durations: dict[Any, list[float]] = {}
        for (plugin, hook), row in rows.items():
            for index, name in enumerate(_OUTCOMES):
                if row[index]:
                    calls[plugin, hook, name] = int(row[index])
            durations[plugin, hook] = row[_BUCKETS_AT:]
        return calls, durations, violations, invocations

    def per_plugin(self) -> dict[str, tuple[int, int, int]]:
        """``(calls, violations, errors)`` by plugin name, over every hook.

        A violation is a call that blocked (``blocked``), an error one that
        raised or timed out (``error``, ``timeout``).
        """
        with self.lock:
            rows = [(plugin, row[:_BUCKETS_AT]) for (plugin, _hook), row in self.rows.items()]
        counts: dict[str, tuple[int, int, int]] = {}
        for plugin, outcomes in rows:
            calls, violations, errors = counts.get(plugin, (0, 0, 0))
            counts[plugin] = (
                calls + int(sum(outcomes)),
                violations + int(outcomes[_BLOCKED]),
                errors + int(outcomes[_ERROR] + outcomes[_TIMEOUT]),
            )
        return counts


_tallies_lock = threading.Lock()
_tallies: weakref.WeakKeyDictionary[PluginManager, Tally] = weakref.WeakKeyDictionary()


def tally_for(manager: PluginManager) -> Tally:
    """The :class:`Tally` of ``manager``, attached as its observer on first use (once per manager)."""
    with _tallies_lock:
        tally = _tallies.get(manager)
        if tally is None:
            tally = _tallies[manager] = Tally()
            manager.add_observer(tally)
        return tally


class _Collector:
    """The four families of one registry, summed over the tallies of every manager enabled on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: list[Tally] = []

    def add(self, tally: Tally) -> None:
        with self._lock:
            if all(known is not tally for known in self._tallies):
                self._tallies = [*self._tallies, tally]

    def describe(self) -> list[Any]:
        return self._families()

    @staticmethod
    def _families() -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        return [
            CounterMetricFamily(_CALLS[0], _CALLS[1], labels=_CALLS[2]),
            HistogramMetricFamily(_DURATION[0], _DURATION[1], labels=_DURATION[2]),
            CounterMetricFamily(_VIOLATIONS[0], _VIOLATIONS[1], labels=_VIOLATIONS[2]),
            CounterMetricFamily(_INVOCATIONS[0], _INVOCATIONS[1], labels=_INVOCATIONS[2]),
        ]

    def collect(self) -> list[Any]:
        calls: dict[Any, int] = {}
        durations: dict[Any, list[float]] = {}
        violations: dict[Any, int] = {}
        invocations: dict[Any, int] = {}
        for tally in self._tallies:
            tally_calls, tally_durations, tally_violations, tally_invocations = tally.snapshot()
            for into, counts in (
                (calls, tally_calls),
                (violations, tally_violations),
                (invocations, tally_invocations),
            ):
                for key, count in counts.items():
                    into[key] = into.get(key, 0) + count
            for key, histogram in tally_durations.items():
                known = durations.get(key)
                durations[key] = histogram if known is None else [a + b for a, b in zip(known, histogram, strict=True)]
        calls_family, duration_family, violations_family, invocations_family = self._families()
        for key, count in sorted(calls.items()):
            calls_family.add_metric(list(key), count)
        bounds = _BOUNDS
        for key, histogram in sorted(durations.items()):
            cumulative, running = [], 0.0
            for bound, in_bucket in zip(bounds, histogram, strict=False):
                running += in_bucket
                cumulative.append((bound, running))
            duration_family.add_metric(list(key), cumulative, histogram[-1])
        for key, count in sorted(violations.items()):
            violations_family.add_metric(list(key), count)
        for key, count in sorted(invocations.items()):
            invocations_family.add_metric(list(key), count)
        return [calls_family, duration_family, violations_family, invocations_family]


# --------------------------------------------------------------------------
# Several processes: prometheus-client's own metrics, which write to files
# --------------------------------------------------------------------------


class _Families:
    """The four families of one registry as prometheus-client metrics (multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        self.calls = Counter(*_CALLS, registry=registry)
        self.duration = Histogram(*_DURATION, buckets=DURATION_BUCKETS, registry=registry)
        self.violations = Counter(*_VIOLATIONS, registry=registry)
        self.invocations = Counter(*_INVOCATIONS, registry=registry)


class _Observer:
    """The manager observer that updates one registry's prometheus-client metrics.

    The labelled children are cached by their label values: ``labels()`` is
    the slow part of an update.
    """

    def __init__(self, families: _Families) -> None:
        self._families = families
        self._calls: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}
        self._violations: dict[tuple[str, str], Any] = {}
        self._invocations: dict[tuple[str, str], Any] = {}

    def __call__(self, hook: HookType, context: GlobalContext, result: HookResult) -> None:
        hook_name = hook.value
        calls, durations = self._calls, self._durations
        for item in plain_records(result):
            plugin, outcome, duration = call_outcome(item)
            key = (plugin, hook_name, outcome)
            counter = calls.get(key)
            if counter is None:
                counter = calls[key] = self._families.calls.labels(plugin, hook_name, outcome)
            counter.inc()
            histogram = durations.get((plugin, hook_name))
            if histogram is None:
                histogram = durations[plugin, hook_name] = self._families.duration.labels(plugin, hook_name)
            histogram.observe(duration)
        violation = result.violation
        if violation is not None:
            vkey = (violation.plugin_name or "", violation.code)
            counter = self._violations.get(vkey)
            if counter is None:
                counter = self._violations[vkey] = self._families.violations.labels(*vkey)
            counter.inc()
        ikey = (hook_name, _message_outcome(result))
        counter = self._invocations.get(ikey)
        if counter is None:
            counter = self._invocations[ikey] = self._families.invocations.labels(*ikey)
        counter.inc()


_lock = threading.Lock()
_sinks: weakref.WeakKeyDictionary[CollectorRegistry, _Collector | _Families] = weakref.WeakKeyDictionary()
_enabled: weakref.WeakKeyDictionary[PluginManager, list[CollectorRegistry]] = weakref.WeakKeyDictionary()


def _registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        raise MetricsUnavailable() from None
    return REGISTRY if registry is None else registry


def enable(manager: PluginManager, registry: CollectorRegistry | None = None) -> None:
    """Count ``manager``'s plugin calls, violations and hook invocations in ``registry``.

    ``registry`` defaults to prometheus-client's global ``REGISTRY``. Enabling
    the same manager on the same registry again does nothing; the counts
    carry on across the manager's reloads.

    :raises MetricsUnavailable: when ``prometheus-client`` is not installed.
    """
    registry = _registry(registry)
    with _lock:
        registries = _enabled.setdefault(manager, [])
        if any(known is registry for known in registries):
            return
        sink = _sinks.get(registry)
        if sink is None:
            if multiprocess_dir() is not None:
                sink = _Families(registry)
            else:
                sink = _Collector()
                registry.register(sink)
            _sinks[registry] = sink
        registries.append(registry)
        if isinstance(sink, _Collector):
            sink.add(tally_for(manager))  # the tally the admin app reads too: one observer for both
        else:
            manager.add_observer(_Observer(sink))


def is_enabled(manager: PluginManager, registry: CollectorRegistry | None = None) -> bool:
    """Whether :func:`enable` was called for ``manager`` on ``registry`` (the global one by default)."""
    if not available():
        return False
    registry = _registry(registry)
    with _lock:
        return any(known is registry for known in _enabled.get(manager, ()))


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR``, if set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def collect_text(registry: CollectorRegistry | None = None, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition text and its content type, for an HTTP ``Accept`` header.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, the counts of every process that
    wrote there (summed); otherwise ``registry``'s (the global one by default).

    :raises MetricsUnavailable: when ``prometheus-client`` is not installed.
    """
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder
    except ImportError:
        raise MetricsUnavailable() from None
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
    else:
        source = _registry(registry)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(source), content_type
