"""
Resource filter
===============

:class:`ResourceFilterPlugin` guards ``resources/read``:

* before the fetch (``resource_pre_fetch``) it refuses URIs whose scheme is
  not in ``allowed_schemes``, whose host is in ``blocked_domains`` or below
  one of them, that match a ``deny_uris`` glob, or that match no
  ``allow_uris`` glob when that list is given;
* after the fetch (``resource_post_fetch``) it refuses results larger than
  ``max_content_bytes`` and rewrites the ``text`` of each item of
  ``contents`` with ``text_filters``.

.. code-block:: yaml

    - name: resources
      kind: resource_filter
      config:
        allowed_schemes: [https, file]
        blocked_domains: [internal.example.com]
        deny_uris: ["file:///etc/*"]
        max_content_bytes: 1048576
        text_filters:
          - pattern: "(?i)password\\\\s*=\\\\s*\\\\S+"
            replacement: "password=[REDACTED]"

Globs are shell-style and case-sensitive; ``*`` also matches ``/``. A domain
entry ``example.com`` blocks ``example.com`` and every subdomain. Patterns
run on RE2, in time linear in the text (use ``(?i)`` for case-insensitive
matching; ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII there); a pattern RE2
cannot compile (backreferences, lookarounds) is refused at load unless
``allow_backtracking: true``, which runs it on Python's engine. Replacements
follow :func:`re.sub`, so ``\\1`` refers to a group.

Content size counts the UTF-8 bytes of each ``text`` and the decoded bytes of
each ``blob``. The plugin rewrites payloads, so it belongs to the ``content``
category (its default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .._regex import NOTHING, UserMatch, UserPattern, template_function
from ..models import (
    Category,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
)
from ..plugin import Plugin
from ._config import Regex, Settings, compile_globs, parse_config

__all__ = ["ResourceFilterPlugin", "ResourceFilterSettings", "TextFilter"]


class TextFilter(Settings):
    """One ``text_filters`` entry: every match of ``pattern`` becomes ``replacement``."""

    pattern: Regex
    replacement: str = "[REDACTED]"

    @model_validator(mode="after")
    def _replacement_fits_pattern(self) -> TextFilter:
        # Read now, so a group reference the pattern lacks fails at load
        # rather than on the first match.
        self.function()
        return self

    def function(self) -> Callable[[UserMatch], str]:
        """What replaces each match: ``replacement`` read as a :func:`re.sub` template."""
        try:
            return template_function(self.replacement, self.pattern)
        except ValueError as exc:
            raise ValueError(f"replacement {self.replacement!r} does not fit the pattern: {exc}") from None


class ResourceFilterSettings(Settings):
    """The ``config:`` of :class:`ResourceFilterPlugin`."""

    allowed_schemes: tuple[str, ...] | None = None
    blocked_domains: tuple[str, ...] = ()
    allow_uris: tuple[str, ...] | None = None
    deny_uris: tuple[str, ...] = ()
    max_content_bytes: int | None = Field(default=None, gt=0)
    text_filters: tuple[TextFilter, ...] = ()
    allow_backtracking: bool = False
    """Run ``text_filters`` patterns RE2 cannot compile on Python's engine (unsafe on hostile text)."""

    @field_validator("allowed_schemes")
    @classmethod
    def _lower_schemes(cls, schemes: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if schemes is None else tuple(scheme.lower().rstrip(":/") for scheme in schemes)

    @field_validator("blocked_domains")
    @classmethod
    def _normalize_domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        # "*.example.com" and ".example.com" are common ways to write "this
        # domain and below"; they all mean the same here.
        return tuple(domain.lower().removeprefix("*").strip(".") for domain in domains)


class ResourceFilterPlugin(Plugin):
    """Guards resource URIs and filters fetched resource contents; see the module docstring."""

    default_category: ClassVar[Category] = Category.CONTENT

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(ResourceFilterSettings, self.config)
        self._schemes = frozenset(settings.allowed_schemes) if settings.allowed_schemes is not None else None
        self._domains = frozenset(settings.blocked_domains)
        self._deny = compile_globs(settings.deny_uris)
        self._allow = None if settings.allow_uris is None else compile_globs(settings.allow_uris) or NOTHING
        self._filters: list[tuple[UserPattern, Callable[[UserMatch], str]]] = [
            (rule.pattern, rule.function()) for rule in settings.text_filters
        ]

    # ------------------------------------------------------------------
    # Before the fetch: the URI
    # ------------------------------------------------------------------

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Refuse a URI that the scheme, domain and URI rules do not allow."""
        uri = payload.uri
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError as exc:
            return _block("RESOURCE_URI_INVALID", f"resource URI {uri!r} cannot be parsed: {exc}", uri)
        scheme = parts.scheme.lower()
        if self._schemes is not None and scheme not in self._schemes:
            shown = f"scheme {scheme!r}" if scheme else "a URI without a scheme"
            return _block("RESOURCE_SCHEME_BLOCKED", f"{shown} is not allowed", uri, scheme=scheme)
        if host and self._domains:
            blocked = self._blocked_domain(host)
            if blocked is not None:
                return _block("RESOURCE_DOMAIN_BLOCKED", f"domain {host!r} is blocked", uri, domain=blocked)
        if self._deny is not None and self._deny.match(uri):
            return _block("RESOURCE_URI_DENIED", "the URI matches deny_uris", uri)
        if self._allow is not None and not self._allow.match(uri):
            return _block("RESOURCE_URI_DENIED", "the URI matches no allow_uris", uri)
        return None

    def _blocked_domain(self, host: str) -> str | None:
        # Walk up the labels: a.b.example.com, b.example.com, example.com, com.
        host = host.rstrip(".")
        while host:
            if host in self._domains:
                return host
            _, _, host = host.partition(".")
        return None

    # ------------------------------------------------------------------
    # After the fetch: the contents
    # ------------------------------------------------------------------

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> PluginResult | None:
        """Refuse oversized contents and apply the text filters."""
        result = payload.content
        if not isinstance(result, dict) or not isinstance(result.get("contents"), list):
            return None
        items: list[Any] = result["contents"]
        limit = self.settings.max_content_bytes
        if limit is not None:
            size = sum(_item_size(item) for item in items)
            if size > limit:
                return PluginResult(
                    continue_processing=False,
                    violation=PluginViolation(
                        reason="Resource too large",
                        description=f"resource content is {size} bytes, over the limit of {limit}",
                        code="RESOURCE_TOO_LARGE",
                        details={"uri": payload.uri, "size": size, "limit": limit},
                    ),
                )
        if not self.settings.text_filters:
            return None
        filtered = [self._filter_item(item) for item in items]
        if all(new is old for new, old in zip(filtered, items, strict=True)):
            return None
        changed = payload.model_copy(update={"content": {**result, "contents": filtered}})
        return PluginResult(modified_payload=changed)

    def _filter_item(self, item: Any) -> Any:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            return item
        text = original = item["text"]
        for pattern, function in self._filters:
            text = pattern.sub(function, text)
        return item if text == original else {**item, "text": text}


def _item_size(item: Any) -> int:
    if not isinstance(item, dict):
        return 0
    size = 0
    text = item.get("text")
    if isinstance(text, str):
        size += len(text.encode("utf-8", "surrogatepass"))
    blob = item.get("blob")
    if isinstance(blob, str):
        # Decoded size of base64 without decoding it: 3 bytes per 4 characters,
        # less the padding.
        size += max(0, len(blob) * 3 // 4 - blob[-2:].count("="))
    return size


def _block(code: str, why: str, uri: str, **details: Any) -> PluginResult:
    return PluginResult(
        continue_processing=False,
        violation=PluginViolation(
            reason="Resource blocked",
            description=f"resource {uri!r} blocked: {why}",
            code=code,
            details={"uri": uri, **details},
            http_status_code=403,
        ),
    )
