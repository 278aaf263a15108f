"""
Plugin settings parsing
=======================

Helpers shared by the built-in plugins to turn their ``config:`` mapping into a
validated pydantic model, with every problem reported as
``config.<field>: <problem>``, and to compile lists of globs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

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
        return model.model_validate(dict(config))
    except ValidationError as exc:
        problems = [f"{_location(error['loc'])}: {_message(error)}" for error in exc.errors()]
        raise ValueError("; ".join(problems)) from None


def _location(loc: tuple[int | str, ...]) -> str:
    where = "config"
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _message(error: Any) -> str:
    message = str(error["msg"])
    # Errors raised by our own validators carry pydantic's prefix; drop it.
    return message.removeprefix("Value error, ")


def compile_globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of the shell-style ``patterns``; None if there are none.

    ``*`` matches any run of characters, ``/`` included, so ``file:///srv/*``
    covers a whole tree.
    """
    parts = [f"(?:{fnmatch.translate(pattern)})" for pattern in patterns]
    return re.compile("|".join(parts)) if parts else None


def _compile_regex(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[re.Pattern[str], BeforeValidator(_compile_regex)]
"""A regular expression given as a string, compiled at load; a bad one names its error."""
