"""
Tool, prompt and resource policy
================================

:class:`ToolPolicyPlugin` allows or denies ``tools/call``, ``prompts/get`` and
``resources/read`` by name (tools, prompts) or URI (resources), using
shell-style globs:

.. code-block:: yaml

    - name: policy
      kind: tool_policy
      config:
        deny_tools: ["delete_*"]
        allow_prompts: ["summarize", "translate_*"]
        rules:
          - users: ["^admin_"]
            allow_tools: ["*"]
          - tenants: ["^trial-"]
            deny_resources: ["file:///*"]

How a decision is made:

* The top-level lists apply to everyone; each entry of ``rules`` applies only
  when its ``users`` and ``tenants`` regexes (searched in the user id and the
  tenant id; both must match when both are given) match the request.
* Deny wins: a name matched by any applicable ``deny_*`` list is refused.
* Allow lists add up: when one or more applicable rules have an ``allow_*``
  list for the kind, the name must match at least one of them. When none has,
  ``default`` decides (``allow`` unless set to ``deny``).

``users`` and ``tenants`` run on RE2, in time linear in the id; a pattern RE2
cannot compile (backreferences, lookarounds) is refused at load unless
``allow_backtracking: true``, which runs it on Python's engine.

For policies that differ wholesale per user or tenant, list the plugin twice
with different ``conditions`` instead.

Refusals are violations with code ``POLICY_DENIED`` and HTTP status 403.

List results (``tools/list``, ``prompts/list``, ``resources/list``,
``resources/templates/list``) are narrowed by the same decision: a client is
not offered what it may not call. Resource templates are matched by their
``uriTemplate``. Hiding is no access control on its own: the calls are
refused all the same.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from .._regex import NOTHING, UserPattern
from ..models import (
    Category,
    GlobalContext,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptListPayload,
    PromptPrehookPayload,
    ResourceListPayload,
    ResourcePreFetchPayload,
    ToolListPayload,
    ToolPreInvokePayload,
)
from ..plugin import Plugin
from ._config import Regex, Settings, compile_globs, parse_config

__all__ = ["ToolPolicyPlugin", "ToolPolicySettings"]

_Kind = Literal["tool", "prompt", "resource"]


class _Lists(Settings):
    allow_tools: tuple[str, ...] | None = None
    deny_tools: tuple[str, ...] = ()
    allow_prompts: tuple[str, ...] | None = None
    deny_prompts: tuple[str, ...] = ()
    allow_resources: tuple[str, ...] | None = None
    deny_resources: tuple[str, ...] = ()


class PolicyRule(_Lists):
    """One entry of ``rules``: lists that apply to matching users and tenants."""

    users: list[Regex] | None = None
    tenants: list[Regex] | None = None


class ToolPolicySettings(_Lists):
    """The ``config:`` of :class:`ToolPolicyPlugin`."""

    rules: tuple[PolicyRule, ...] = ()
    default: Literal["allow", "deny"] = "allow"
    allow_backtracking: bool = False
    """Run ``users``/``tenants`` patterns RE2 cannot compile on Python's engine (unsafe on hostile ids)."""


class _CompiledRule:
    """A rule's lists as one regex per kind and direction."""

    __slots__ = ("allow", "deny", "tenants", "users")

    def __init__(self, lists: _Lists, users: list[UserPattern] | None, tenants: list[UserPattern] | None) -> None:
        self.users = users
        self.tenants = tenants
        self.allow: dict[_Kind, UserPattern] = {}
        self.deny: dict[_Kind, UserPattern | None] = {}
        by_kind: tuple[tuple[_Kind, tuple[str, ...] | None, tuple[str, ...]], ...] = (
            ("tool", lists.allow_tools, lists.deny_tools),
            ("prompt", lists.allow_prompts, lists.deny_prompts),
            ("resource", lists.allow_resources, lists.deny_resources),
        )
        for kind, allow, deny in by_kind:
            # An empty allow list is a real list that matches nothing: it
            # forbids the kind outright, unlike an absent one.
            if allow is not None:
                self.allow[kind] = compile_globs(allow) or NOTHING
            self.deny[kind] = compile_globs(deny)

    def applies(self, context: GlobalContext) -> bool:
        if self.users is not None and not _search(self.users, context.user):
            return False
        return self.tenants is None or _search(self.tenants, context.tenant_id)


def _search(patterns: list[UserPattern], value: str | None) -> bool:
    return value is not None and any(pattern.search(value) for pattern in patterns)


class ToolPolicyPlugin(Plugin):
    """Allows or denies tools, prompts and resources by glob; see the module docstring."""

    default_category: ClassVar[Category] = Category.AUTHORIZATION

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = parse_config(ToolPolicySettings, self.config)
        self._rules = [_CompiledRule(self.settings, None, None)]
        self._rules.extend(_CompiledRule(rule, rule.users, rule.tenants) for rule in self.settings.rules)
        self._default_allow = self.settings.default == "allow"

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Refuse a tool call the policy does not allow."""
        return self._decide("tool", payload.name, context.global_context)

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Refuse a prompt the policy does not allow."""
        return self._decide("prompt", payload.prompt_id, context.global_context)

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Refuse a resource URI the policy does not allow."""
        return self._decide("resource", payload.uri, context.global_context)

    def tool_post_list(self, payload: ToolListPayload, context: PluginContext) -> PluginResult | None:
        """Hide the tools the policy does not allow."""
        kept = self._allowed("tool", payload.tools, "name", context.global_context)
        return None if kept is None else PluginResult(modified_payload=payload.model_copy(update={"tools": kept}))

    def prompt_post_list(self, payload: PromptListPayload, context: PluginContext) -> PluginResult | None:
        """Hide the prompts the policy does not allow."""
        kept = self._allowed("prompt", payload.prompts, "name", context.global_context)
        return None if kept is None else PluginResult(modified_payload=payload.model_copy(update={"prompts": kept}))

    def resource_post_list(self, payload: ResourceListPayload, context: PluginContext) -> PluginResult | None:
        """Hide the resources and resource templates the policy does not allow."""
        shared = context.global_context
        resources = self._allowed("resource", payload.resources, "uri", shared)
        templates = self._allowed("resource", payload.resource_templates, "uriTemplate", shared)
        if resources is None and templates is None:
            return None
        update = {"resources": resources, "resource_templates": templates}
        return PluginResult(
            modified_payload=payload.model_copy(update={k: v for k, v in update.items() if v is not None})
        )

    def _allowed(
        self, kind: _Kind, entries: list[dict[str, object]], key: str, context: GlobalContext
    ) -> list[dict[str, object]] | None:
        """The entries whose ``key`` the policy allows, or None when that is all of them."""
        # An entry without a name of its own cannot be called by it: hidden.
        kept = [e for e in entries if isinstance(e.get(key), str) and self.is_allowed(kind, str(e[key]), context)]
        return None if len(kept) == len(entries) else kept

    def is_allowed(self, kind: _Kind, name: str, context: GlobalContext) -> bool:
        """Whether ``name`` of ``kind`` (tool, prompt or resource) is allowed in ``context``."""
        return self._why_denied(kind, name, context) is None

    def _decide(self, kind: _Kind, name: str, context: GlobalContext) -> PluginResult | None:
        why = self._why_denied(kind, name, context)
        if why is None:
            return None
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Denied by policy",
                description=f"{kind} {name!r} is not allowed: {why}",
                code="POLICY_DENIED",
                details={"kind": kind, "name": name, "user": context.user, "tenant_id": context.tenant_id},
                http_status_code=403,
            ),
        )

    def _why_denied(self, kind: _Kind, name: str, context: GlobalContext) -> str | None:
        applicable = [rule for rule in self._rules if rule.applies(context)]
        for rule in applicable:
            deny = rule.deny[kind]
            if deny is not None and deny.match(name):
                return f"matches deny_{kind}s"
        allows = [rule.allow[kind] for rule in applicable if kind in rule.allow]
        if not allows:
            return None if self._default_allow else "denied by default"
        if any(allow.match(name) for allow in allows):
            return None
        return f"not in allow_{kind}s"
