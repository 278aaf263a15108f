"""
Rate limiter
============

:class:`RateLimiterPlugin` allows at most ``limit`` calls per ``window``
seconds for each key, and refuses the rest:

.. code-block:: yaml

    - name: rate
      kind: rate_limiter
      hooks: [tool_pre_invoke]
      config:
        limit: 60
        window: 60
        by: [user, tool]
        algorithm: sliding
        backend: redis
        url: redis://127.0.0.1:6379/0

Keys
    ``by`` lists what a key is made of; each combination of values has its own
    count. ``user`` and ``tenant`` come from the request's context; ``tool``
    is the tool name, prompt name, resource URI or HTTP path, depending on
    the hook; ``client`` is the client's address, taken from
    ``context.global_context.metadata["client"]`` when the middleware or the
    app put it there (behind a proxy, put the real address there), else from
    :attr:`~mcp_plugin_mw.models.HttpPreRequestPayload.client`. The port is
    dropped, so every connection from one host shares a count. A missing
    value counts as ``-``: all anonymous users share one count. ``by: []`` is
    one count for everything.

Algorithms
    ``fixed`` counts calls in windows that start with the first call and last
    ``window`` seconds. ``sliding`` counts the calls of the last ``window``
    seconds, so a burst at a window's edge cannot double the rate. Refused
    calls are not counted.

Backends
    ``memory`` (the default) keeps counts in the process: thread-safe, at most
    ``max_keys`` keys (the least recently used are forgotten first), and hook
    calls run inline with no event loop. ``redis`` keeps them in Redis (5 or
    later), so that several workers and machines share one limit: each check
    is one atomic Lua script, timed by the Redis server's clock; the sliding
    window is a sorted set of call times. Connection options such as
    ``socket_timeout`` go in the URL's query string. A Redis error is raised,
    so the plugin's ``mode`` decides whether calls then pass
    (``enforce_ignore_error``, ``permissive``) or are refused (``enforce``).

Counting
    Each hook call counts once. When the plugin runs on ``http_pre_request``
    and on the MCP hooks of the same request, a key that the HTTP request
    already counted is not counted again by the calls inside it.

Over the limit, the call is refused with code ``RATE_LIMITED``, HTTP status
429 and JSON-RPC error -32000 (a server error: JSON-RPC reserves no code for
rate limits), and details ``{"retry_after": s, "limit": n, "remaining": 0,
"reset": s, "window": s}``; ``retry_after`` (whole seconds, at least 1) is
also in the result's metadata for a ``Retry-After`` header. Allowed calls
put ``{"rate_limit": {"limit", "remaining", "reset"}}`` in the metadata.
``reset`` is the number of seconds until the count next goes down.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import ipaddress
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import Field, model_validator

from ..models import (
    Category,
    GlobalContext,
    HookType,
    HttpPreRequestPayload,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPrehookPayload,
    ResourcePreFetchPayload,
    ToolPreInvokePayload,
    check_redis_url,
)
from ..plugin import Plugin
from ._config import Settings, parse_config

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["MemoryBackend", "RateDecision", "RateLimiterPlugin", "RateLimiterSettings", "RedisBackend"]

_Dimension = Literal["user", "tenant", "tool", "client"]


class RateLimiterSettings(Settings):
    """The ``config:`` of :class:`RateLimiterPlugin`."""

    limit: int = Field(gt=0)
    window: float = Field(default=60.0, gt=0)
    by: tuple[_Dimension, ...] = ("user",)
    algorithm: Literal["fixed", "sliding"] = "fixed"
    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "mcp_plugin_mw:ratelimit"
    max_keys: int = Field(default=10_000, gt=0)

    @model_validator(mode="after")
    def _backend_options(self) -> RateLimiterSettings:
        if self.backend == "memory":
            if "url" in self.model_fields_set:
                raise ValueError("url is only used with backend: redis")
            return self
        check_redis_url(self.url, "backend redis")
        return self


@dataclasses.dataclass(slots=True, frozen=True)
class RateDecision:
    """One check against a limit.

    ``reset`` is the number of seconds until the count next goes down (for a
    refused call: until a call would be allowed).
    """

    allowed: bool
    remaining: int
    reset: float


# --------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------


class MemoryBackend:
    """Counts in this process; thread-safe and bounded to ``max_keys`` keys.

    :param clock: seconds from a monotonic clock; replaceable in tests.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        sliding: bool = False,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.sliding = sliding
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        # key -> [start, count] (fixed) or a deque of call times (sliding),
        # least recently used first.
        self._entries: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def hit(self, key: str) -> RateDecision:
        """Count a call for ``key`` unless it is over the limit."""
        now = self.clock()
        with self._lock:
            entry: Any = self._entries.get(key)
            if entry is None:
                entry = collections.deque(maxlen=self.limit) if self.sliding else [now, 0]
                self._entries[key] = entry
                if len(self._entries) > self.max_keys:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            return self._sliding(entry, now) if self.sliding else self._fixed(entry, now)

    def _fixed(self, entry: list[float], now: float) -> RateDecision:
        if now >= entry[0] + self.window:
            entry[0], entry[1] = now, 0
        reset = entry[0] + self.window - now
        if entry[1] >= self.limit:
            return RateDecision(False, 0, reset)
        entry[1] += 1
        return RateDecision(True, self.limit - int(entry[1]), reset)

    def _sliding(self, times: collections.deque[float], now: float) -> RateDecision:
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.limit:
            return RateDecision(False, 0, times[0] - horizon)
        times.append(now)
        return RateDecision(True, self.limit - len(times), times[0] - horizon)

    def __len__(self) -> int:
        return len(self._entries)


# Both scripts return {allowed (0 or 1), calls counted, milliseconds until the
# count next goes down}. Refused calls are not counted.
_FIXED_SCRIPT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if count > 0 and ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  ttl = window
end
if count >= limit then
  return {0, count, ttl}
end
count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], window)
  ttl = window
end
return {1, count, ttl}
"""

# The server's clock, not the callers': machines with skewed clocks still
# share one window. Redis 5+ replicates a script's effects, so TIME is allowed.
_SLIDING_SCRIPT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {allowed, count, tonumber(oldest[2]) + window - now}
"""


class RedisBackend:
    """Counts in Redis, shared by every process that uses the same keys.

    A client is made per event loop, because a redis-py asyncio connection
    belongs to the loop that opened it (an ASGI app's loop, or the background
    loop that runs async plugins for WSGI apps).
    """

    def __init__(self, url: str, limit: int, window: float, *, sliding: bool = False) -> None:
        self.url = url
        self.limit = limit
        self.window_ms = max(1, round(window * 1000))
        self.sliding = sliding
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Redis, AsyncScript]] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> tuple[Redis, AsyncScript]:
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._clients.get(loop)
            if found is None:
                from redis.asyncio import Redis

                client = Redis.from_url(self.url)
                script = client.register_script(_SLIDING_SCRIPT if self.sliding else _FIXED_SCRIPT)
                found = self._clients[loop] = (client, script)
            return found

    async def hit(self, key: str) -> RateDecision:
        """Count a call for ``key`` unless it is over the limit.

        :raises redis.RedisError: when Redis cannot be reached or fails.
        """
        _, script = self._client()
        args: list[Any] = [self.limit, self.window_ms]
        if self.sliding:
            args.append(os.urandom(8).hex())  # calls in the same millisecond must stay distinct
        allowed, count, wait_ms = await script(keys=[key], args=args)
        return RateDecision(bool(allowed), max(0, self.limit - int(count)), max(0, int(wait_ms)) / 1000)

    async def aclose(self) -> None:
        """Close every client, each on its own loop."""
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        current = asyncio.get_running_loop()
        for loop, (client, _) in clients:
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(client.aclose(), loop))
            # A closed loop took its connections with it.


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------


class RateLimiterPlugin(Plugin):
    """Limits calls per key and window; see the module docstring.

    With ``backend: redis`` the instance is a :class:`RedisRateLimiterPlugin`,
    whose hooks are coroutines; with ``memory`` the hooks are plain functions,
    so WSGI apps never need an event loop for them.
    """

    default_category: ClassVar[Category] = Category.RATE_LIMITING
    # Count calls, not every HTTP request (initialize, tools/list, notifications).
    default_hooks: ClassVar[tuple[HookType, ...] | None] = (
        HookType.TOOL_PRE_INVOKE,
        HookType.PROMPT_PRE_FETCH,
        HookType.RESOURCE_PRE_FETCH,
    )

    def __new__(cls, config: PluginConfig) -> RateLimiterPlugin:
        if cls is RateLimiterPlugin and config.config.get("backend") == "redis":
            cls = RedisRateLimiterPlugin
        return super().__new__(cls)

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(RateLimiterSettings, self.config)
        self._prefix = f"{settings.key_prefix}:{self.name}:{settings.algorithm}:"
        self._state_key = f"mcp_plugin_mw.rate_limiter.{self.name}.counted"
        self._open_backend(settings)

    def _open_backend(self, settings: RateLimiterSettings) -> None:
        sliding = settings.algorithm == "sliding"
        self._memory = MemoryBackend(settings.limit, settings.window, sliding=sliding, max_keys=settings.max_keys)

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Count a tool call."""
        return self._check(self._key(context, "tool", payload.name, None), context, False)

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Count a prompt fetch."""
        return self._check(self._key(context, "prompt", payload.prompt_id, None), context, False)

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Count a resource read."""
        return self._check(self._key(context, "resource", payload.uri, None), context, False)

    def http_pre_request(self, payload: HttpPreRequestPayload, context: PluginContext) -> PluginResult | None:
        """Count an HTTP request."""
        return self._check(self._key(context, "http", payload.path, payload.client), context, True)

    def _check(self, key: str, context: PluginContext, http: bool) -> PluginResult | None:
        if not self._should_count(key, context, http):
            return None
        return self.result(self._memory.hit(key))

    # ------------------------------------------------------------------
    # Shared by both backends
    # ------------------------------------------------------------------

    def _key(self, context: PluginContext, kind: str, entity: str, client: str | None) -> str:
        values = context.global_context
        parts = [
            f"{dimension}={quote(self._value(dimension, values, kind, entity, client), safe='')}"
            for dimension in self.settings.by
        ]
        return self._prefix + ("|".join(parts) or "all")

    @staticmethod
    def _value(dimension: _Dimension, context: GlobalContext, kind: str, entity: str, client: str | None) -> str:
        if dimension == "user":
            return context.user or "-"
        if dimension == "tenant":
            return context.tenant_id or "-"
        if dimension == "tool":
            return f"{kind}:{entity}"
        return _client_host(context.metadata.get("client") or client) or "-"

    def _should_count(self, key: str, context: PluginContext, http: bool) -> bool:
        # Remember what the HTTP request counted, so that the MCP calls it
        # carries do not count the same key a second time. The global state,
        # not the plugin's: the members of a JSON-RPC batch each get fresh
        # plugin contexts but share the request's global one.
        state = context.global_context.state
        if http:
            state.setdefault(self._state_key, set()).add(key)
            return True
        counted = state.get(self._state_key)
        return counted is None or key not in counted

    def result(self, decision: RateDecision) -> PluginResult:
        """The hook result for ``decision``: metadata if allowed, a violation if not."""
        limit = self.settings.limit
        reset = max(1, math.ceil(decision.reset))
        if decision.allowed:
            return PluginResult(
                metadata={"rate_limit": {"limit": limit, "remaining": decision.remaining, "reset": reset}}
            )
        window = self.settings.window
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Rate limit exceeded",
                description=f"rate limit of {limit} per {window:g}s exceeded; retry in {reset}s",
                code="RATE_LIMITED",
                details={"retry_after": reset, "limit": limit, "remaining": 0, "reset": reset, "window": window},
                http_status_code=429,
                mcp_error_code=-32000,
            ),
            metadata={"retry_after": reset, "rate_limit": {"limit": limit, "remaining": 0, "reset": reset}},
        )


class RedisRateLimiterPlugin(RateLimiterPlugin):
    """:class:`RateLimiterPlugin` with ``backend: redis``: async hooks, counts in Redis."""

    def _open_backend(self, settings: RateLimiterSettings) -> None:
        sliding = settings.algorithm == "sliding"
        self._redis = RedisBackend(settings.url, settings.limit, settings.window, sliding=sliding)

    async def tool_pre_invoke(  # type: ignore[override]
        self, payload: ToolPreInvokePayload, context: PluginContext
    ) -> PluginResult | None:
        """Count a tool call."""
        return await self._acheck(self._key(context, "tool", payload.name, None), context, False)

    async def prompt_pre_fetch(  # type: ignore[override]
        self, payload: PromptPrehookPayload, context: PluginContext
    ) -> PluginResult | None:
        """Count a prompt fetch."""
        return await self._acheck(self._key(context, "prompt", payload.prompt_id, None), context, False)

    async def resource_pre_fetch(  # type: ignore[override]
        self, payload: ResourcePreFetchPayload, context: PluginContext
    ) -> PluginResult | None:
        """Count a resource read."""
        return await self._acheck(self._key(context, "resource", payload.uri, None), context, False)

    async def http_pre_request(  # type: ignore[override]
        self, payload: HttpPreRequestPayload, context: PluginContext
    ) -> PluginResult | None:
        """Count an HTTP request."""
        return await self._acheck(self._key(context, "http", payload.path, payload.client), context, True)

    async def _acheck(self, key: str, context: PluginContext, http: bool) -> PluginResult | None:
        if not self._should_count(key, context, http):
            return None
        return self.result(await self._redis.hit(key))

    async def shutdown(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()


def _client_host(client: Any) -> str | None:
    """The host part of a client address: ``"host:port"``, ``"[v6]:port"``, ``(host, port)`` or a bare host."""
    if client is None:
        return None
    if isinstance(client, tuple | list):
        return str(client[0]) if client else None
    address = str(client)
    if address.startswith("["):
        return address[1:].partition("]")[0]
    if address.count(":") == 1:
        return address.partition(":")[0]
    if ":" in address:
        # An unbracketed IPv6 address, with or without a port: the port is
        # the last group only if what precedes it is an address by itself.
        head, _, tail = address.rpartition(":")
        if tail.isdigit() and _is_ip(head):
            return head
    return address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
