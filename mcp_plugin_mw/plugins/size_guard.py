"""
Size guard
==========

:class:`SizeGuardPlugin` bounds what goes to a tool and what comes back:

* ``max_argument_bytes``: the size of a tool's or prompt's arguments,
  encoded as JSON, must not exceed this many bytes; larger requests are
  refused (code ``ARGUMENTS_TOO_LARGE``, HTTP 413).
* ``max_result_chars``: the text of a tool result, a rendered prompt or a
  resource read must not exceed this many characters. With ``action:
  truncate`` (the default) the text is cut there: the item where the limit
  falls is shortened and ends with ``truncation_marker``, later text items are
  dropped, and everything else (images, ``structuredContent``, ``isError``)
  is kept. With ``action: block`` the result is refused (code
  ``RESULT_TOO_LARGE``).

.. code-block:: yaml

    - name: size
      kind: size_guard
      config:
        max_argument_bytes: 65536
        max_result_chars: 20000
        action: truncate

Text means the ``text`` of ``text`` content items and of embedded resources,
in tool results and prompt messages, and ``contents[].text`` of resource
reads. The marker is not counted against the limit. ``structuredContent`` is
not measured: constrain it with ``schema_guard``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, model_validator

from ..models import (
    Category,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from ..plugin import Plugin
from ._config import Settings, parse_config

__all__ = ["SizeGuardPlugin", "SizeGuardSettings"]

# An accessor finds the text an item carries: None for items without text,
# else the text and a function that builds the item with other text.
_Rebuild = Callable[[str], Any]
_Access = Callable[[Any], "tuple[str, _Rebuild] | None"]


class SizeGuardSettings(Settings):
    """The ``config:`` of :class:`SizeGuardPlugin`."""

    max_argument_bytes: int | None = Field(default=None, gt=0)
    max_result_chars: int | None = Field(default=None, gt=0)
    action: Literal["truncate", "block"] = "truncate"
    truncation_marker: str = "\n[truncated]"

    @model_validator(mode="after")
    def _some_limit(self) -> SizeGuardSettings:
        if self.max_argument_bytes is None and self.max_result_chars is None:
            raise ValueError("set max_argument_bytes, max_result_chars or both")
        return self


class SizeGuardPlugin(Plugin):
    """Refuses oversized arguments and truncates or refuses oversized results."""

    default_category: ClassVar[Category] = Category.CONTENT

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = parse_config(SizeGuardSettings, self.config)

    # ------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Refuse tool arguments over ``max_argument_bytes``."""
        return self._check_arguments(payload.args, "tool", payload.name)

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Refuse prompt arguments over ``max_argument_bytes``."""
        return self._check_arguments(payload.args, "prompt", payload.prompt_id)

    def _check_arguments(self, args: dict[str, Any], kind: str, name: str) -> PluginResult | None:
        limit = self.settings.max_argument_bytes
        if limit is None:
            return None
        size = len(orjson.dumps(args))
        if size <= limit:
            return None
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Arguments too large",
                description=f"{kind} {name!r} arguments are {size} bytes, over the limit of {limit}",
                code="ARGUMENTS_TOO_LARGE",
                details={kind: name, "size": size, "limit": limit},
                http_status_code=413,
            ),
        )

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult | None:
        """Truncate or refuse a tool result over ``max_result_chars``."""
        return self._check_result(payload, "result", "content", _block_text, "tool", payload.name)

    def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PluginResult | None:
        """Truncate or refuse a rendered prompt over ``max_result_chars``."""
        return self._check_result(payload, "result", "messages", _message_text, "prompt", payload.prompt_id)

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> PluginResult | None:
        """Truncate or refuse resource contents over ``max_result_chars``."""
        return self._check_result(payload, "content", "contents", _block_text, "resource", payload.uri)

    def _check_result(
        self, payload: Any, field: str, key: str, access: _Access, kind: str, name: str
    ) -> PluginResult | None:
        limit = self.settings.max_result_chars
        result = getattr(payload, field)
        if limit is None or not isinstance(result, dict) or not isinstance(result.get(key), list):
            return None
        items: list[Any] = result[key]
        total = 0
        for item in items:
            text = access(item)
            if text is not None:
                total += len(text[0])
        if total <= limit:
            return None
        if self.settings.action == "block":
            return PluginResult(
                continue_processing=False,
                violation=PluginViolation(
                    reason="Result too large",
                    description=f"{kind} {name!r} result has {total} characters of text, over the limit of {limit}",
                    code="RESULT_TOO_LARGE",
                    details={kind: name, "chars": total, "limit": limit},
                    mcp_error_code=-32603,
                ),
            )
        kept = self._truncate(items, access, limit)
        changed = payload.model_copy(update={field: {**result, key: kept}})
        return PluginResult(
            modified_payload=changed,
            metadata={self.name: {"truncated": True, "chars": total, "limit": limit}},
        )

    def _truncate(self, items: list[Any], access: _Access, limit: int) -> list[Any]:
        remaining = limit
        cut = False
        kept: list[Any] = []
        for item in items:
            found = access(item)
            if found is None:
                kept.append(item)
                continue
            if cut:
                continue  # a text item after the cut: dropped
            text, rebuild = found
            if len(text) <= remaining:
                remaining -= len(text)
                kept.append(item)
                continue
            cut = True
            kept.append(rebuild(text[:remaining] + self.settings.truncation_marker))
        return kept


def _block_text(item: Any) -> tuple[str, _Rebuild] | None:
    """Text of a content block, an embedded resource, or a ``contents`` entry."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    text = item.get("text")
    if kind in (None, "text") and isinstance(text, str):
        return text, lambda new: {**item, "text": new}
    resource = item.get("resource")
    if kind == "resource" and isinstance(resource, dict) and isinstance(resource.get("text"), str):
        return resource["text"], lambda new: {**item, "resource": {**resource, "text": new}}
    return None


def _message_text(message: Any) -> tuple[str, _Rebuild] | None:
    """Text of a prompt message, whose ``content`` is one content block."""
    if not isinstance(message, dict):
        return None
    found = _block_text(message.get("content"))
    if found is None:
        return None
    text, rebuild = found
    return text, lambda new: {**message, "content": rebuild(new)}
