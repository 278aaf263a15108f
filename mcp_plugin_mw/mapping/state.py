"""
What one exchange carries from its request to its response
==========================================================

The value types the request and response sides share: the request line, what
is handed to the app (:class:`Forward`) or sent instead (:class:`Reply`), and
:class:`Calls`, the JSON-RPC requests of the body that the response must be
matched against.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Generator
from typing import Any

from ..manager import PluginStartError
from ..models import GlobalContext, HookType
from . import jsonrpc
from .http import Headers

__all__ = ["Calls", "Forward", "Recall", "Remember", "Reply", "Request", "ResponseMode", "Steps", "failure"]


@dataclasses.dataclass(slots=True, frozen=True)
class Recall:
    """A step asking for the call remembered in ``session`` under ``key`` (taken, so once); sent the call or None."""

    session: str
    key: Any


@dataclasses.dataclass(slots=True, frozen=True)
class Remember:
    """A step asking to keep ``calls``, still unanswered when their stream ended, for ``session``; sent None."""

    session: str
    calls: tuple[jsonrpc.PendingCall, ...]


Step = tuple[HookType, Any, GlobalContext] | Recall | Remember
Steps = Generator[Step, Any, Any]
"""A sans-IO step: yields ``(hook, payload, context)`` and is sent the hook's :class:`HookResult`,
or yields a :class:`Recall` or :class:`Remember` for the driver's store of unanswered calls."""


@dataclasses.dataclass(slots=True)
class Request:
    """What the middleware knows of a request before reading its body."""

    method: str
    path: str
    query_string: str
    headers: Headers
    client: str | None = None
    user: str | None = None


@dataclasses.dataclass(slots=True)
class Reply:
    """A response the middleware sends itself, instead of or over the app's."""

    status: int
    headers: Headers
    body: bytes


@dataclasses.dataclass(slots=True)
class Forward:
    """The request to hand to the app; ``body`` None means the original bytes."""

    headers: Headers
    body: bytes | None = None
    path: str | None = None
    query_string: str | None = None


class ResponseMode(enum.Enum):
    """How the middleware treats a response body."""

    PASS = "pass"
    BUFFER = "buffer"
    STREAM = "stream"
    REPLACE = "replace"
    """The response cannot be inspected: the middleware's own reply goes out instead."""


@dataclasses.dataclass(slots=True)
class Calls:
    """The JSON-RPC requests of one body, keyed by :func:`jsonrpc.id_key`.

    ``pending`` are the calls whose response a response hook must see;
    ``seen`` every request id of the body, so that a response under an id
    the client never sent is caught; ``injected`` the middleware's own
    answers (blocks, refusals) to send with the app's response.
    """

    pending: dict[Any, jsonrpc.PendingCall] = dataclasses.field(default_factory=dict)
    seen: set[Any] = dataclasses.field(default_factory=set)
    injected: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pending or self.injected)

    def take_injected(self) -> list[dict[str, Any]]:
        """The middleware's own answers, once."""
        injected, self.injected = self.injected, []
        return injected

    def fail(self, detail: str) -> list[dict[str, Any]]:
        """A -32603 error for every pending call, then the injected answers; all forgotten."""
        errors = [jsonrpc.error_response(call.id, jsonrpc.INTERNAL_ERROR, detail) for call in self.pending.values()]
        self.pending.clear()
        return errors + self.take_injected()


def failure(error: BaseException | None) -> str:
    """What a client is told of a failure: which plugin could not start, never the internals."""
    if isinstance(error, PluginStartError):
        return f"plugin {error.plugin_name!r} failed to start"
    return "a plugin or the middleware failed"
