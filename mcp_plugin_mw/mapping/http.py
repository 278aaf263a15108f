"""
Plain HTTP messages and hook payloads
=====================================

Header lists, media types, and the ``application/problem+json`` answers the
middlewares give for blocked requests and for requests they refuse to handle
(RFC 9457).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from .._regex import PatternError, UserPattern, compile_user_pattern, compile_vetted_pattern
from ..models import HookType, PluginViolation
from . import jsonrpc

__all__ = [
    "HTTP_HOOK_TYPES",
    "Headers",
    "excluded_urls",
    "header",
    "is_identity",
    "is_json",
    "media_type",
    "problem",
    "replace_header",
    "rpc_reply",
    "violation_problem",
]

Headers = list[tuple[str, str]]
"""Header pairs with lower-case names, in wire order."""

HTTP_HOOK_TYPES = frozenset({HookType.HTTP_PRE_REQUEST, HookType.HTTP_POST_REQUEST})
"""The plain HTTP hooks, which see every request and response."""

_STATUS_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


class _AnyOf:
    """Several patterns searched one after the other, with ``search`` like one pattern."""

    __slots__ = ("patterns",)

    def __init__(self, patterns: list[UserPattern]) -> None:
        self.patterns = patterns

    def search(self, text: str) -> Any:
        for pattern in self.patterns:
            found = pattern.search(text)
            if found is not None:
                return found
        return None


def excluded_urls(patterns: list[str]) -> UserPattern | _AnyOf | None:
    """What matches any of the ``excluded_urls`` patterns (``.search(path)``), or None for none.

    The paths are the client's, so the patterns run on RE2 (DESIGN §9):
    joined into one when RE2 compiles them all. One RE2 cannot compile has
    passed :func:`~mcp_plugin_mw.config.load_config` only under
    ``plugin_settings.allow_backtracking: true``, and runs on Python's engine.
    """
    if not patterns:
        return None
    compiled = [
        compile_vetted_pattern(pattern, where=f"plugin_settings.excluded_urls[{index}]")
        for index, pattern in enumerate(patterns)
    ]
    if len(compiled) == 1:
        return compiled[0]
    if all(pattern.engine == "re2" for pattern in compiled):
        joined = "|".join(f"(?:{pattern})" for pattern in patterns)
        try:
            return compile_user_pattern(joined, where="plugin_settings.excluded_urls")
        except PatternError:
            pass  # e.g. a group name used twice: search them one by one
    return _AnyOf(compiled)


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def replace_header(headers: Iterable[tuple[str, str]], name: str, value: str | None) -> Headers:
    """``headers`` with every ``name`` removed and, unless None, one ``value`` appended."""
    kept = [(key, item) for key, item in headers if key != name]
    if value is not None:
        kept.append((name, value))
    return kept


def is_identity(content_encoding: str | None) -> bool:
    """Whether a Content-Encoding leaves the body as it is (absent, empty or ``identity``)."""
    return (content_encoding or "").strip().lower() in ("", "identity")


def media_type(content_type: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    if not content_type:
        return ""
    return content_type.partition(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (``application/json`` or ``+json``).

    A comma-separated list counts when any of its types is JSON: the MCP SDK
    server accepts ``text/plain, application/json`` as JSON, so its body
    must not pass unread.
    """
    if not content_type:
        return False
    for part in content_type.split(","):
        kind = media_type(part)
        if kind == "application/json" or kind.endswith("+json"):
            return True
    return False


def problem(status: int, detail: str, **extra: Any) -> tuple[int, Headers, bytes]:
    """A problem+json response: status, headers and body."""
    document = {"type": "about:blank", "title": _STATUS_TITLES.get(status, "Error"), "status": status}
    document["detail"] = detail
    document.update(extra)
    body = orjson.dumps(document)
    return status, [("content-type", "application/problem+json"), ("content-length", str(len(body)))], body


def violation_problem(violation: PluginViolation) -> tuple[int, Headers, bytes]:
    """The problem+json answer to a plain HTTP request a plugin blocked."""
    status = violation.http_status_code or 403
    status, headers, body = problem(
        status,
        violation.description or violation.reason,
        code=violation.code,
        plugin_name=violation.plugin_name,
        details=violation.details,
    )
    return status, headers + retry_after(violation), body


def retry_after(violation: PluginViolation) -> Headers:
    """A ``Retry-After`` header when the violation says when to retry."""
    seconds = violation.details.get("retry_after") if violation.details else None
    if isinstance(seconds, int | float) and seconds >= 0:
        return [("retry-after", str(max(1, round(seconds))))]
    return []


def rpc_reply(document: Any, status: int = 200) -> tuple[int, Headers, bytes]:
    """A JSON-RPC answer (one message or a batch) of the middleware's own.

    A ``Retry-After`` header is added when a violation in it says when to retry.
    """
    body = jsonrpc.encode(document)
    headers: Headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    for message in document if isinstance(document, list) else [document]:
        error = message.get("error") if isinstance(message, dict) else None
        data = error.get("data") if isinstance(error, dict) else None
        if isinstance(data, dict) and isinstance(data.get("details"), dict):
            headers += retry_after(PluginViolation(reason="", details=data["details"]))
            break
    return status, headers, body
