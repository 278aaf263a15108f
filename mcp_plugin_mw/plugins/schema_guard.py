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
tool. Their ``pattern``, ``patternProperties`` (and so ``additionalProperties``)
regexes run on RE2, in time linear in the text: one RE2 cannot compile
(backreferences, lookarounds) is refused at load unless ``allow_backtracking:
true``, which runs it on Python's engine. A failed validation is a violation (``INVALID_ARGUMENTS``, JSON-RPC
-32602, or ``INVALID_RESULT``, -32603) whose details list each failure with
its JSON path (``$.filters[2].field``), up to ``max_errors``.

Needs the ``jsonschema`` package (``pip install 'mcp-plugin-mw[schema]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, ValidationInfo

from .._regex import PatternError, UserPattern, compile_user_pattern
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


_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def _schema_patterns(schema: Any) -> Iterator[str]:
    """Every ``pattern`` and ``patternProperties`` regex in ``schema``, nested ones too."""
    if isinstance(schema, list):
        for item in schema:
            yield from _schema_patterns(item)
    elif isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            yield schema["pattern"]
        if isinstance(schema.get("patternProperties"), dict):
            yield from (key for key in schema["patternProperties"] if isinstance(key, str))
        for key, value in schema.items():
            if key not in _DATA_KEYWORDS:
                yield from _schema_patterns(value)


def _check_schema(schema: Schema, info: ValidationInfo) -> Schema:
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
    allow = bool(info.context and info.context.get("allow_backtracking"))
    for pattern in _schema_patterns(schema):
        try:
            compile_user_pattern(pattern, where="", allow_backtracking=allow)
        except PatternError as exc:
            raise ValueError(f"JSON Schema regex: {exc.reason}") from None
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
    allow_backtracking: bool = False
    """Run schema regexes RE2 cannot compile on Python's engine (unsafe on hostile arguments)."""


class _Table:
    """Name -> compiled validators, by exact name or first matching glob."""

    def __init__(self, exact: dict[str, Any], globs: list[tuple[UserPattern, Any]]) -> None:
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
        self._regexes: dict[str, UserPattern] = {}
        self._tools = self._table(
            {name: (self._validator(s.arguments), self._validator(s.result)) for name, s in settings.tools.items()}
        )
        self._prompts = self._table({name: self._validator(s.arguments) for name, s in settings.prompts.items()})

    def _validator(self, schema: Schema | None) -> Validator | None:
        if schema is None:
            return None
        from jsonschema.validators import Draft202012Validator, validator_for

        cls = _on_re2(validator_for(schema, default=Draft202012Validator), self._search)
        if self.settings.check_formats:
            return cls(schema, format_checker=cls.FORMAT_CHECKER)
        return cls(schema)

    def _search(self, pattern: str, text: str) -> bool:
        compiled = self._regexes.get(pattern)
        if compiled is None:
            # Checked at load (see _check_schema), so this does not raise.
            compiled = compile_user_pattern(
                pattern, where="schema regex", allow_backtracking=self.settings.allow_backtracking
            )
            self._regexes[pattern] = compiled
        return compiled.search(text) is not None

    @staticmethod
    def _table(entries: dict[str, Any]) -> _Table:
        exact: dict[str, Any] = {}
        globs: list[tuple[UserPattern, Any]] = []
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


def _on_re2(cls: type[Validator], search: Callable[[str, str], bool]) -> type[Validator]:
    """``cls`` with the keywords that run regexes (jsonschema uses :mod:`re`) running ``search``."""
    from jsonschema import ValidationError as Failure
    from jsonschema import validators

    def pattern(validator: Any, regex: str, instance: Any, schema: Any) -> Iterator[Failure]:
        if validator.is_type(instance, "string") and not search(regex, instance):
            yield Failure(f"{instance!r} does not match {regex!r}")

    def pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[Failure]:
        if not validator.is_type(instance, "object"):
            return
        for regex, subschema in patterns.items():
            for key, value in instance.items():
                if search(regex, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=regex)

    original_additional: Any = cls.VALIDATORS.get("additionalProperties")

    def additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Iterator[Failure]:
        if not validator.is_type(instance, "object"):
            return
        patterns = schema.get("patternProperties", {})
        if not patterns:
            yield from original_additional(validator, additional, instance, schema)
            return
        properties = schema.get("properties", {})
        extras = [
            key for key in instance if key not in properties and not any(search(regex, key) for regex in patterns)
        ]
        if validator.is_type(additional, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], additional, path=extra)
        elif not additional and extras:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            listed = ", ".join(repr(each) for each in sorted(patterns))
            yield Failure(f"{joined} {verb} not match any of the regexes: {listed}")

    replaced = {"pattern": pattern, "patternProperties": pattern_properties}
    if original_additional is not None:
        replaced["additionalProperties"] = additional_properties
    extend: Any = validators.extend  # untyped in jsonschema
    extended: type[Validator] = extend(cls, {key: value for key, value in replaced.items() if key in cls.VALIDATORS})
    return extended


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
