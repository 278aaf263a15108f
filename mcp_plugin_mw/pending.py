"""
Unanswered calls, kept across streams
=====================================

An MCP server may end a response stream before a call's result is sent (a
load balancer timeout, the SDK's ``close_sse_stream``); the client then
resumes with ``Last-Event-ID`` on another request, and the result arrives
on a stream that carries no call of its own. So that the response hook still
sees it, the calls a stream left unanswered are kept here, per MCP session
(``Mcp-Session-Id``), and matched when a result under their id arrives.

:class:`MemoryPendingCalls` keeps them in this process, at most
``max_calls``, each for ``ttl`` seconds. :class:`RedisPendingCalls` keeps
them in Redis, one hash per session, so that every worker behind a load
balancer finds them; there the context travels as JSON (a plugin state that
is not JSON is dropped, with a warning).

.. warning::

   The session id is the client's. A client that guesses another session's
   id can only make a result of that session be inspected with the hooks
   of the call it answers, which is what should happen to it anyway: a
   result never reaches a client through this store, it is only attributed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .mapping.jsonrpc import PendingCall, id_key
from .models import GlobalContext, HookType, PendingCallsSettings, PluginContext

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = ["MemoryPendingCalls", "PendingCalls", "RedisPendingCalls", "pending_calls"]

logger = logging.getLogger(__name__)


class PendingCalls(Protocol):
    """Where calls a stream left unanswered wait for their result."""

    def remember(self, session: str, calls: Iterable[PendingCall]) -> None:
        """Keep ``calls`` for ``session``."""

    def recall(self, session: str, key: Any) -> PendingCall | None:
        """Take the call kept for ``session`` under ``key`` (an :func:`id_key`), if any."""

    async def aremember(self, session: str, calls: Iterable[PendingCall]) -> None:
        """:meth:`remember` in async code."""

    async def arecall(self, session: str, key: Any) -> PendingCall | None:
        """:meth:`recall` in async code."""

    async def aclose(self) -> None:
        """Release connections."""


def pending_calls(settings: PendingCallsSettings) -> PendingCalls:
    """The store ``settings`` describe."""
    if settings.backend == "redis":
        assert settings.url is not None  # validated
        return RedisPendingCalls(settings.url, ttl=settings.ttl, key_prefix=settings.key_prefix)
    return MemoryPendingCalls(ttl=settings.ttl, max_calls=settings.max_calls)


class MemoryPendingCalls:
    """Calls kept in this process, the oldest forgotten first past ``max_calls``."""

    def __init__(self, *, ttl: float = 600.0, max_calls: int = 10_000) -> None:
        self.ttl = ttl
        self.max_calls = max_calls
        self._calls: OrderedDict[tuple[str, Any], tuple[float, PendingCall]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._calls)

    def remember(self, session: str, calls: Iterable[PendingCall]) -> None:
        expires = time.monotonic() + self.ttl
        with self._lock:
            for call in calls:
                entry = (session, id_key(call.id))
                self._calls[entry] = (expires, call)
                self._calls.move_to_end(entry)
            while len(self._calls) > self.max_calls:
                self._calls.popitem(last=False)

    def recall(self, session: str, key: Any) -> PendingCall | None:
        with self._lock:
            found = self._calls.pop((session, key), None)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    async def aremember(self, session: str, calls: Iterable[PendingCall]) -> None:
        self.remember(session, calls)

    async def arecall(self, session: str, key: Any) -> PendingCall | None:
        return self.recall(session, key)

    async def aclose(self) -> None:
        with self._lock:
            self._calls.clear()


class RedisPendingCalls:
    """Calls kept in Redis: a hash per session, expiring ``ttl`` seconds after the last call was kept.

    A client is made per event loop (a redis-py asyncio connection belongs to
    the loop that opened it), and one blocking client for WSGI apps.
    """

    def __init__(self, url: str, *, ttl: float = 600.0, key_prefix: str = "mcp-plugin-mw:pending:") -> None:
        try:
            import redis  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "pending_calls backend redis needs the redis package: pip install 'mcp-plugin-mw[redis]'"
            ) from None
        self.url = url
        self.ttl_ms = max(1, round(ttl * 1000))
        self.key_prefix = key_prefix
        self._lock = threading.Lock()
        self._sync: Redis | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedis] = weakref.WeakKeyDictionary()

    def _key(self, session: str) -> str:
        return self.key_prefix + session

    def _client(self) -> Redis:
        with self._lock:
            if self._sync is None:
                from redis import Redis

                self._sync = Redis.from_url(self.url)
            return self._sync

    def _aclient(self) -> AsyncRedis:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                from redis.asyncio import Redis

                client = self._async[loop] = Redis.from_url(self.url)
            return client

    def remember(self, session: str, calls: Iterable[PendingCall]) -> None:
        fields = _fields(calls)
        if fields:
            key = self._key(session)
            pipe = self._client().pipeline()
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, self.ttl_ms)
            pipe.execute()

    def recall(self, session: str, key: Any) -> PendingCall | None:
        pipe = self._client().pipeline()
        field = _field(key)
        pipe.hget(self._key(session), field)
        pipe.hdel(self._key(session), field)
        found, _ = pipe.execute()
        return None if found is None else _decode(found)

    async def aremember(self, session: str, calls: Iterable[PendingCall]) -> None:
        fields = _fields(calls)
        if fields:
            key = self._key(session)
            pipe = self._aclient().pipeline()
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, self.ttl_ms)
            await pipe.execute()

    async def arecall(self, session: str, key: Any) -> PendingCall | None:
        pipe = self._aclient().pipeline()
        field = _field(key)
        pipe.hget(self._key(session), field)
        pipe.hdel(self._key(session), field)
        found, _ = await pipe.execute()
        return None if found is None else _decode(found)

    async def aclose(self) -> None:
        with self._lock:
            clients, self._async = list(self._async.values()), weakref.WeakKeyDictionary()
            sync, self._sync = self._sync, None
        for client in clients:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                await client.aclose()
        if sync is not None:
            sync.close()


def _field(key: Any) -> bytes:
    # 5 and "5" share a key already (id_key); a string key stays distinct from a number.
    return orjson.dumps(key)


def _fields(calls: Iterable[PendingCall]) -> dict[Any, Any]:
    fields: dict[Any, Any] = {_field(id_key(call.id)): _encode(call) for call in calls}
    return fields


def _jsonable(value: Any, where: str) -> Any:
    try:
        orjson.dumps(value)
    except TypeError:
        logger.warning("%s is not JSON and is not kept with the unanswered call", where)
        return {}
    return value


def _encode(call: PendingCall) -> bytes:
    context = call.context
    return orjson.dumps(
        {
            "id": call.id,
            "method": call.method,
            "name": call.name,
            "post_hook": call.post_hook.value,
            "protocol_version": call.protocol_version,
            "context": {
                "request_id": context.request_id,
                "user": context.user,
                "tenant_id": context.tenant_id,
                "server_id": context.server_id,
                "content_type": context.content_type,
                "state": _jsonable(context.state, "the shared context's state"),
                "metadata": _jsonable(context.metadata, "the shared context's metadata"),
                "plugins": {
                    name: _jsonable(plugin.state, f"the state of plugin {name!r}")
                    for name, plugin in context.plugin_contexts.items()
                },
            },
        }
    )


def _decode(data: bytes) -> PendingCall | None:
    try:
        value = orjson.loads(data)
        shared = value["context"]
        context = GlobalContext(
            request_id=shared["request_id"],
            user=shared["user"],
            tenant_id=shared["tenant_id"],
            server_id=shared["server_id"],
            content_type=shared["content_type"],
            state=shared["state"],
            metadata=shared["metadata"],
        )
        for name, state in shared["plugins"].items():
            context.plugin_contexts[name] = PluginContext(context, state=state)
        return PendingCall(
            value["id"],
            value["method"],
            value["name"],
            HookType(value["post_hook"]),
            value["protocol_version"],
            context,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        logger.warning("an unanswered call kept in Redis could not be read; its result is refused")
        return None
