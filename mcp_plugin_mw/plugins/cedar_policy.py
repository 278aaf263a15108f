"""
Cedar policies
==============

:class:`CedarPolicyPlugin` decides ``tools/call``, ``prompts/get`` and
``resources/read`` with `Cedar <https://www.cedarpolicy.com>`_ policies,
evaluated in process by ``cedarpy`` (``pip install 'mcp-plugin-mw[cedar]'``),
and hides from list results what a client may not use.

.. code-block:: yaml

    - name: cedar
      kind: cedar_policy
      config:
        policy_file: /etc/mcp/policies.cedar
        entities_file: /etc/mcp/entities.json     # optional
        policies: |                                # inline, added after the file's
          @id("admins-all")
          permit(principal in Role::"admin", action, resource);
          @id("echo-for-all")
          permit(principal, action == Action::"tools/call", resource == Tool::"echo")
            when { context.arguments.text like "*" };

The request Cedar sees:

* ``principal``: ``User::"<user>"`` (the request's user, see
  ``plugin_settings.user_header``), or ``Anonymous::"anonymous"`` when there
  is none. When the tenant is known the user is a member of
  ``Tenant::"<tenant>"`` (``principal in Tenant::"acme"``), unless
  ``entities_file`` defines that user, whose parents then are the file's.
* ``action``: ``Action::"tools/call"``, ``Action::"prompts/get"`` or
  ``Action::"resources/read"``, the MCP method.
* ``resource``: ``Tool::"<name>"``, ``Prompt::"<name>"`` or
  ``Resource::"<uri>"``.
* ``context``: ``{hook, method, listing, arguments, user, tenant}``:
  the hook (``tool_pre_invoke``, ...), the method, ``listing`` (``false``,
  ``true`` in list results), the tool's or prompt's arguments (``{}`` for a
  resource; absent when listing), and ``user`` and ``tenant`` when known
  (test with ``context has tenant``).

Arguments become Cedar values this way: strings, booleans and integers that
fit in 64 bits as they are; other numbers (floats, huge integers) as the
string of their JSON text (``"1.5"``); ``null`` is left out (of a record, so
``has`` is false; of a list); lists become sets (order and repeats are lost);
objects become records, except that a key Cedar would read as an escape
(``__entity``, ``__extn``, ``__expr``) gets one more leading underscore, so a
client cannot forge an entity reference or an extension value.

Settings:

* ``policies`` (none) and ``policy_file`` (none): Cedar policies, at least
  one of the two; both are used together (the file's first). They are parsed
  at load: a syntax error is a configuration error naming the field and
  Cedar's message.
* ``entities_file`` (none) or ``entities`` (``[]``): entities in Cedar's
  JSON format (a list of ``{uid, attrs, parents}``), for roles and groups.
* ``policy_errors`` (``deny``): a request for which a policy fails to
  evaluate (an attribute missing, a type mismatch) is denied. Cedar itself
  skips an erroring policy, which lets a ``forbid`` that errors on a
  client's odd argument turn into an allow; ``ignore`` restores Cedar's own
  rule.
* ``check_interval`` (``0``): seconds between two looks at the files' status
  (modification time, size, inode). With ``0`` every decision first looks
  (an ``os.stat`` per file); ``null`` never looks again after load.

Decisions: Cedar denies unless a ``permit`` matches and no ``forbid`` does.
A denial is a violation with code ``CEDAR_DENIED`` (HTTP 403) naming the
policies that determined it: ``details.policies`` lists the ``@id`` of each
``forbid`` that matched (or Cedar's ``policy<N>``, its position in the file
then the inline text, from 0), empty for "no permit matched";
``details.errors`` lists policy evaluation errors. List results
(``tools/list``, ``prompts/list``, ``resources/list`` and resource
templates, by ``uriTemplate``) keep the entries whose call Cedar allows with
``context.listing`` true and no ``arguments``, and those for which a policy
errored (a condition on the arguments cannot be judged before the call);
hiding is no access control on its own, the calls are refused all the same.

Reloading: ``PluginManager.reload`` keeps a plugin whose configuration entry
did not change, so a changed ``policy_file`` or ``entities_file`` is not
noticed by the reload itself; the plugin notices it (see ``check_interval``)
and re-reads the files before its next decision, whether or not the manager
reloads. A file that no longer parses leaves the last good policies in
force, is logged, and marks the plugin unhealthy in ``manager.status()``
(the admin app's ``/health`` answers 503 for an enforcing plugin) until it
is fixed. A change to the inline ``policies`` changes the entry: the reload
builds a new plugin, and a syntax error there fails the reload as any
configuration error does.

.. warning::

    The principal is only as trustworthy as the user and tenant the
    middleware is given: ``user_header`` and ``tenant_header`` must be set by
    a proxy that authenticates the client and strips the client's own
    headers. Policies see the arguments as sent, before content plugins
    change them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

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
from ..plugin import Plugin, PluginStatus
from ._base import config_error
from ._config import Settings, parse_config

try:
    import cedarpy
except ImportError:  # pragma: no cover - exercised where the extra is missing
    cedarpy = None  # type: ignore[assignment]

__all__ = ["HAVE_CEDARPY", "CedarPolicyPlugin", "CedarPolicySettings", "to_cedar"]

logger = logging.getLogger(__name__)

HAVE_CEDARPY: bool = cedarpy is not None
"""Whether cedarpy is installed."""

INSTALL_HINT = "cedar_policy needs the cedarpy package: pip install 'mcp-plugin-mw[cedar]'"

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_ESCAPES = frozenset({"__entity", "__extn", "__expr"})
_CACHE_SIZE = 1024


class CedarPolicySettings(Settings):
    """``config:`` of :class:`CedarPolicyPlugin`."""

    policies: str | None = None
    policy_file: str | None = None
    entities_file: str | None = None
    entities: list[dict[str, Any]] = Field(default_factory=list)
    policy_errors: Literal["deny", "ignore"] = "deny"
    check_interval: float | None = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _some_policies(self) -> CedarPolicySettings:
        if self.policies is None and self.policy_file is None:
            raise ValueError("give policies, a policy_file, or both")
        return self


def to_cedar(value: Any) -> Any:
    """``value`` (plain JSON) as a Cedar JSON value; None for ``null`` (see the module docstring)."""
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is int:
        return value if _LONG_MIN <= value <= _LONG_MAX else str(value)
    if kind is float:
        return json.dumps(value)
    if kind is dict:
        record: dict[str, Any] = {}
        for key, item in value.items():
            converted = to_cedar(item)
            if converted is not None:
                name = str(key)
                record["_" + name if name in _ESCAPES else name] = converted
        return record
    if kind is list or kind is tuple:
        return [converted for item in value if (converted := to_cedar(item)) is not None]
    return None if value is None else str(value)


def _uid(kind: str, name: str) -> dict[str, str]:
    return {"type": kind, "id": name}


def _display(uid: dict[str, str]) -> str:
    return f"{uid['type']}::{json.dumps(uid['id'])}"


class _Loaded:
    """One consistent set of policies and entities, and the files' status it came from."""

    __slots__ = ("entities", "known", "policies", "signature")

    def __init__(self, policies: Any, entities: Any, known: frozenset[tuple[str, str]], signature: Any) -> None:
        self.policies = policies
        self.entities = entities
        self.known = known
        self.signature = signature


class CedarPolicyPlugin(Plugin):
    """Decides calls with Cedar policies; see the module docstring."""

    default_category: ClassVar[Category] = Category.AUTHORIZATION

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        if cedarpy is None:
            raise ValueError(INSTALL_HINT)
        self.settings = parse_config(CedarPolicySettings, self.config)
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._bad_signature: Any = None
        self._last_error: str | None = None
        self._principals: dict[tuple[str | None, str | None], Any] = {}
        self._loaded = self._load()

    # ------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------

    def _files(self) -> list[str]:
        return [path for path in (self.settings.policy_file, self.settings.entities_file) if path is not None]

    def _signature(self) -> tuple[Any, ...]:
        status: list[Any] = []
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError as exc:
                status.append(("missing", exc.errno))
            else:
                status.append((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))
        return tuple(status)

    def _load(self) -> _Loaded:
        """Read and parse the policies and entities; ``ValueError`` naming the field on failure."""
        settings = self.settings
        signature = self._signature()
        texts: list[str] = []
        if settings.policy_file is not None:
            texts.append(_read(settings.policy_file, "policy_file"))
        if settings.policies is not None:
            texts.append(settings.policies)
        field = "policy_file" if settings.policies is None else ("policies" if settings.policy_file is None else None)
        try:
            policies = cedarpy.PolicySet.from_str("\n".join(texts))
        except ValueError as exc:
            if field is None:
                # Both were given: find out which one is wrong.
                field = "policies"
                try:
                    cedarpy.PolicySet.from_str(texts[0])
                except ValueError:
                    field = "policy_file"
            raise config_error([(field, f"Cedar cannot parse the policies: {exc}")]) from None
        documents = list(settings.entities)
        entities_field = "entities"
        if settings.entities_file is not None:
            entities_field = "entities_file"
            try:
                loaded = json.loads(_read(settings.entities_file, "entities_file"))
            except json.JSONDecodeError as exc:
                raise config_error([("entities_file", f"not JSON: {exc}")]) from None
            if not isinstance(loaded, list):
                raise config_error([("entities_file", "expected a JSON list of entities")])
            documents.extend(loaded)
        try:
            entities = cedarpy.Entities.from_json_str(json.dumps(documents))
        except (ValueError, TypeError) as exc:
            raise config_error([(entities_field, f"Cedar cannot read the entities: {exc}")]) from None
        known = frozenset(
            (str(e["uid"].get("type")), str(e["uid"].get("id")))
            for e in documents
            if isinstance(e, dict) and isinstance(e.get("uid"), dict)
        )
        return _Loaded(policies, entities, known, signature)

    def _refresh(self) -> _Loaded:
        """The current policies, re-read first when the files changed (see ``check_interval``)."""
        loaded = self._loaded
        interval = self.settings.check_interval
        if interval is None or not self._files():
            return loaded
        now = time.monotonic()
        if interval and now - self._checked < interval:
            return loaded
        self._checked = now
        signature = self._signature()
        if signature == loaded.signature or signature == self._bad_signature:
            return loaded
        with self._lock:
            if self._loaded is not loaded:
                return self._loaded
            try:
                fresh = self._load()
            except (ValueError, OSError) as exc:
                self._bad_signature = signature
                self._last_error = f"policy files not reloaded: {exc}"
                logger.error("plugin %s: %s; the previous policies stay in force", self.name, self._last_error)
                return loaded
            self._bad_signature = None
            self._last_error = None
            self._principals = {}
            self._loaded = fresh
            logger.info("plugin %s: policy files reloaded", self.name)
            return fresh

    def status(self) -> PluginStatus:
        """Unhealthy while a changed policy or entities file cannot be used."""
        self._refresh()
        status = super().status()
        status.healthy = self._last_error is None
        status.last_error = self._last_error
        return status

    # ------------------------------------------------------------------
    # Deciding
    # ------------------------------------------------------------------

    def _principal(self, context: GlobalContext, loaded: _Loaded) -> tuple[dict[str, str], Any]:
        user, tenant = context.user, context.tenant_id
        principal = _uid("User", user) if user else _uid("Anonymous", "anonymous")
        if not user or not tenant or ("User", user) in loaded.known:
            return principal, loaded.entities
        key = (user, tenant)
        entities = self._principals.get(key)
        if entities is None:
            member = [{"uid": principal, "attrs": {}, "parents": [_uid("Tenant", tenant)]}]
            entities = loaded.entities.with_added_json_str(json.dumps(member))
            if len(self._principals) >= _CACHE_SIZE:
                self._principals = {}
            self._principals[key] = entities
        return principal, entities

    def authorize(
        self, method: str, resource: dict[str, str], hook: str, context: GlobalContext, arguments: Any = None
    ) -> tuple[bool, bool, list[str], list[str]]:
        """(allowed, Cedar's own decision, determining policy ids, evaluation errors)."""
        loaded = self._refresh()
        principal, entities = self._principal(context, loaded)
        record: dict[str, Any] = {"hook": hook, "method": method, "listing": arguments is None}
        if arguments is not None:
            converted = to_cedar(arguments)
            record["arguments"] = converted if isinstance(converted, dict) else {}
        if context.user:
            record["user"] = context.user
        if context.tenant_id:
            record["tenant"] = context.tenant_id
        request = {"principal": principal, "action": _uid("Action", method), "resource": resource, "context": record}
        result = cedarpy.is_authorized(request, loaded.policies, entities)
        diagnostics = result.diagnostics
        names = diagnostics.id_annotations_by_reason
        reasons = [names.get(reason) or reason for reason in diagnostics.reasons]
        errors = [str(error) for error in diagnostics.errors]
        allowed = result.allowed and not (errors and self.settings.policy_errors == "deny")
        return allowed, result.allowed, reasons, errors

    def _decide(
        self, method: str, resource: dict[str, str], hook: str, context: GlobalContext, arguments: Any
    ) -> PluginResult | None:
        allowed, cedar_allowed, reasons, errors = self.authorize(method, resource, hook, context, arguments)
        if allowed:
            return None
        if cedar_allowed:
            # Cedar allowed, but a policy errored (policy_errors: deny): the
            # permits that matched did not determine this denial.
            rule, reasons, why = "policy_error", [], "a policy failed to evaluate"
        elif reasons:
            rule, why = "forbid", f"forbidden by {', '.join(reasons)}"
        else:
            rule, why = "no_permit", "no permit policy matched"
        target = _display(resource)
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Denied by Cedar policy",
                description=f"{method} on {target} denied: {why}",
                code="CEDAR_DENIED",
                details={
                    "rule": rule,
                    "action": method,
                    "resource": target,
                    "principal": context.user,
                    "tenant_id": context.tenant_id,
                    "policies": reasons,
                    "errors": errors,
                },
                http_status_code=403,
            ),
        )

    def _shown(self, method: str, resource: dict[str, str], hook: str, context: GlobalContext) -> bool:
        allowed, _, _, errors = self.authorize(method, resource, hook, context)
        return allowed or bool(errors)

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Refuse a tool call Cedar does not allow."""
        return self._decide(
            "tools/call", _uid("Tool", payload.name), "tool_pre_invoke", context.global_context, payload.args or {}
        )

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Refuse a prompt Cedar does not allow."""
        return self._decide(
            "prompts/get",
            _uid("Prompt", payload.prompt_id),
            "prompt_pre_fetch",
            context.global_context,
            payload.args or {},
        )

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Refuse a resource read Cedar does not allow."""
        return self._decide(
            "resources/read", _uid("Resource", payload.uri), "resource_pre_fetch", context.global_context, {}
        )

    def _kept(
        self, entries: list[dict[str, Any]], key: str, method: str, kind: str, hook: str, context: GlobalContext
    ) -> list[dict[str, Any]] | None:
        kept = [
            entry
            for entry in entries
            if isinstance(entry.get(key), str) and self._shown(method, _uid(kind, str(entry[key])), hook, context)
        ]
        return None if len(kept) == len(entries) else kept

    def tool_post_list(self, payload: ToolListPayload, context: PluginContext) -> PluginResult | None:
        """Hide the tools Cedar denies."""
        kept = self._kept(payload.tools, "name", "tools/call", "Tool", "tool_post_list", context.global_context)
        return None if kept is None else PluginResult(modified_payload=payload.model_copy(update={"tools": kept}))

    def prompt_post_list(self, payload: PromptListPayload, context: PluginContext) -> PluginResult | None:
        """Hide the prompts Cedar denies."""
        kept = self._kept(payload.prompts, "name", "prompts/get", "Prompt", "prompt_post_list", context.global_context)
        return None if kept is None else PluginResult(modified_payload=payload.model_copy(update={"prompts": kept}))

    def resource_post_list(self, payload: ResourceListPayload, context: PluginContext) -> PluginResult | None:
        """Hide the resources and resource templates Cedar denies."""
        shared = context.global_context
        hook = "resource_post_list"
        resources = self._kept(payload.resources, "uri", "resources/read", "Resource", hook, shared)
        templates = self._kept(payload.resource_templates, "uriTemplate", "resources/read", "Resource", hook, shared)
        if resources is None and templates is None:
            return None
        update = {"resources": resources, "resource_templates": templates}
        return PluginResult(
            modified_payload=payload.model_copy(update={k: v for k, v in update.items() if v is not None})
        )


def _read(path: str, field: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise config_error([(field, f"cannot read {path!r}: {exc}")]) from None
