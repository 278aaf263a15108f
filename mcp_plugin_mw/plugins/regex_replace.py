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

Patterns never make a request hang. With google-re2 installed
(``pip install google-re2``) every pattern runs on RE2, in time linear in the
text, and must be RE2 syntax (``\\d`` and ``\\b`` are ASCII there); a pattern
RE2 cannot compile (backreferences, lookarounds) is refused at load, naming
``config.rules[<i>].search``. Without RE2, patterns run on Python's
backtracking engine and a conservative check refuses those that could
backtrack catastrophically: backreferences, lookarounds, and a variable
repetition or an alternation (whose branches may start alike) inside an
unbounded repetition, as in ``(a+)+$`` or ``(a|ab)*``. ``allow_backtracking:
true`` lifts both refusals and runs such patterns on Python's engine: only
for patterns you have reviewed. (Patterns the check lets through can still
be slow on adversarial text, e.g. ``\\s*=`` on a long run of spaces is
quadratic; RE2 has no such cases.)
"""

from __future__ import annotations

import importlib
import re
from typing import Any, ClassVar

from pydantic import Field

from ..models import PluginConfig, PluginViolation
from ._base import Findings, TextFilterPlugin, config_error, counted
from ._config import Settings, parse_config

try:
    import re2  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - exercised in the fallback environment
    re2 = None

__all__ = [
    "HAVE_RE2",
    "RegexReplacePlugin",
    "RegexReplaceSettings",
    "backtracking_hazard",
    "compile_guarded",
]

HAVE_RE2: bool = re2 is not None
"""Whether google-re2 is installed and patterns run in linear time."""

# re's parser is internal; it is only used to inspect pattern structure, and
# the check fails closed (refuses) if its shape is ever unfamiliar.
_parser: Any = importlib.import_module("re._parser")


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


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # refusals are reported to the user, not to stderr
    return options


def compile_guarded(pattern: str, *, allow_backtracking: bool = False) -> Any:
    """Compile ``pattern`` with an engine that cannot hang on it.

    RE2 when installed; otherwise Python's ``re`` if
    :func:`backtracking_hazard` finds nothing, or if ``allow_backtracking``.
    The result has ``finditer``, ``sub``, ``subn``, ``groups`` and
    ``groupindex`` like a ``re.Pattern``.

    :raises ValueError: saying why the pattern is refused.
    """
    if re2 is not None:
        try:
            return re2.compile(pattern, options=_re2_options())
        except re2.error as exc:
            if not allow_backtracking:
                reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
                raise ValueError(
                    f"RE2 cannot compile {pattern!r} ({reason}); rewrite it, or set allow_backtracking: true"
                    " to run it on Python's backtracking engine"
                ) from None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    if not allow_backtracking:
        hazard = backtracking_hazard(pattern)
        if hazard is not None:
            raise ValueError(
                f"{pattern!r} could backtrack catastrophically ({hazard}); install google-re2,"
                " rewrite it, or set allow_backtracking: true"
            )
    return compiled


def backtracking_hazard(pattern: str) -> str | None:
    """Why ``pattern`` could make Python's engine backtrack catastrophically, or None.

    Conservative: it refuses some safe patterns so as never to pass an unsafe
    one of the kinds it knows (see the module docstring).
    """
    try:
        return _hazard(_parser.parse(pattern), repeated=False)
    except re.error as exc:
        return f"invalid: {exc}"
    except Exception:  # pragma: no cover - an unfamiliar parser: fail closed
        return "structure not understood"


def _hazard(items: Any, *, repeated: bool) -> str | None:
    for op, argument in items:
        name = str(op)
        if name in ("GROUPREF", "GROUPREF_EXISTS"):
            return "a backreference"
        if name in ("ASSERT", "ASSERT_NOT"):
            return "a lookaround"
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = argument
            if repeated and low != high:
                return "a repetition inside a repetition"
            unbounded = high is _parser.MAXREPEAT or high > 16
            found = _hazard(body, repeated=repeated or unbounded)
            if found:
                return found
        elif name == "SUBPATTERN":
            found = _hazard(argument[3], repeated=repeated)
            if found:
                return found
        elif name == "ATOMIC_GROUP":
            found = _hazard(argument, repeated=repeated)
            if found:
                return found
        elif name == "BRANCH":
            branches = argument[1]
            if repeated and not _disjoint_starts(branches):
                return "alternatives that may start alike inside a repetition"
            for branch in branches:
                found = _hazard(branch, repeated=repeated)
                if found:
                    return found
    return None


def _first_chars(items: Any) -> set[int] | None:
    """The code points ``items`` can start with, or None when not simply known."""
    if not items:
        return None
    op, argument = items[0]
    name = str(op)
    if name == "LITERAL":
        return {argument}
    if name == "IN":
        chars: set[int] = set()
        for item_op, item_argument in argument:
            item_name = str(item_op)
            if item_name == "LITERAL":
                chars.add(item_argument)
            elif item_name == "RANGE" and item_argument[1] - item_argument[0] < 4096:
                chars.update(range(item_argument[0], item_argument[1] + 1))
            else:
                return None
        return chars
    if name == "SUBPATTERN":
        return _first_chars(argument[3])
    return None


def _disjoint_starts(branches: Any) -> bool:
    seen: set[int] = set()
    for branch in branches:
        chars = _first_chars(branch)
        if chars is None or chars & seen:
            return False
        seen |= chars
    return True


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


def _replacer(pieces: list[str | int]) -> Any:
    if not pieces:
        return lambda match: ""
    if len(pieces) == 1 and isinstance(pieces[0], str):
        literal = pieces[0]
        return lambda match: literal

    def expand(match: Any) -> str:
        return "".join(piece if isinstance(piece, str) else (match.group(piece) or "") for piece in pieces)

    return expand


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
                replacer = _replacer(_template(rule.replace, compiled))
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
