"""
Plugins for the core tests
==========================

Importable by class path (``tests.sample_plugins.Append``) so that tests can
load them through configuration exactly as users load theirs.

Every plugin that runs records its name in
``context.global_context.state["ran"]``, so a test can see which plugins ran
and in which order without any module-level state. Objects a test needs to
share with a plugin (events, rendezvous points, URLs) travel in the plugin's
own ``config:`` mapping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx

from mcp_plugin_mw import (
    Category,
    Plugin,
    PluginContext,
    PluginError,
    PluginResult,
    PluginViolation,
    PromptPrehookPayload,
)

BOUND = 10.0
"""Seconds any helper in this module waits at most."""


def mark(plugin: Plugin, context: PluginContext) -> None:
    """Record that ``plugin`` ran, in the order plugins ran."""
    context.global_context.state.setdefault("ran", []).append(plugin.name)


def _with_text(payload: Any, transform: Any) -> Any:
    """A copy of a tool payload with its ``text`` transformed."""
    if hasattr(payload, "args"):
        return payload.model_copy(update={"args": {**payload.args, "text": transform(payload.args["text"])}})
    return payload.model_copy(update={"result": {**payload.result, "text": transform(payload.result["text"])}})


class Append(Plugin):
    """Sync, inline: appends ``config['suffix']`` to the tool text."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(modified_payload=_with_text(payload, lambda text: text + self.config["suffix"]))

    def tool_post_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(modified_payload=_with_text(payload, lambda text: text + self.config["suffix"]))


class AsyncAppend(Plugin):
    """Async: appends ``config['suffix']`` to the tool text."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        await asyncio.sleep(0)
        mark(self, context)
        return PluginResult(modified_payload=_with_text(payload, lambda text: text + self.config["suffix"]))


class BlockingAppend(Plugin):
    """Sync, run in a worker thread: appends ``config['suffix']``."""

    blocking = True

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(modified_payload=_with_text(payload, lambda text: text + self.config["suffix"]))


class Upper(Plugin):
    """Sync: upper-cases the tool text."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(modified_payload=_with_text(payload, str.upper))

    def tool_post_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(modified_payload=_with_text(payload, str.upper))


class Tag(Plugin):
    """Sync, every hook: records that it ran and changes nothing."""

    def _run(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)

    tool_pre_invoke = tool_post_invoke = _run
    prompt_pre_fetch = prompt_post_fetch = _run
    resource_pre_fetch = resource_post_fetch = _run
    http_pre_request = http_post_request = _run
    tool_post_list = prompt_post_list = resource_post_list = _run
    server_message = client_message = _run


class AsyncTag(Plugin):
    """Async, tool hooks: records that it ran and changes nothing."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)

    async def tool_post_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)


class Blocker(Plugin):
    """Sync: blocks with a violation whose code is ``config['code']``."""

    def _block(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Denied", description=f"{self.name} said no", code=self.config.get("code", "DENIED")
            ),
        )

    tool_pre_invoke = tool_post_invoke = http_pre_request = _block


class Raiser(Plugin):
    """Sync: raises ``RuntimeError(config['message'])``."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        raise RuntimeError(self.config.get("message", "boom"))


class AsyncRaiser(Plugin):
    """Async: raises a :class:`PluginError`."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        raise PluginError(self.config.get("message", "async boom"), code="BROKEN")


class BlockingRaiser(Plugin):
    """Sync in a worker thread: raises ``ValueError``."""

    blocking = True

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        raise ValueError(self.config.get("message", "thread boom"))


class SelfCancelled(Plugin):
    """Async: awaits a future that was cancelled, so ``CancelledError`` escapes the hook."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future


class Sleeper(Plugin):
    """Async: never returns (until cancelled)."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        await asyncio.Event().wait()


class StuckInline(Plugin):
    """Sync: waits for ``config['release']``, a ``threading.Event``.

    The test sets the event in its teardown; until then the hook does not
    return (``config['max_wait']`` caps the wait, ``BOUND`` by default, so a
    broken timeout fails a test instead of hanging it). ``config['entered']``,
    if given, is set when the hook starts.
    """

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        entered = self.config.get("entered")
        if entered is not None:
            entered.set()
        self.config["release"].wait(self.config.get("max_wait", BOUND))


class Stuck(StuckInline):
    """:class:`StuckInline` with ``blocking = True``."""

    blocking = True


class Napper(Plugin):
    """Async: sleeps ``config['seconds']`` and then passes."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        await asyncio.sleep(self.config["seconds"])


class WrongType(Plugin):
    """Sync: returns ``config['value']`` instead of a ``PluginResult``."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> Any:
        mark(self, context)
        return self.config["value"]


class WrongPayload(Plugin):
    """Sync: returns a payload of the wrong type for the hook."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(modified_payload=PromptPrehookPayload(prompt_id="p", args={}))


class Stateful(Plugin):
    """Keeps the request text in its context on the pre hook; reports it on the post hook."""

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        context.state["pre_text"] = payload.args["text"]
        context.state["calls"] = context.state.get("calls", 0) + 1

    async def tool_post_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        context.state["calls"] = context.state.get("calls", 0) + 1
        seen = {"pre_text": context.state.get("pre_text"), "calls": context.state["calls"]}
        return PluginResult(
            modified_payload=payload.model_copy(update={"result": {**payload.result, "seen": seen}}),
            metadata={"seen": seen},
        )


class Rendezvous:
    """A meeting point for ``parties`` plugin calls, usable from any thread or loop.

    ``meet`` and ``meet_sync`` return True when every party arrived within
    ``timeout`` seconds of the caller's own arrival, else False. Plugins run
    one after another can never all meet, so a False is proof of serial
    execution, not a matter of timing.
    """

    def __init__(self, parties: int, timeout: float = BOUND) -> None:
        self.parties = parties
        self.timeout = timeout
        self.arrived = 0
        self._condition = threading.Condition()

    def _arrive(self) -> None:
        with self._condition:
            self.arrived += 1
            self._condition.notify_all()

    async def meet(self) -> bool:
        self._arrive()
        deadline = time.monotonic() + self.timeout
        while self.arrived < self.parties:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    def meet_sync(self) -> bool:
        self._arrive()
        with self._condition:
            return self._condition.wait_for(lambda: self.arrived >= self.parties, self.timeout)


class Meet(Plugin):
    """Async: waits at ``config['rendezvous']``; reports whether everyone came."""

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        met = await self.config["rendezvous"].meet()
        return PluginResult(metadata={self.name: met})


class BlockingMeet(Plugin):
    """Sync in a worker thread: waits at ``config['rendezvous']``."""

    blocking = True

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        met = self.config["rendezvous"].meet_sync()
        return PluginResult(metadata={self.name: met})


class Lifecycle(Plugin):
    """Sync ``initialize``/``shutdown`` that count their calls.

    ``initialize`` sleeps ``config['init_delay']`` seconds so that concurrent
    first calls overlap it.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.initialized = 0
        self.shut_down = 0
        self.hook_saw_initialized: list[int] = []

    def initialize(self) -> None:
        self.initialized += 1
        time.sleep(self.config.get("init_delay", 0))

    def shutdown(self) -> None:
        self.shut_down += 1

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        self.hook_saw_initialized.append(self.initialized)


class AsyncLifecycle(Plugin):
    """Async ``initialize``/``shutdown`` that count their calls."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.initialized = 0
        self.shut_down = 0
        self.hook_saw_initialized: list[int] = []

    async def initialize(self) -> None:
        self.initialized += 1
        await asyncio.sleep(self.config.get("init_delay", 0))

    async def shutdown(self) -> None:
        await asyncio.sleep(0)
        self.shut_down += 1

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)
        self.hook_saw_initialized.append(self.initialized)


class FailingInit(Plugin):
    """``initialize`` raises."""

    def initialize(self) -> None:
        raise RuntimeError("cannot connect")

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)


class FailingShutdown(Plugin):
    """``shutdown`` raises; counts its calls first."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.shut_down = 0

    def shutdown(self) -> None:
        self.shut_down += 1
        raise RuntimeError("cannot let go")

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        mark(self, context)


class HttpLookup(Plugin):
    """Async: replaces the tool text with what ``config['url']`` answers for it.

    One ``httpx.AsyncClient`` is created in ``initialize`` and shared by every
    call; each call records the client it used in ``self.clients_used``.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.client: httpx.AsyncClient | None = None
        self.clients_created = 0
        self.clients_used: list[httpx.AsyncClient] = []
        self.closed = False

    async def initialize(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.config["url"], trust_env=False, timeout=BOUND)
        self.clients_created += 1

    async def shutdown(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.closed = True

    async def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        assert self.client is not None, "initialize did not run"
        self.clients_used.append(self.client)
        response = await self.client.get("/lookup", params={"q": payload.args["text"]})
        response.raise_for_status()
        return PluginResult(modified_payload=_with_text(payload, lambda _text: response.text))


class Observer(Plugin):
    """Observability by default; tries to change the payload."""

    default_category = Category.OBSERVABILITY

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> PluginResult:
        mark(self, context)
        return PluginResult(modified_payload=_with_text(payload, lambda text: text + "-observed"))


class Exploding(Plugin):
    """Its constructor raises."""

    def __init__(self, config: Any) -> None:
        raise RuntimeError("constructor exploded")

    def tool_pre_invoke(self, payload: Any, context: PluginContext) -> None:
        return None


class NoHooks(Plugin):
    """Implements no hook at all."""


class NotAPlugin:
    """A class that does not derive from :class:`Plugin`."""

    def tool_pre_invoke(self, payload: Any, context: Any) -> None:
        return None


# --------------------------------------------------------------------------
# Helpers for building configurations and payloads
# --------------------------------------------------------------------------

HERE = __name__


def entry(name: str, cls: str, **fields: Any) -> dict[str, Any]:
    """A ``plugins:`` entry for the class ``cls`` of this module."""
    return {"name": name, "kind": f"{HERE}.{cls}", **fields}


def tool_pre(text: str = "hello", name: str = "search") -> Any:
    from mcp_plugin_mw import ToolPreInvokePayload

    return ToolPreInvokePayload(name=name, args={"text": text})


def tool_post(text: str = "hello", name: str = "search") -> Any:
    from mcp_plugin_mw import ToolPostInvokePayload

    return ToolPostInvokePayload(name=name, result={"text": text})
