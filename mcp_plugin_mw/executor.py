"""
The plugin pipeline
===================

Runs the plugins subscribed to a hook, in order, on one payload:

* Order: by category (observability, authentication, authorization,
  rate_limiting, validation, content, audit), then priority (lower first),
  then position in the configuration.
* Flow: request hooks run only plugins whose ``flow`` includes ``request``,
  response hooks only those that include ``response``.
* Chaining: each plugin sees the payload the previous one returned.
* In-place changes: a plugin that changes the payload's containers in place
  (``payload.args["text"] = ...``) instead of returning a copy has made a
  change all the same: it is treated exactly as if it had returned the
  changed payload as ``modified_payload``. The executor notices by comparing
  the JSON encoding of the payload's container fields (``args``, ``result``,
  ``content``, ``metadata``, ``headers``) before and after each call: one
  orjson call per call, which sees every byte the middleware would forward.
  Where such a change may not be applied (a category that may not modify, an
  ignored violation, a failure), the payload is put back from that encoding,
  so neither the next plugin nor the forwarded message ever sees it.
* Modes: ``enforce`` obeys violations and blocks on errors and timeouts
  (codes ``PLUGIN_ERROR`` and ``PLUGIN_TIMEOUT``); ``enforce_ignore_error``
  obeys violations and continues past failures; ``permissive`` only logs
  violations; ``disabled`` plugins are never scheduled. With
  ``fail_on_plugin_error`` every failure blocks.
* Category permissions: a change from a category that may not modify is
  dropped, a block from one that may not block is recorded and ignored.
  On the list hooks, authorization plugins may modify too: they narrow
  what a client is offered.
* Concurrency: observability plugins run concurrently; with
  ``parallel_execution_within_band`` so do plugins of equal priority in the
  other categories that may not modify.

The same rules run two ways: :meth:`Executor.run` on the caller's event loop,
and :meth:`Executor.run_sync` on the caller's thread. A hook whose chain holds
an async plugin is run by ``run_sync`` on the process's background loop in
one hop (a hop per plugin would cost a thread handoff each). Everything a hook needs is worked
out once at construction, so a call does no lookups and no parsing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import inspect
import itertools
import json
import logging
import operator
import re
import types
from collections.abc import Callable, Coroutine, Generator, Sequence
from time import perf_counter
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from . import _threads
from ._regex import UserPattern, compile_globs, compile_vetted_patterns
from .models import (
    Category,
    ExecutionRecord,
    GlobalContext,
    HookResult,
    HookType,
    Outcome,
    PluginCondition,
    PluginContext,
    PluginError,
    PluginMode,
    PluginResult,
    PluginSettings,
    PluginViolation,
    fresh_plugin_context,
)
from .plugin import Plugin

__all__ = ["Executor"]

logger = logging.getLogger("mcp_plugin_mw.executor")

# Which payload field names the entity a condition's tools/prompts/resources
# globs are matched against.
_ENTITY: dict[HookType, tuple[str, str]] = {
    HookType.TOOL_PRE_INVOKE: ("tools", "name"),
    HookType.TOOL_POST_INVOKE: ("tools", "name"),
    HookType.PROMPT_PRE_FETCH: ("prompts", "prompt_id"),
    HookType.PROMPT_POST_FETCH: ("prompts", "prompt_id"),
    HookType.RESOURCE_PRE_FETCH: ("resources", "uri"),
    HookType.RESOURCE_POST_FETCH: ("resources", "uri"),
}


_HOOK_NAMES = tuple(hook.value for hook in HookType)
_LIST_HOOKS = frozenset({HookType.TOOL_POST_LIST, HookType.PROMPT_POST_LIST, HookType.RESOURCE_POST_LIST})


class _Condition:
    """One compiled ``conditions`` item: every field given must match."""

    __slots__ = ("content_types", "entities", "server_ids", "tenant_ids", "user_patterns")

    def __init__(self, spec: PluginCondition) -> None:
        self.server_ids = frozenset(spec.server_ids) if spec.server_ids is not None else None
        self.tenant_ids = frozenset(spec.tenant_ids) if spec.tenant_ids is not None else None
        self.user_patterns = compile_vetted_patterns(spec.user_patterns, where="user_patterns")
        # Media types are case-insensitive; the request's is lower-cased too.
        self.content_types = _globs([p.lower() for p in spec.content_types] if spec.content_types is not None else None)
        self.entities = {
            kind: _globs(globs)
            for kind, globs in (("tools", spec.tools), ("prompts", spec.prompts), ("resources", spec.resources))
            if globs is not None
        }

    def matches(self, hook: HookType, payload: Any, context: GlobalContext) -> bool:
        if self.server_ids is not None and context.server_id not in self.server_ids:
            return False
        if self.tenant_ids is not None and context.tenant_id not in self.tenant_ids:
            return False
        if self.user_patterns is not None:
            user = context.user
            if user is None or not any(p.search(user) for p in self.user_patterns):
                return False
        if self.content_types is not None:
            media_type = (context.content_type or "").partition(";")[0].strip().lower()
            if not self.content_types.match(media_type):
                return False
        if self.entities:
            entity = _ENTITY.get(hook)
            if entity is None or entity[0] not in self.entities:
                return False
            pattern = self.entities[entity[0]]
            return pattern is not None and pattern.match(getattr(payload, entity[1])) is not None
        return True


_NOTHING = re.compile("(?!)")


def _globs(patterns: list[str] | None) -> UserPattern | re.Pattern[str] | None:
    # Tool names and media types are the client's: the globs run on RE2.
    if patterns is None:
        return None
    return compile_globs(patterns) or _NOTHING


@dataclasses.dataclass(slots=True, eq=False)
class _Entry:
    """A plugin bound to one hook, with everything a call needs."""

    name: str
    method: Callable[..., Any]
    is_async: bool
    in_thread: bool
    timeout: float
    block_on_error: bool
    obey_violations: bool
    may_modify: bool
    conditions: tuple[_Condition, ...]
    sort_key: tuple[int, int, int]


class _Run:
    """The state of one pass through a hook's chain.

    ``records`` holds ExecutionRecords, and ``(plugin, seconds, end)`` for
    calls that passed, ``end`` being the ``perf_counter()`` reading that
    ended the call (see HookResult). ``tracked`` tells how to read the
    payload's container fields (None when it has none); ``snapshot`` is
    their encoding (see :func:`_encoding`) as the payload currently should be.
    """

    # Built once per hook invocation: a plain class, tracked on the spot.
    __slots__ = ("context", "hook", "metadata", "modified", "payload", "records", "snapshot", "tracked", "violation")

    def __init__(
        self, hook: HookType, payload: Any, context: GlobalContext, records: list[Any] | None = None, track: bool = True
    ) -> None:
        self.hook = hook
        self.payload = payload
        self.context = context
        self.modified = False
        self.violation: PluginViolation | None = None
        self.metadata: dict[str, Any] = {}
        self.records: list[Any] = [] if records is None else records
        tracked = self.tracked = _tracked(type(payload)) if track else None
        self.snapshot: bytes | str | None = None if tracked is None else _encoding(tracked.read(payload))

    def result(self) -> HookResult:
        return HookResult._of_calls(
            self.hook,
            self.records,
            self.violation is None,
            self.payload if self.modified else None,
            self.violation,
            self.metadata,
        )


# A finished call: (result, error, timed out, seconds, perf_counter() at its start).
_Call = tuple[Any, BaseException | None, bool, float, float]

# A chain is a sequence of steps; a step is a batch of entries that run
# concurrently (most batches hold one entry).
_Step = tuple[_Entry, ...]


class Executor:
    """Runs plugins on hooks according to the rules in the module docstring.

    :param plugins: loaded plugins in configuration order; their
        ``plugin_config`` has hooks and category resolved.
    :param settings: the shared ``plugin_settings``.
    """

    def __init__(self, plugins: Sequence[Plugin], settings: PluginSettings) -> None:
        self._settings = settings
        entries: dict[HookType, list[_Entry]] = {hook: [] for hook in HookType}
        for position, plugin in enumerate(plugins):
            for hook in plugin.hooks:
                entry = self._entry(plugin, hook, position)
                if entry is not None:
                    entries[hook].append(entry)
        self._chains: dict[HookType, tuple[_Step, ...]] = {
            hook: self._steps(sorted(found, key=lambda e: e.sort_key)) for hook, found in entries.items()
        }
        self._active = frozenset(hook for hook, chain in self._chains.items() if chain)
        self._needs_loop = {hook: any(entry.is_async for entry in found) for hook, found in entries.items()}
        # Chains of plain sync plugins, one after the other: the common case,
        # run by a tighter loop (_run_inline) on either path.
        self._inline: dict[HookType, tuple[_Entry, ...] | None] = {
            hook: _inline_chain(chain) for hook, chain in self._chains.items()
        }

    @property
    def active_hooks(self) -> frozenset[HookType]:
        """The hooks at least one plugin would run on."""
        return self._active

    def has_hooks_for(self, hook: HookType | str) -> bool:
        """Whether any plugin would run on ``hook``."""
        # HookType is a StrEnum, so a plain string finds the same set member.
        if hook in self._active:
            return True
        if hook not in _HOOK_NAMES:
            raise ValueError(f"{hook!r} is not a hook; hooks are: {', '.join(_HOOK_NAMES)}")
        return False

    def _entry(self, plugin: Plugin, hook: HookType, position: int) -> _Entry | None:
        config = plugin.plugin_config
        if config.mode is PluginMode.DISABLED or not config.flow.includes(hook.flow):
            return None
        category = config.category or type(plugin).default_category
        method = getattr(plugin, hook.value)
        return _Entry(
            name=plugin.name,
            method=method,
            is_async=inspect.iscoroutinefunction(method),
            in_thread=plugin.blocking or config.run_in_thread,
            timeout=config.timeout or self._settings.plugin_timeout,
            block_on_error=config.mode is PluginMode.ENFORCE or self._settings.fail_on_plugin_error,
            obey_violations=category.may_block and config.mode is not PluginMode.PERMISSIVE,
            # A list result is what a client is offered: authorization
            # plugins may narrow it (hide what they would refuse).
            may_modify=category.may_modify or (category is Category.AUTHORIZATION and hook in _LIST_HOOKS),
            conditions=tuple(_Condition(c) for c in config.conditions),
            sort_key=(category.order, config.priority, position),
        )

    def _steps(self, ordered: list[_Entry]) -> tuple[_Step, ...]:
        steps: list[_Step] = []
        band_parallel = self._settings.parallel_execution_within_band
        for (category_order, _priority), group in itertools.groupby(ordered, key=lambda e: e.sort_key[:2]):
            batch = tuple(group)
            category = list(Category)[category_order]
            if category.parallel or (band_parallel and not category.may_modify):
                steps.append(batch)
            else:
                steps.extend((entry,) for entry in batch)
        # Observability plugins of every priority form one concurrent batch.
        merged: list[_Step] = []
        for step in steps:
            if merged and _is_parallel_category(step) and _is_parallel_category(merged[-1]):
                merged[-1] = merged[-1] + step
            else:
                merged.append(step)
        return tuple(merged)

    # ------------------------------------------------------------------
    # Running a chain
    # ------------------------------------------------------------------

    async def run(self, hook: HookType, payload: Any, context: GlobalContext) -> HookResult:
        """Run ``hook``'s chain on the running event loop."""
        inline = self._inline[hook]
        if inline is not None:
            return self._run_inline(inline, _Run(hook, payload, context))
        run = _Run(hook, payload, context)
        for step in self._chains[hook]:
            if len(step) == 1:
                entry = step[0]
                if entry.conditions and not _applies(entry, run):
                    continue
                call = await self._call_async(entry, run.payload, context)
                if self._settle(entry, call, run):
                    break
                continue
            batch = [entry for entry in step if not entry.conditions or _applies(entry, run)]
            calls = await asyncio.gather(*(self._call_async(e, run.payload, context) for e in batch))
            if self._settle_batch(batch, calls, run):
                break
        return run.result()

    def run_sync(self, hook: HookType, payload: Any, context: GlobalContext) -> HookResult:
        """Run ``hook``'s chain on the caller's thread, or on the background loop if it holds async plugins."""
        if self._needs_loop[hook]:
            if _threads.in_background_loop():
                raise RuntimeError("invoke_sync() called from the background loop; use 'await invoke()'")
            # One hop there and back, one loop iteration: see _threads.run_in_background.
            return _threads.run_in_background(self.run(hook, payload, context))
        inline = self._inline[hook]
        if inline is not None:
            return self._run_inline(inline, _Run(hook, payload, context))
        run = _Run(hook, payload, context)
        for step in self._chains[hook]:
            if len(step) == 1:
                entry = step[0]
                if entry.conditions and not _applies(entry, run):
                    continue
                call = self._call_sync(entry, run.payload, context)
                if self._settle(entry, call, run):
                    break
                continue
            batch = [entry for entry in step if not entry.conditions or _applies(entry, run)]
            if self._settle_batch(batch, self._call_batch_sync(batch, run.payload, context), run):
                break
        return run.result()

    def _run_inline(self, chain: tuple[_Entry, ...], run: _Run) -> HookResult:
        """Run a chain of plain sync plugins on this thread.

        The same rules as :meth:`_settle`, with the outcome nearly every call
        has (no opinion, nothing changed in place) settled on the spot.

        On a large payload, the in-place check after a plugin that may modify
        is put off to the next plugin that may not, to a plugin that answers,
        or to the end: every later plugin sees such a change either way, and
        one encoding then serves several calls. A change found so is recorded
        on the last plugin that could have made it.
        """
        context, records = run.context, run.records
        contexts = context.plugin_contexts
        clock = perf_counter
        read = run.tracked.read if run.tracked is not None else None
        dumps = _dumps
        deferrable = _is_large(run.snapshot)
        deferred: list[int] = []
        start = clock()
        for entry in chain:
            if entry.conditions and not _applies(entry, run):
                continue
            if deferred and not entry.may_modify:
                _settle_deferred(run, deferred)
            name = entry.name
            plugin_context = contexts.get(name)
            if plugin_context is None:
                plugin_context = contexts[name] = fresh_plugin_context(context)
            # One clock reading per call: each call's end starts the next, so
            # a duration also holds the bookkeeping (the in-place check) before it.
            try:
                result = entry.method(run.payload, plugin_context)
            except Exception as exc:
                end = clock()
                _settle_deferred(run, deferred)
                stop = self._settle(entry, (None, exc, False, end - start, start), run)
                start = clock()
                if stop:
                    break
                continue
            end = clock()
            duration, start = end - start, end
            if result is None:
                if read is None:
                    records.append((name, duration, end))
                    continue
                if deferrable and entry.may_modify:
                    deferred.append(len(records))
                    records.append((name, duration, end))
                    continue
                try:
                    same = dumps(read(run.payload)) == run.snapshot
                except TypeError:
                    same = _changed_in_place(run) is None
                if same:
                    records.append((name, duration, end))
                    continue
            _settle_deferred(run, deferred)
            stop = self._settle(entry, (result, None, False, duration, end - duration), run)
            start = clock()
            if stop:
                break
            read = run.tracked.read if run.tracked is not None else None
            deferrable = _is_large(run.snapshot)
        _settle_deferred(run, deferred)
        return run.result()

    # ------------------------------------------------------------------
    # Calling one plugin
    # ------------------------------------------------------------------

    async def _call_async(self, entry: _Entry, payload: Any, context: GlobalContext) -> _Call:
        plugin_context = _plugin_context(entry, context)
        start = perf_counter()
        if not entry.is_async and not entry.in_thread:
            return _call_inline(entry, payload, plugin_context, start)
        awaitable: Any
        if entry.is_async:
            # Most async hooks finish without suspending. Step the coroutine
            # once by hand: if it is done, no timer was needed, and arming
            # asyncio.timeout would have been half the cost of the call.
            coroutine = entry.method(payload, plugin_context)
            try:
                suspended_on = coroutine.send(None)
            except StopIteration as done:
                return done.value, None, False, perf_counter() - start, start
            except (Exception, asyncio.CancelledError) as exc:
                # Nothing was awaited yet, so a CancelledError is the plugin's
                # own failure, never the caller being cancelled.
                return None, exc, False, perf_counter() - start, start
            awaitable = _Resume(coroutine, suspended_on)
        else:
            awaitable = asyncio.wrap_future(self._submit(entry, payload, plugin_context))
        timeout = asyncio.timeout(entry.timeout)
        try:
            async with timeout:
                result = await awaitable
        except TimeoutError as exc:
            return None, exc, timeout.expired(), perf_counter() - start, start
        except asyncio.CancelledError as exc:
            # A plugin that awaited something cancelled fails like any other
            # (as it does on the sync path); only the caller's own
            # cancellation propagates.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return None, exc, False, perf_counter() - start, start
        except Exception as exc:
            return None, exc, False, perf_counter() - start, start
        return result, None, False, perf_counter() - start, start

    def _call_sync(self, entry: _Entry, payload: Any, context: GlobalContext) -> _Call:
        plugin_context = _plugin_context(entry, context)
        start = perf_counter()
        if not entry.in_thread:
            return _call_inline(entry, payload, plugin_context, start)
        future = self._submit(entry, payload, plugin_context)
        return _wait(future, entry, start)

    def _call_batch_sync(self, batch: list[_Entry], payload: Any, context: GlobalContext) -> list[_Call]:
        start = perf_counter()
        pending: dict[int, concurrent.futures.Future[Any]] = {}
        calls: dict[int, _Call] = {}
        for index, entry in enumerate(batch):
            if entry.in_thread:
                pending[index] = self._submit(entry, payload, _plugin_context(entry, context))
        for index, entry in enumerate(batch):
            if index not in pending:
                calls[index] = _call_inline(entry, payload, _plugin_context(entry, context), perf_counter())
        for index, future in pending.items():
            calls[index] = _wait(future, batch[index], start)
        return [calls[index] for index in range(len(batch))]

    def _submit(self, entry: _Entry, payload: Any, plugin_context: PluginContext) -> concurrent.futures.Future[Any]:
        # In the caller's context, as asyncio.to_thread would: the hook's
        # span is current there, so the plugin's own spans nest under it.
        run = contextvars.copy_context().run
        return _threads.daemon_pool().submit(run, entry.method, payload, plugin_context)

    # ------------------------------------------------------------------
    # Applying a call's outcome
    # ------------------------------------------------------------------

    def _settle(self, entry: _Entry, call: _Call, run: _Run, check: bool = True) -> bool:
        """Apply one call to ``run``; True when the chain must stop.

        With ``check``, the payload is first compared with the snapshot: a
        change made in place counts as if the plugin had returned it.
        """
        result, error, timed_out, duration, start = call
        in_place = _changed_in_place(run) if check else None
        if error is None and result is not None and not isinstance(result, PluginResult):
            error = TypeError(f"hook returned {type(result).__name__}, expected PluginResult or None")
        if error is not None:
            # A failed plugin's change is not applied. A thread that timed
            # out may still be writing to the payload: the chain goes on
            # with a copy it does not hold.
            stuck = timed_out and entry.in_thread
            if (in_place is not None or stuck) and not entry.block_on_error:
                _put_back(run, detach=stuck)
            return self._failed(entry, error, timed_out, duration, run, start)
        if result is None:
            if in_place is None:
                run.records.append((entry.name, duration, start + duration))
                return False
            changed = run.payload
        else:
            if result.metadata:
                run.metadata.update(result.metadata)
            if not result.continue_processing:
                return self._violated(entry, result.violation, in_place, duration, run, start)
            changed = result.modified_payload
            if changed is None or changed is run.payload:
                if in_place is None:
                    run.records.append((entry.name, duration, start + duration))
                    return False
                changed = run.payload
        if not entry.may_modify:
            how = "made in place " if changed is run.payload else ""
            if in_place is not None:
                problem = _put_back(run)
                if problem is not None:
                    return self._failed(entry, problem, False, duration, run, start)
            logger.warning("plugin %s: its category may not modify payloads; change %sdropped", entry.name, how)
            record = ExecutionRecord(entry.name, run.hook, Outcome.MODIFICATION_DROPPED, duration, None, start)
            run.records.append(record)
            return False
        if type(changed) is not type(run.payload):
            if in_place is not None and not entry.block_on_error:
                _put_back(run)
            error = TypeError(f"modified_payload is {type(changed).__name__}, expected {type(run.payload).__name__}")
            return self._failed(entry, error, False, duration, run, start)
        if changed is run.payload:
            logger.debug("plugin %s changed the payload of %s in place", entry.name, run.hook)
            run.snapshot = in_place
        elif run.tracked is not None:
            run.snapshot = _encoding(run.tracked.read(changed))
        run.payload = changed
        run.modified = True
        run.records.append(ExecutionRecord(entry.name, run.hook, Outcome.MODIFIED, duration, None, start))
        return False

    def _violated(
        self,
        entry: _Entry,
        violation: PluginViolation | None,
        in_place: bytes | str | None,
        duration: float,
        run: _Run,
        start: float,
    ) -> bool:
        violation = violation or PluginViolation(
            reason="Blocked", description=f"blocked by plugin {entry.name}", code="BLOCKED"
        )
        violation.plugin_name = entry.name
        if entry.obey_violations:
            run.records.append(ExecutionRecord(entry.name, run.hook, Outcome.BLOCKED, duration, None, start))
            run.violation = violation
            return True
        if in_place is not None:
            # Dropped, as a modified_payload returned with the violation is.
            problem = _put_back(run)
            if problem is not None:
                return self._failed(entry, problem, False, duration, run, start)
            logger.warning("plugin %s: change made in place with an ignored violation dropped", entry.name)
        logger.info("plugin %s: violation not enforced on %s: %s", entry.name, run.hook, violation.reason)
        run.records.append(ExecutionRecord(entry.name, run.hook, Outcome.VIOLATION_IGNORED, duration, None, start))
        return False

    def _settle_batch(self, batch: list[_Entry], calls: Sequence[_Call], run: _Run) -> bool:
        # Modifications cannot chain inside a concurrent batch (and its
        # categories may not modify anyway); the first block in order wins.
        # The batch shared one payload, so a change made in place cannot be
        # told apart by plugin: it is checked once, and always dropped.
        in_place = _changed_in_place(run)
        stop = False
        for entry, call in zip(batch, calls, strict=True):
            if run.violation is None:
                stop = self._settle(entry, call, run, check=False) or stop
            else:
                after_block = _Run(run.hook, run.payload, run.context, run.records, track=False)
                self._settle(entry, call, after_block, check=False)
        if in_place is not None and not stop:
            names = ", ".join(entry.name for entry in batch)
            problem = _put_back(run)
            if problem is not None:
                return self._failed(batch[0], problem, False, 0.0, run, calls[0][4])
            logger.warning(
                "one of plugins %s changed the payload in place; their category may not modify: dropped", names
            )
        return stop

    def _failed(
        self, entry: _Entry, error: BaseException, timed_out: bool, duration: float, run: _Run, start: float
    ) -> bool:
        outcome = Outcome.TIMEOUT if timed_out else Outcome.ERROR
        message = f"timed out after {entry.timeout:g}s" if timed_out else f"{type(error).__name__}: {error}"
        logger.warning("plugin %s failed on %s: %s", entry.name, run.hook, message, exc_info=not timed_out and error)
        run.records.append(ExecutionRecord(entry.name, run.hook, outcome, duration, message, start))
        if not entry.block_on_error:
            return False
        code = "PLUGIN_TIMEOUT" if timed_out else "PLUGIN_ERROR"
        run.violation = PluginViolation(
            reason="Plugin timed out" if timed_out else "Plugin error",
            description=f"plugin {entry.name} {'timed out' if timed_out else 'failed'}",
            code=code,
            # The error text stays in the logs and the records: it may hold
            # internals that must not reach the client.
            details={"plugin": entry.name, "hook": run.hook.value},
            http_status_code=504 if timed_out else 500,
            mcp_error_code=-32603,
            plugin_name=entry.name,
        )
        return True


class _Resume:
    """Awaits a coroutine that was already stepped once and is suspended.

    Yields what the coroutine yielded to the running task, and passes the
    task's answers (and cancellation) back in, exactly as ``await`` would.
    """

    __slots__ = ("coroutine", "suspended_on")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], suspended_on: Any) -> None:
        self.coroutine = coroutine
        self.suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, pending = self.coroutine, self.suspended_on
        while True:
            try:
                answer = yield pending
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:
                try:
                    pending = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                pending = coroutine.send(answer)
            except StopIteration as done:
                return done.value


def _inline_chain(chain: tuple[_Step, ...]) -> tuple[_Entry, ...] | None:
    """The chain's entries if each runs alone, sync, on the caller's thread; else None."""
    if not chain or any(len(step) != 1 for step in chain):
        return None
    entries = tuple(step[0] for step in chain)
    return None if any(entry.is_async or entry.in_thread for entry in entries) else entries


_DEFER_BYTES = 16 * 1024
"""Payloads whose containers encode larger than this have their in-place checks batched."""


def _is_large(snapshot: bytes | str | None) -> bool:
    return isinstance(snapshot, bytes) and len(snapshot) > _DEFER_BYTES


def _settle_deferred(run: _Run, deferred: list[int]) -> None:
    """Apply a change made in place by one of the calls whose records ``deferred`` points at."""
    if not deferred:
        return
    changed = _changed_in_place(run)
    if changed is not None:
        # Every plugin in ``deferred`` may modify: the change stands.
        last = deferred[-1]
        name, duration, end = run.records[last]
        logger.debug(
            "a plugin of %s changed the payload of %s in place", [run.records[i][0] for i in deferred], run.hook
        )
        run.snapshot = changed
        run.modified = True
        run.records[last] = ExecutionRecord(name, run.hook, Outcome.MODIFIED, duration, None, end - duration)
    deferred.clear()


def _applies(entry: _Entry, run: _Run) -> bool:
    return any(condition.matches(run.hook, run.payload, run.context) for condition in entry.conditions)


def _is_parallel_category(step: _Step) -> bool:
    return list(Category)[step[0].sort_key[0]].parallel


def _plugin_context(entry: _Entry, context: GlobalContext) -> PluginContext:
    found = context.plugin_contexts.get(entry.name)
    if found is None:
        found = context.plugin_contexts[entry.name] = fresh_plugin_context(context)
    return found


def _call_inline(entry: _Entry, payload: Any, plugin_context: PluginContext, start: float) -> _Call:
    try:
        result = entry.method(payload, plugin_context)
    except Exception as exc:
        return None, exc, False, perf_counter() - start, start
    return result, None, False, perf_counter() - start, start


def _wait(future: concurrent.futures.Future[Any], entry: _Entry, start: float) -> _Call:
    try:
        result = future.result(entry.timeout)
    except TimeoutError as exc:
        future.cancel()
        return None, exc, True, perf_counter() - start, start
    except Exception as exc:
        return None, exc, False, perf_counter() - start, start
    return result, None, False, perf_counter() - start, start


# --------------------------------------------------------------------------
# Changes made in place
# --------------------------------------------------------------------------

_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})
_dumps = orjson.dumps


@dataclasses.dataclass(slots=True, frozen=True, eq=False)
class _Tracked:
    """The fields of a payload class that may hold containers, and a reader for them."""

    names: tuple[str, ...]
    read: Callable[[Any], Any]
    """``operator.attrgetter`` of ``names``: one value, or a tuple of them."""


_TRACKED: dict[type, _Tracked | None] = {}


def _tracked(cls: type) -> _Tracked | None:
    try:
        return _TRACKED[cls]
    except KeyError:
        pass
    names: tuple[str, ...] = ()
    if issubclass(cls, BaseModel):
        names = tuple(name for name, info in cls.model_fields.items() if not _is_scalar(info.annotation))
    found = _TRACKED[cls] = _Tracked(names, operator.attrgetter(*names)) if names else None
    return found


def _is_scalar(annotation: Any) -> bool:
    """Whether a field so annotated can only hold values that cannot change in place."""
    if annotation in _SCALARS:
        return True
    if isinstance(annotation, types.UnionType):
        return all(arg in _SCALARS for arg in annotation.__args__)
    return False


def _encoding(value: Any) -> bytes | str:
    """What a change made in place is detected by: the value as JSON.

    orjson is what the middlewares forward a changed message with, so this
    sees every byte a client or an app may read. What orjson refuses (huge
    integers, lone surrogates, non-string keys) is encoded by :mod:`json`;
    what is no JSON at all is compared by its ``repr`` (a ``str``, which
    :func:`_put_back` cannot decode).
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    except Exception:  # TypeError, ValueError (a cycle), RecursionError, RuntimeError (changed meanwhile)
        pass
    try:
        return repr(value)
    except Exception:
        return f"<unencodable {id(value)} {perf_counter()}>"  # never equal: a change every time


def _changed_in_place(run: _Run) -> bytes | str | None:
    """The new encoding of the payload's containers if they changed since the snapshot."""
    tracked = run.tracked
    if tracked is None:
        return None
    value = tracked.read(run.payload)
    try:
        now: bytes | str = _dumps(value)  # the hot path: one C call
    except TypeError:
        now = _encoding(value)
    return None if now == run.snapshot else now


def _decode(encoding: bytes) -> Any:
    try:
        return orjson.loads(encoding)
    except orjson.JSONDecodeError:
        return json.loads(encoding)


def _restored(run: _Run, tracked: _Tracked, encoding: bytes) -> Any:
    """A new payload: ``run.payload`` with its containers as ``encoding`` had them."""
    decoded = _decode(encoding)
    values = dict(zip(tracked.names, decoded, strict=True)) if len(tracked.names) > 1 else {tracked.names[0]: decoded}
    payload = run.payload
    fresh = payload.model_copy(update=values)
    try:
        # Validation turns JSON arrays back into the tuples a field may hold.
        return type(payload).model_validate(dict(fresh))
    except ValidationError:
        return fresh


def _put_back(run: _Run, detach: bool = False) -> PluginError | None:
    """Undo a change made in place: the chain goes on with the snapshot's values.

    The chain continues with a new payload holding new containers; unless
    ``detach``, the old containers are also refilled in place, for whoever
    else holds them. The run counts as modified, so the message forwarded is
    built from the restored payload, not from objects the plugin touched.
    Returns the error to report if the values cannot be put back (not JSON).
    """
    tracked, snapshot = run.tracked, run.snapshot
    if tracked is None:
        return None
    run.modified = True
    if not isinstance(snapshot, bytes):
        # What the later plugins see is what is forwarded, at least.
        return PluginError("changed the payload in place where it may not, and its values are not JSON to put back")
    if not detach:
        again = _restored(run, tracked, snapshot)
        for name in tracked.names:
            held, value = getattr(run.payload, name), getattr(again, name)
            if type(held) is dict and isinstance(value, dict):
                held.clear()
                held.update(value)
            elif type(held) is list and isinstance(value, list):
                held[:] = value
    run.payload = _restored(run, tracked, snapshot)
    return None
