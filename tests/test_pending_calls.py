"""
Calls kept for results resumed on another stream
================================================

The stores (:mod:`mcp_plugin_mw.pending`) on their own, in memory and in a
real Redis, and end to end: two workers, each its own ``PluginMiddleware``
and manager sharing one Redis, behind a router that sends the POST to one
and the resuming GET to the other, with the official SDK server and client.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import mcp_plugin_mw as mw
from mcp_plugin_mw.config import ConfigError
from mcp_plugin_mw.mapping.jsonrpc import PendingCall
from mcp_plugin_mw.pending import MemoryPendingCalls, RedisPendingCalls, pending_calls
from tests.test_review import SHOUT, polling_server, uvicorn_serving


def a_call(request_id: Any = 5, name: str = "polled") -> PendingCall:
    context = mw.GlobalContext(request_id="r-1", user="ada", tenant_id="acme")
    context.state["shared"] = [1, 2]
    context.plugin_contexts["shout"] = mw.PluginContext(context, state={"pre": name})
    return PendingCall(request_id, "tools/call", name, mw.HookType.TOOL_POST_INVOKE, "2025-11-25", context)


def test_memory_store_hands_a_call_back_once_under_any_spelling_of_its_id() -> None:
    store = MemoryPendingCalls()
    store.remember("s1", [a_call(5)])
    assert store.recall("s2", 5) is None  # another session
    found = store.recall("s1", 5)  # "5" and 5 share a key (id_key); the caller passes the key
    assert found is not None
    assert found.name == "polled"
    assert found.context.plugin_contexts["shout"].state == {"pre": "polled"}
    assert store.recall("s1", 5) is None  # taken


def test_memory_store_forgets_expired_and_oldest_calls() -> None:
    store = MemoryPendingCalls(ttl=0.05, max_calls=2)
    store.remember("s", [a_call(1), a_call(2), a_call(3)])
    assert len(store) == 2
    assert store.recall("s", 1) is None
    time.sleep(0.1)
    assert store.recall("s", 3) is None


def test_redis_store_keeps_calls_with_their_context(redis_url: str) -> None:
    store = RedisPendingCalls(redis_url, ttl=30)
    call = a_call("abc")
    call.context.state["opaque"] = object()  # not JSON: dropped with a warning
    store.remember("s1", [call, a_call(7, "other")])
    found = store.recall("s1", "abc")
    assert found is not None
    assert (found.id, found.method, found.name, found.post_hook) == ("abc", "tools/call", "polled", call.post_hook)
    assert found.context.user == "ada"
    assert found.context.tenant_id == "acme"
    assert found.context.state == {}  # the whole state was not JSON
    assert found.context.plugin_contexts["shout"].state == {"pre": "polled"}
    assert store.recall("s1", "abc") is None
    assert store.recall("s1", 7) is not None
    asyncio.run(store.aclose())


async def test_redis_store_async_side(redis_url: str) -> None:
    store = RedisPendingCalls(redis_url, ttl=30)
    await store.aremember("s1", [a_call(9)])
    found = await store.arecall("s1", 9)
    assert found is not None
    assert found.name == "polled"
    assert await store.arecall("s1", 9) is None
    await store.aclose()


def test_settings_validate_the_backend() -> None:
    assert isinstance(pending_calls(mw.Config().plugin_settings.pending_calls), MemoryPendingCalls)
    with pytest.raises(ConfigError) as caught:
        mw.PluginManager({"plugin_settings": {"pending_calls": {"backend": "redis"}}})
    assert "plugin_settings.pending_calls" in str(caught.value)
    assert "needs a url" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        mw.PluginManager({"plugin_settings": {"pending_calls": {"backend": "memory", "url": "redis://x"}}})
    assert "only used with backend: redis" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        mw.PluginManager({"plugin_settings": {"pending_calls": {"ttl": 0}}})
    assert "plugin_settings.pending_calls.ttl" in str(caught.value)


class ByMethod:
    """Two workers behind one address: POSTs to one, everything else to the other."""

    def __init__(self, posts: Any, others: Any) -> None:
        self.posts, self.others = posts, others
        self.counts = {"posts": 0, "others": 0}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.counts["posts"] += 1
            await self.posts(scope, receive, send)
        elif scope["type"] == "http":
            self.counts["others"] += 1
            await self.others(scope, receive, send)
        else:
            await self.posts(scope, receive, send)  # lifespan: the app's own, once


async def test_a_result_resumed_on_another_worker_is_inspected(redis_url: str) -> None:
    # One MCP app (its sessions and event store), two middlewares with their
    # own managers: the call is kept in Redis by the first, found by the second.
    inner = polling_server()
    config = {**SHOUT, "plugin_settings": {"pending_calls": {"backend": "redis", "url": redis_url}}}
    router = ByMethod(mw.PluginMiddleware(inner, config=config), mw.PluginMiddleware(inner, config=config))
    with uvicorn_serving(router) as url:
        async with Client(streamable_http_client(url), mode="legacy") as client:
            resumed = await asyncio.wait_for(client.call_tool("polled", {}), 10)
    assert [item.text for item in resumed.content] == ["QUIET"]
    assert router.counts["others"] >= 1  # the result came back on a GET, to the other worker
