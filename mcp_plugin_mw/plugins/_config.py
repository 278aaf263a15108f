"""
Plugin settings parsing
=======================

Helpers shared by the built-in plugins to turn their ``config:`` mapping into a
validated pydantic model, with every problem reported as
``config.<field>: <problem>``, and to compile lists of globs. Patterns and
globs compile on RE2 through :mod:`mcp_plugin_mw._regex`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)

from .._regex import PatternError, UserPattern, compile_globs, compile_user_pattern
from ..config import key_hint

__all__ = ["Regex", "Settings", "compile_globs", "parse_config"]


class Settings(BaseModel):
    """Base for a plugin's ``config:`` model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SettingsT = TypeVar("SettingsT", bound=BaseModel)


def parse_config(model: type[SettingsT], config: Mapping[str, Any]) -> SettingsT:
    """Validate ``config`` with ``model``.

    :raises ValueError: one ``config.<field>: <problem>`` per problem, joined
        with ``; `` so the loader's one-line report shows them all.
    """
    try:
        return model.model_validate(dict(config), context={"allow_backtracking": _allows_backtracking(config)})
    except ValidationError as exc:
        problems = [f"{_location(error['loc'])}: {_message(error, model)}" for error in exc.errors()]
        raise ValueError("; ".join(problems)) from None


def _location(loc: tuple[int | str, ...]) -> str:
    where = "config"
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _message(error: Any, model: type[BaseModel]) -> str:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message += key_hint(model, tuple(error["loc"]))  # " (did you mean 'strategy'?)"
    # Errors raised by our own validators carry pydantic's prefix; drop it.
    return message.removeprefix("Value error, ")


def _allows_backtracking(config: Mapping[str, Any]) -> bool:
    # Read ahead of the model so that its patterns can be compiled with it;
    # the model's own ``allow_backtracking`` field (where the plugin has one)
    # reports a bad value, and a plugin without one refuses the key.
    try:
        return _BOOL.validate_python(config.get("allow_backtracking", False))
    except ValidationError:
        return False


_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def _compile_regex(value: Any, info: ValidationInfo) -> UserPattern:
    if isinstance(value, UserPattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression as a string, got {type(value).__name__}")
    allow = bool(info.context and info.context.get("allow_backtracking"))
    try:
        return compile_user_pattern(value, where="", allow_backtracking=allow)
    except PatternError as exc:
        raise ValueError(exc.reason) from None


Regex = Annotated[
    UserPattern, PlainValidator(_compile_regex), PlainSerializer(lambda pattern: pattern.pattern, return_type=str)
]
"""A regular expression given as a string, compiled on RE2 at load; a bad one names its error.

One RE2 cannot compile is refused unless the plugin's config has
``allow_backtracking: true`` (the model must then declare that field).
"""
