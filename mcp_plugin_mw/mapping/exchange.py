"""
One HTTP exchange, independent of ASGI and WSGI
===============================================

:class:`Exchange` is what the middlewares hold for one request and its
response. It joins the two halves of the rule, each readable on its own:

* :class:`~.request.RequestSide` (with :mod:`.body`): what the app may parse
  from the request, the request hooks on it, and the middleware's own answer
  when a plugin blocks or a message must be refused;
* :class:`~.response.ResponseSide`: the response hooks on what the app
  answers, and the replacement of anything they cannot read.

Neither does I/O or calls a plugin: their steps are generators that *yield*
``(hook, payload, context)`` and are *sent* the
:class:`~mcp_plugin_mw.models.HookResult`. :func:`drive` (async) and
:func:`drive_sync` run them, so ``asgi.py`` and ``wsgi.py`` share every rule
and differ only in how they move bytes.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import weakref
from typing import Any

from ..manager import PluginManager
from ..models import GlobalContext, HookType
from ..pending import PendingCalls, pending_calls
from . import jsonrpc
from .http import HTTP_HOOK_TYPES, header
from .request import BodyMode, RequestSide
from .response import ResponseSide
from .state import Calls, Forward, Recall, Remember, Reply, Request, ResponseMode, Steps

__all__ = [
    "BodyMode",
    "Exchange",
    "Forward",
    "Reply",
    "Request",
    "ResponseMode",
    "Steps",
    "drive",
    "drive_sync",
    "unanswered_calls",
]

logger = logging.getLogger(__name__)


class Exchange:
    """Decisions for one request and its response.

    :param manager: the plugins to run.
    :param request: the request line and headers.
    """

    __slots__ = ("context", "manager", "request", "response", "settings")

    def __init__(self, manager: PluginManager, request: Request) -> None:
        self.manager = manager
        self.settings = manager.settings
        # Looked up once: which hooks have plugins, for every decision below.
        active = manager.active_hooks
        self.context = _context(manager, request)
        calls = Calls()
        self.request = RequestSide(self.settings, active, request, self.context, calls)
        self.response = ResponseSide(self.request)

    @staticmethod
    def wants(manager: PluginManager) -> bool:
        """Whether any plugin could see a request, or its response.

        Any HTTP method may carry a JSON-RPC body, and a GET stream may
        resume an earlier POST's stream (``Last-Event-ID``) with its results,
        so the method alone never lets a request pass unseen.
        """
        return _watches(manager.active_hooks)


@functools.cache
def _watches(active: frozenset[HookType]) -> bool:
    # Asked on every request; the set changes only when the plugins do.
    return bool(active) and not (active.isdisjoint(jsonrpc.RPC_HOOK_TYPES) and active.isdisjoint(HTTP_HOOK_TYPES))


def _context(manager: PluginManager, request: Request) -> GlobalContext:
    settings, headers = manager.settings, request.headers
    user = header(headers, settings.user_header.lower()) if settings.user_header else None
    context = GlobalContext(
        request_id=header(headers, "x-request-id") or os.urandom(16).hex(),
        user=user or request.user,
        tenant_id=header(headers, settings.tenant_header.lower()) if settings.tenant_header else None,
        server_id=header(headers, settings.server_id_header.lower()) if settings.server_id_header else None,
        content_type=header(headers, "content-type"),
    )
    if request.client:
        context.metadata["client"] = request.client
    return context


async def drive(manager: PluginManager, steps: Steps) -> Any:
    """Run ``steps`` with ``await manager.invoke``; returns their value."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Recall | Remember):
                step = steps.send(await _astore_step(manager, step))
            else:
                step = steps.send(await manager.invoke(*step))
    except StopIteration as done:
        return done.value


def drive_sync(manager: PluginManager, steps: Steps) -> Any:
    """Run ``steps`` with ``manager.invoke_sync``; returns their value."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Recall | Remember):
                step = steps.send(_store_step(manager, step))
            else:
                step = steps.send(manager.invoke_sync(*step))
    except StopIteration as done:
        return done.value


_STORES: weakref.WeakKeyDictionary[PluginManager, PendingCalls] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def unanswered_calls(manager: PluginManager) -> PendingCalls:
    """The store of calls left unanswered by their stream, one per manager (``plugin_settings.pending_calls``)."""
    with _STORES_LOCK:
        store = _STORES.get(manager)
        if store is None:
            store = _STORES[manager] = pending_calls(manager.settings.pending_calls)
        return store


async def _astore_step(manager: PluginManager, step: Recall | Remember) -> Any:
    store = unanswered_calls(manager)
    try:
        if isinstance(step, Recall):
            return await store.arecall(step.session, step.key)
        await store.aremember(step.session, step.calls)
    except Exception:
        # Fail closed: a call that cannot be recalled leaves its result
        # unattributed, and the result is refused.
        logger.exception("the store of unanswered calls failed")
    return None


def _store_step(manager: PluginManager, step: Recall | Remember) -> Any:
    store = unanswered_calls(manager)
    try:
        if isinstance(step, Recall):
            return store.recall(step.session, step.key)
        store.remember(step.session, step.calls)
    except Exception:
        logger.exception("the store of unanswered calls failed")
    return None
