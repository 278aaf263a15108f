"""
Schema guard
============

:class:`SchemaGuardPlugin` validates tool (and prompt) arguments, and
optionally tool results, against JSON Schemas given per name:

.. code-block:: yaml

    - name: schemas
      kind: schema_guard
      config:
        tools:
          search:
            arguments:
              type: object
              properties: {query: {type: string, maxLength: 200}}
              required: [query]
              additionalProperties: false
            result:
              type: object
              required: [hits]
          "admin_*":
            arguments: {type: object, maxProperties: 3}
        prompts:
          summarize:
            arguments: {type: object, required: [text]}
        unknown_tools: allow

* Names are exact, or shell-style globs; an exact name wins, then the first
  matching glob in file order.
* ``result`` validates the result's ``structuredContent`` (what a tool's
  ``outputSchema`` describes); a result with ``isError: true`` is not checked.
* The draft follows each schema's ``$schema`` (2020-12 when absent).
  ``check_formats: true`` also enforces ``format``.
* ``unknown_tools: block`` refuses tools that have no entry.

Schemas are checked at load: a bad one is a configuration error naming the
tool. A failed validation is a violation (``INVALID_ARGUMENTS``, JSON-RPC
-32602, or ``INVALID_RESULT``, -32603) whose details list each failure with
its JSON path (``$.filters[2].field``), up to ``max_errors``.

Needs the ``jsonschema`` package (``pip install 'mcp-plugin-mw[schema]'``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field

from ..models import (
    Category,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPrehookPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from ..plugin import Plugin
from ._config import Settings, compile_globs, parse_config

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

__all__ = ["SchemaGuardPlugin", "SchemaGuardSettings"]

Schema = dict[str, Any] | bool


def _check_schema(schema: Schema) -> Schema:
    # Imported here: the module must import without the optional dependency
    # so that the plugin can say how to install it.
    from jsonschema import SchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    if isinstance(schema, bool):
        return schema  # true and false are complete schemas
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as error:
        raise ValueError(f"invalid JSON Schema at {error.json_path}: {error.message}") from None
    return schema


CheckedSchema = Annotated[Schema, AfterValidator(_check_schema)]
"""A JSON Schema, checked against its draft's metaschema at load."""


class ToolSchemas(Settings):
    """The schemas for one tool: ``arguments`` and ``result`` (``structuredContent``)."""

    arguments: CheckedSchema | None = None
    result: CheckedSchema | None = None


class PromptSchemas(Settings):
    """The schema for one prompt's ``arguments``."""

    arguments: CheckedSchema | None = None


class SchemaGuardSettings(Settings):
    """The ``config:`` of :class:`SchemaGuardPlugin`."""

    tools: dict[str, ToolSchemas] = Field(default_factory=dict)
    prompts: dict[str, PromptSchemas] = Field(default_factory=dict)
    unknown_tools: Literal["allow", "block"] = "allow"
    check_formats: bool = False
    max_errors: int = Field(default=10, gt=0)


class _Table:
    """Name -> compiled validators, by exact name or first matching glob."""

    def __init__(self, exact: dict[str, Any], globs: list[tuple[re.Pattern[str], Any]]) -> None:
        self.exact = exact
        self.globs = globs

    def find(self, name: str) -> Any:
        found = self.exact.get(name)
        if found is not None:
            return found
        for pattern, entry in self.globs:
            if pattern.match(name):
                return entry
        return None


class SchemaGuardPlugin(Plugin):
    """Validates arguments and results against JSON Schemas; see the module docstring."""

    default_category: ClassVar[Category] = Category.VALIDATION

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            raise ValueError("schema_guard needs the jsonschema package: pip install 'mcp-plugin-mw[schema]'") from None
        self.settings = settings = parse_config(SchemaGuardSettings, self.config)
        self._tools = self._table(
            {name: (self._validator(s.arguments), self._validator(s.result)) for name, s in settings.tools.items()}
        )
        self._prompts = self._table({name: self._validator(s.arguments) for name, s in settings.prompts.items()})

    def _validator(self, schema: Schema | None) -> Validator | None:
        if schema is None:
            return None
        from jsonschema.validators import Draft202012Validator, validator_for

        cls = validator_for(schema, default=Draft202012Validator)
        if self.settings.check_formats:
            return cls(schema, format_checker=cls.FORMAT_CHECKER)
        return cls(schema)

    @staticmethod
    def _table(entries: dict[str, Any]) -> _Table:
        exact: dict[str, Any] = {}
        globs: list[tuple[re.Pattern[str], Any]] = []
        for name, entry in entries.items():
            pattern = compile_globs([name]) if any(char in name for char in "*?[") else None
            if pattern is None:
                exact[name] = entry
            else:
                globs.append((pattern, entry))
        return _Table(exact, globs)

    # ------------------------------------------------------------------
    # Hooks
    # ------------------------------------------------------------------

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Validate a tool's arguments; refuse unknown tools with ``unknown_tools: block``."""
        entry = self._tools.find(payload.name)
        if entry is None:
            if self.settings.unknown_tools == "block":
                return PluginResult(
                    continue_processing=False,
                    violation=PluginViolation(
                        reason="Unknown tool",
                        description=f"tool {payload.name!r} has no schema and unknown tools are not allowed",
                        code="SCHEMA_MISSING",
                        details={"tool": payload.name},
                        http_status_code=400,
                        mcp_error_code=-32602,
                    ),
                )
            return None
        return self._validate(entry[0], payload.args, "tool", payload.name, "arguments")

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult | None:
        """Validate a tool result's ``structuredContent`` against the tool's ``result`` schema."""
        entry = self._tools.find(payload.name)
        if entry is None or entry[1] is None:
            return None
        result = payload.result
        if isinstance(result, dict) and result.get("isError") is True:
            return None
        if not isinstance(result, dict) or "structuredContent" not in result:
            return _violation(
                "INVALID_RESULT",
                f"tool {payload.name!r} result has no structuredContent to validate",
                {"tool": payload.name, "errors": []},
            )
        return self._validate(entry[1], result["structuredContent"], "tool", payload.name, "result")

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Validate a prompt's arguments."""
        return self._validate(
            self._prompts.find(payload.prompt_id), payload.args, "prompt", payload.prompt_id, "arguments"
        )

    def _validate(
        self, validator: Validator | None, instance: Any, kind: str, name: str, part: Literal["arguments", "result"]
    ) -> PluginResult | None:
        if validator is None:
            return None
        errors = [
            {"path": _path(error), "message": error.message, "keyword": str(error.validator)}
            for error in validator.iter_errors(instance)
        ]
        if not errors:
            return None
        # Deterministic order, so the first error reported is stable.
        errors.sort(key=lambda error: (error["path"], error["message"]))
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        errors = errors[: self.settings.max_errors]
        verb = "do" if part == "arguments" else "does"
        description = f"{kind} {name!r} {part} {verb} not match the schema: {first['path']}: {first['message']}{more}"
        code = "INVALID_ARGUMENTS" if part == "arguments" else "INVALID_RESULT"
        return _violation(code, description, {kind: name, "errors": errors})


def _path(error: ValidationError) -> str:
    """The JSON path of the value that failed; for a missing property, the property's."""
    path = error.json_path
    required = error.validator_value
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(required, list):
        # jsonschema reports a missing property at its parent, one error per
        # property, with the name quoted first in the message.
        for prop in required:
            if prop not in error.instance and error.message.startswith(repr(prop)):
                return f"{path}.{prop}"
    return path


def _violation(code: str, description: str, details: dict[str, Any]) -> PluginResult:
    arguments = code == "INVALID_ARGUMENTS"
    return PluginResult(
        continue_processing=False,
        violation=PluginViolation(
            reason="Invalid arguments" if arguments else "Invalid result",
            description=description,
            code=code,
            details=details,
            # Bad arguments are the caller's fault; a bad result is the server's.
            http_status_code=400 if arguments else 502,
            mcp_error_code=-32602 if arguments else -32603,
        ),
    )
