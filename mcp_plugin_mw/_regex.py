"""
User-supplied regular expressions
=================================

Every regular expression that comes from configuration and is matched
against text a client (or a server) controls is compiled here, so that all
of them follow one rule (DESIGN §9): **client-controlled text never meets a
backtracking regex.**

* :func:`compile_user_pattern` compiles a pattern on RE2 (google-re2), whose
  matching time is linear in the text. A pattern RE2 cannot compile
  (backreferences, lookarounds) is refused with a message naming where it is
  configured, unless the configuration sets ``allow_backtracking: true``:
  then, and only for such patterns, Python's :mod:`re` runs it.
* :func:`compile_globs` turns shell-style globs into one RE2 pattern.
* :func:`parse_template` reads a :func:`re.sub` replacement template (``\\1``,
  ``\\g<name>``, ``\\n``...) the way :mod:`re` does, so that replacements
  behave alike on both engines and a bad group reference fails at load.

RE2 syntax is Python's for most patterns. The differences that matter:
``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only (use ``\\pL``, ``\\pN``
for Unicode classes); ``\\Z`` is accepted and means end of text (RE2's
``\\z``); ``(?i)`` folds case over Unicode. Lone surrogates, which Python's
:mod:`json` lets through, are matched as U+FFFD but never changed in the text.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, overload

import re2  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "NOTHING",
    "PatternError",
    "UserMatch",
    "UserPattern",
    "compile_globs",
    "compile_user_pattern",
    "compile_vetted_pattern",
    "compile_vetted_patterns",
    "expander",
    "glob_to_regex",
    "parse_template",
    "template_function",
]

Replacement = str | Callable[["UserMatch"], str]

_FLAG_PREFIXES = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))
_SUPPORTED_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.UNICODE
_SURROGATES = re.compile("[\ud800-\udfff]")  # a constant class: no backtracking
_NOTHING = r"[^\x00-\x{10FFFF}]"
"""An RE2 pattern that matches nothing (fnmatch writes ``(?!)``, which RE2 lacks)."""


class PatternError(ValueError):
    """A configured pattern that cannot be used.

    :param where: where it is configured (``plugin_settings.excluded_urls[0]``);
        may be empty when the caller adds the place itself.
    :param reason: what is wrong, without the place.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)


# --------------------------------------------------------------------------
# Compiled patterns and their matches
# --------------------------------------------------------------------------


class UserMatch:
    """A match, with the parts of :class:`re.Match` the plugins use.

    Offsets are in characters of the text given, and groups are slices of it.
    """

    __slots__ = ("_spans", "re", "string")

    def __init__(self, pattern: UserPattern, string: str, spans: list[tuple[int, int]]) -> None:
        self.re = pattern
        self.string = string
        self._spans = spans

    def _index(self, group: int | str) -> int:
        if isinstance(group, str):
            try:
                return self.re.groupindex[group]
            except KeyError:
                raise IndexError(f"no such group {group!r}") from None
        if not 0 <= group < len(self._spans):
            raise IndexError(f"no such group {group}")
        return group

    @overload
    def group(self) -> str: ...
    @overload
    def group(self, group: int | str) -> str | None: ...
    def group(self, group: int | str = 0) -> str | None:
        """The text of ``group`` (0: the whole match); None when it did not take part."""
        start, end = self._spans[self._index(group)]
        return None if start < 0 else self.string[start:end]

    def __getitem__(self, group: int | str) -> str | None:
        return self.group(group)

    def groups(self, default: str | None = None) -> tuple[str | None, ...]:
        """Every group's text, ``default`` for those that did not take part."""
        return tuple(default if start < 0 else self.string[start:end] for start, end in self._spans[1:])

    def groupdict(self, default: str | None = None) -> dict[str, str | None]:
        """Named groups' texts."""
        found = {name: self.group(index) for name, index in self.re.groupindex.items()}
        return {name: default if text is None else text for name, text in found.items()}

    def span(self, group: int | str = 0) -> tuple[int, int]:
        """``(start, end)`` of ``group``; ``(-1, -1)`` when it did not take part."""
        return self._spans[self._index(group)]

    def start(self, group: int | str = 0) -> int:
        """Where ``group`` starts."""
        return self.span(group)[0]

    def end(self, group: int | str = 0) -> int:
        """Where ``group`` ends."""
        return self.span(group)[1]

    def expand(self, template: str) -> str:
        """``template`` with its group references filled in, as :meth:`re.Match.expand`."""
        return expander(tuple(parse_template(template, self.re)))(self)

    def __repr__(self) -> str:
        return f"<UserMatch span={self.span()} match={self.group()!r}>"


class UserPattern:
    """A compiled user pattern with the :class:`re.Pattern` methods the plugins use.

    ``engine`` is ``"re2"``, or ``"re"`` for a pattern RE2 cannot compile that
    the configuration allowed to backtrack.
    """

    __slots__ = ("_compiled", "engine", "groupindex", "groups", "pattern")

    def __init__(self, pattern: str, compiled: Any, engine: str) -> None:
        self.pattern = pattern
        self.engine = engine
        self._compiled = compiled
        self.groups: int = compiled.groups
        self.groupindex: Mapping[str, int] = dict(compiled.groupindex)

    def _wrap(self, text: str, found: Any) -> UserMatch:
        return UserMatch(self, text, [found.span(index) for index in range(self.groups + 1)])

    def _subject(self, text: str) -> str:
        # RE2 takes UTF-8, which a lone surrogate cannot be encoded in. One
        # character for one keeps every offset valid in the original text.
        if self.engine == "re2" and not text.isascii():
            return _SURROGATES.sub("\ufffd", text)
        return text

    def search(self, text: str) -> UserMatch | None:
        """The first match anywhere in ``text``."""
        found = self._compiled.search(self._subject(text))
        return None if found is None else self._wrap(text, found)

    def match(self, text: str) -> UserMatch | None:
        """A match at the start of ``text``."""
        found = self._compiled.match(self._subject(text))
        return None if found is None else self._wrap(text, found)

    def fullmatch(self, text: str) -> UserMatch | None:
        """A match of the whole of ``text``."""
        found = self._compiled.fullmatch(self._subject(text))
        return None if found is None else self._wrap(text, found)

    def finditer(self, text: str) -> Iterator[UserMatch]:
        """Every non-overlapping match, left to right."""
        for found in self._compiled.finditer(self._subject(text)):
            yield self._wrap(text, found)

    def subn(self, repl: Replacement, text: str, count: int = 0) -> tuple[str, int]:
        """``text`` with matches replaced, and how many were; as :meth:`re.Pattern.subn`.

        A string ``repl`` is a template read by :func:`parse_template`.
        """
        function = expander(tuple(parse_template(repl, self))) if isinstance(repl, str) else repl
        pieces: list[str] = []
        position = done = 0
        for found in self.finditer(text):
            start, end = found.span()
            pieces.append(text[position:start])
            pieces.append(function(found))
            position = end
            done += 1
            if done == count:
                break
        if not done:
            return text, 0
        pieces.append(text[position:])
        return "".join(pieces), done

    def sub(self, repl: Replacement, text: str, count: int = 0) -> str:
        """``text`` with matches replaced; as :meth:`re.Pattern.sub`."""
        return self.subn(repl, text, count)[0]

    def __repr__(self) -> str:
        return f"<UserPattern {self.engine} {self.pattern!r}>"


# --------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # refusals are reported to the user, not to stderr
    return options


def _re2_syntax(pattern: str) -> str:
    """``pattern`` with Python's ``\\Z`` (end of text) written as RE2's ``\\z``."""
    if "\\Z" not in pattern:
        return pattern
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            following = pattern[index + 1]
            out.append("\\z" if following == "Z" else char + following)
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _re2_error(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else exc
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


def compile_user_pattern(
    pattern: str,
    *,
    where: str,
    allow_backtracking: bool = False,
    flags: int = 0,
    setting: str = "allow_backtracking",
) -> UserPattern:
    """Compile a configured ``pattern`` on RE2.

    :param where: where the pattern is configured, for the error message.
    :param allow_backtracking: run a pattern RE2 cannot compile on Python's
        :mod:`re` instead of refusing it. RE2 still runs every pattern it can.
    :param flags: :data:`re.IGNORECASE`, :data:`re.MULTILINE` and
        :data:`re.DOTALL` (as inline ``(?ims)`` on RE2).
    :param setting: the key that allows backtracking, named in the refusal.
    :raises PatternError: RE2 cannot compile it (and backtracking is not
        allowed), or neither engine can.
    """
    if not isinstance(pattern, str):
        raise PatternError(where, f"expected a regular expression as a string, got {type(pattern).__name__}")
    if flags & ~_SUPPORTED_FLAGS:
        raise ValueError(f"flags {flags!r}: only IGNORECASE, MULTILINE and DOTALL are supported")
    inline = "".join(letter for flag, letter in _FLAG_PREFIXES if flags & flag)
    try:
        compiled = re2.compile(f"(?{inline}){_re2_syntax(pattern)}" if inline else _re2_syntax(pattern), _re2_options())
    except re2.error as exc:
        reason = _re2_error(exc)
    else:
        return UserPattern(pattern, compiled, "re2")
    try:
        fallback = re.compile(pattern, flags)
    except re.error as exc:
        raise PatternError(where, f"invalid regular expression {pattern!r}: {exc}") from None
    if not allow_backtracking:
        raise PatternError(
            where,
            f"RE2 cannot compile {pattern!r} ({reason}); set {setting}: true to use Python's re"
            " (unsafe on client input)",
        )
    return UserPattern(pattern, fallback, "re")


def compile_vetted_pattern(pattern: str, *, where: str) -> UserPattern:
    """Compile a pattern that :func:`~mcp_plugin_mw.config.load_config` has already checked.

    For ``excluded_urls`` and conditions' ``user_patterns``: the loader
    refuses those RE2 cannot compile unless ``plugin_settings.allow_backtracking``
    is true, so one that reaches this point on Python's engine was allowed to.
    Every configuration the middleware runs goes through the loader.
    """
    return compile_user_pattern(pattern, where=where, allow_backtracking=True)


def compile_vetted_patterns(patterns: Iterable[str] | None, *, where: str) -> list[UserPattern] | None:
    """:func:`compile_vetted_pattern` for each of ``patterns``; None for None."""
    if patterns is None:
        return None
    return [compile_vetted_pattern(pattern, where=f"{where}[{index}]") for index, pattern in enumerate(patterns)]


NOTHING = UserPattern(_NOTHING, re2.compile(_NOTHING, _re2_options()), "re2")
"""A pattern that matches nothing: what an empty allow list of globs compiles to."""


# --------------------------------------------------------------------------
# Globs
# --------------------------------------------------------------------------


def _glob_class(token: str) -> str:
    """One ``[...]`` glob token as an RE2 class, read as :func:`fnmatch.translate` reads it."""
    body = fnmatch.translate(token)[len("(?s:") : -len(r")\Z")]
    if body == "(?!)":
        return _NOTHING
    if not body.startswith("["):
        return body  # "[!]" is "any character": "."
    # Python reads "[" inside a class literally; RE2 would take "[:alpha:]" as
    # a POSIX class, so escape every unescaped "[" after the opening one.
    out = ["["]
    index = 1
    while index < len(body):
        char = body[index]
        if char == "\\":
            out.append(body[index : index + 2])
            index += 2
            continue
        out.append("\\[" if char == "[" else char)
        index += 1
    return "".join(out)


def glob_to_regex(glob: str) -> str:
    """RE2 syntax for the shell-style ``glob``, without anchors.

    Matches what :func:`fnmatch.fnmatchcase` matches: ``*`` any run of
    characters (``/`` and newlines too), ``?`` one, ``[...]`` and ``[!...]``
    a class.
    """
    out: list[str] = []
    index, length = 0, len(glob)
    while index < length:
        char = glob[index]
        index += 1
        if char == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = index
            if end < length and glob[end] == "!":
                end += 1
            if end < length and glob[end] == "]":
                end += 1
            while end < length and glob[end] != "]":
                end += 1
            if end >= length:
                out.append("\\[")
            else:
                out.append(_glob_class(glob[index - 1 : end + 1]))
                index = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


def compile_globs(patterns: Iterable[str]) -> UserPattern | None:
    """One RE2 pattern matching a whole string that any of the globs matches; None for none.

    ``match``, ``search`` and ``fullmatch`` all test the whole string.
    """
    globs = list(patterns)
    parts = [f"(?:{glob_to_regex(pattern)})" for pattern in globs]
    if not parts:
        return None
    source = f"(?s)\\A(?:{'|'.join(parts)})\\z"
    try:
        return UserPattern(source, re2.compile(source, _re2_options()), "re2")
    except re2.error as exc:  # pragma: no cover - every glob translates
        raise PatternError("", f"cannot compile globs {globs!r}: {_re2_error(exc)}") from None


# --------------------------------------------------------------------------
# Replacement templates
# --------------------------------------------------------------------------

_TEMPLATE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_OCTAL = "01234567"
_DIGITS = "0123456789"


def parse_template(template: str, pattern: UserPattern) -> list[str | int]:
    """``template`` as literal pieces and group numbers, read as :func:`re.sub` reads it.

    ``\\1`` to ``\\99``, ``\\g<number>`` and ``\\g<name>`` refer to groups;
    ``\\0`` and three-digit ``\\NNN`` are octal escapes; ``\\n``, ``\\t``, ``\\\\``
    and the other escapes of :mod:`re` stand for their characters; a backslash
    before another ASCII letter is an error, before anything else it stays.

    :raises ValueError: a bad escape or a reference to a group ``pattern`` lacks.
    """
    return list(_parse_template(template, pattern.groups, tuple(sorted(pattern.groupindex.items()))))


@functools.lru_cache(maxsize=256)
def _parse_template(template: str, groups: int, names: tuple[tuple[str, int], ...]) -> tuple[str | int, ...]:
    groupindex = dict(names)
    pieces: list[str | int] = []
    literal: list[str] = []

    def group(number: int) -> None:
        if number > groups:
            raise ValueError(f"invalid group reference {number} (the pattern has {groups})")
        if literal:
            pieces.append("".join(literal))
            literal.clear()
        pieces.append(number)

    index, length = 0, len(template)
    while index < length:
        char = template[index]
        index += 1
        if char != "\\":
            literal.append(char)
            continue
        if index >= length:
            raise ValueError("bad escape (end of template)")
        escaped = template[index]
        index += 1
        if escaped == "g":
            close = template.find(">", index)
            if index >= length or template[index] != "<" or close < 0:
                raise ValueError("bad group reference: expected \\g<name>")
            name = template[index + 1 : close]
            index = close + 1
            if name.isidentifier():
                if name not in groupindex:
                    raise ValueError(f"unknown group name {name!r}")
                group(groupindex[name])
            elif name.isdecimal():
                group(int(name))
            else:
                raise ValueError(f"bad character in group name {name!r}")
        elif escaped == "0":
            digits = escaped
            while len(digits) < 3 and index < length and template[index] in _OCTAL:
                digits += template[index]
                index += 1
            literal.append(chr(int(digits, 8) & 0xFF))
        elif escaped in _DIGITS:
            digits = escaped
            if index < length and template[index] in _DIGITS:
                digits += template[index]
                index += 1
                if digits[0] in _OCTAL and digits[1] in _OCTAL and index < length and template[index] in _OCTAL:
                    digits += template[index]
                    index += 1
                    value = int(digits, 8)
                    if value > 0o377:
                        raise ValueError(f"octal escape value \\{digits} outside of range 0-0o377")
                    literal.append(chr(value))
                    continue
            group(int(digits))
        elif escaped in _TEMPLATE_ESCAPES:
            literal.append(_TEMPLATE_ESCAPES[escaped])
        elif escaped.isascii() and escaped.isalpha():
            raise ValueError(f"bad escape \\{escaped}")
        else:
            literal.append("\\" + escaped)
    if literal:
        pieces.append("".join(literal))
    return tuple(pieces)


def expander(pieces: tuple[str | int, ...]) -> Callable[[UserMatch], str]:
    """A replacement function joining literal ``pieces`` and the groups they number."""
    if not pieces:
        return lambda found: ""
    if len(pieces) == 1 and isinstance(pieces[0], str):
        text = pieces[0]
        return lambda found: text

    def expand(found: UserMatch) -> str:
        return "".join(piece if isinstance(piece, str) else (found.group(piece) or "") for piece in pieces)

    return expand


def template_function(template: str, pattern: UserPattern) -> Callable[[UserMatch], str]:
    """A replacement function for ``template``, checked against ``pattern`` now.

    :raises ValueError: as :func:`parse_template`.
    """
    return expander(tuple(parse_template(template, pattern)))
