"""
Regex replace
=============

:class:`RegexReplacePlugin` rewrites the text of requests and responses (see
:mod:`~mcp_plugin_mw.plugins._base` for which strings; resource URIs
included) with an ordered list of rules, each applied to the output of the
one before:

.. code-block:: yaml

    - name: tidy
      kind: regex_replace
      config:
        rules:
          - {search: "crap", replace: "crud"}
          - {search: "crud", replace: "yikes"}        # so "crap" ends as "yikes"
          - {search: "(?i)acme corp", replace: "ACME"}
          - {search: "(\\w+)@internal\\.example", replace: "\\1@example.com"}

Replacements may refer to groups as ``\\1`` (up to ``\\99``), ``\\g<1>`` or
``\\g<name>``, and may write ``\\\\``, ``\\n``, ``\\r`` and ``\\t``; a reference
to a group the pattern lacks is refused at load.

Patterns never make a request hang: every pattern runs on RE2 (google-re2),
in time linear in the text, and must be RE2 syntax (``\\d``, ``\\w``, ``\\s``
and ``\\b`` are ASCII there). A pattern RE2 cannot compile (backreferences,
lookarounds) is refused at load, naming ``config.rules[<i>].search``.
``allow_backtracking: true`` runs such patterns on Python's backtracking
engine instead: only for patterns you have reviewed, as a hostile text can
make them run for hours. RE2 still runs every pattern it can compile.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field

from .._regex import UserPattern, compile_user_pattern, expander
from ..models import PluginConfig, PluginViolation
from ._base import Findings, TextFilterPlugin, config_error, counted
from ._config import Settings, parse_config

__all__ = [
    "HAVE_RE2",
    "RegexReplacePlugin",
    "RegexReplaceSettings",
    "compile_guarded",
]

HAVE_RE2: bool = True
"""Always true: google-re2 is a core dependency (kept for code that tested it)."""


class ReplaceRule(Settings):
    """One rule: a pattern and what to put in place of each match."""

    search: str = Field(min_length=1)
    replace: str = ""


class RegexReplaceSettings(Settings):
    """``config:`` of :class:`RegexReplacePlugin`."""

    rules: list[ReplaceRule] = Field(min_length=1)
    allow_backtracking: bool = False


# --------------------------------------------------------------------------
# Guarded compilation
# --------------------------------------------------------------------------


def compile_guarded(pattern: str, *, allow_backtracking: bool = False) -> UserPattern:
    """Compile ``pattern`` on RE2; see :func:`mcp_plugin_mw._regex.compile_user_pattern`.

    :raises ValueError: saying why the pattern is refused.
    """
    return compile_user_pattern(pattern, where="", allow_backtracking=allow_backtracking)


# --------------------------------------------------------------------------
# Replacement templates
# --------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\\(?:(\d{1,2})|g<([^>]*)>|(.))", re.DOTALL)
_ESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _template(replace: str, compiled: Any) -> list[str | int]:
    """``replace`` as literal pieces and group numbers, checked against ``compiled``'s groups.

    Parsed here rather than by the engine so that both engines read
    templates alike and a bad reference is refused at load.
    """
    pieces: list[str | int] = []
    position = 0
    for match in _TEMPLATE.finditer(replace):
        pieces.append(replace[position : match.start()])
        position = match.end()
        number, name, escaped = match.groups()
        if escaped is not None:
            if escaped not in _ESCAPES:
                raise ValueError(f"unknown escape \\{escaped} (use \\\\ for a backslash)")
            pieces.append(_ESCAPES[escaped])
            continue
        if name is not None:
            if name.isdigit():
                number = name
            elif name in compiled.groupindex:
                pieces.append(compiled.groupindex[name])
                continue
            else:
                raise ValueError(f"the pattern has no group named {name!r}")
        group = int(number)
        if group > compiled.groups:
            raise ValueError(f"the pattern has no group {group} (it has {compiled.groups})")
        pieces.append(group)
    pieces.append(replace[position:])
    merged: list[str | int] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        elif piece != "":
            merged.append(piece)
    return merged


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------


class RegexReplacePlugin(TextFilterPlugin):
    """Applies ordered regex rewrite rules to text; see the module docstring."""

    rewrites_uris: ClassVar[bool] = True

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(RegexReplaceSettings, self.config)
        self._rules: list[tuple[str, Any, Any]] = []
        problems: list[tuple[str, str]] = []
        for index, rule in enumerate(settings.rules):
            try:
                compiled = compile_guarded(rule.search, allow_backtracking=settings.allow_backtracking)
            except ValueError as exc:
                problems.append((f"rules[{index}].search", str(exc)))
                continue
            try:
                replacer = expander(tuple(_template(rule.replace, compiled)))
            except ValueError as exc:
                problems.append((f"rules[{index}].replace", str(exc)))
                continue
            self._rules.append((f"rules[{index}]", compiled, replacer))
        if problems:
            raise config_error(problems)

    def filter_text(self, text: str, found: Findings) -> str:
        """Apply every rule in order, counting replacements per rule."""
        for label, compiled, replacer in self._rules:
            new, count = compiled.subn(replacer, text)
            if count:
                counted(found, label, count)
                text = new
        return text

    def violation(self, found: Findings) -> PluginViolation:  # pragma: no cover - never blocks
        """Never used: this plugin rewrites and does not block."""
        raise NotImplementedError
