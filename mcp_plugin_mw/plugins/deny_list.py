"""
Deny list
=========

:class:`DenyListPlugin` looks for listed words and phrases in the text of
requests and responses (see :mod:`~mcp_plugin_mw.plugins._base` for which
strings), and refuses the message or redacts them:

.. code-block:: yaml

    - name: banned
      kind: deny_list
      config:
        terms: ["project falcon", "internal only"]
        terms_file: /etc/mcp/deny.txt     # one term a line; '#' starts a comment
        whole_word: true                  # default
        action: block                     # block (default) | redact
        rule_name: confidential-projects

Matching is case-insensitive unless ``case_sensitive: true``. With
``whole_word`` a match counts only when the characters around it are not
word characters (letters, digits, ``_``, as ``\\w`` in ``re``), so ``ass``
does not match ``class``. Where terms overlap, the leftmost match wins, then
the longest (``new york city`` over ``new york``); matches do not overlap.

A block has code ``DENY_LIST`` and names the rule (``rule_name``, else the
plugin's name) and the ids of the terms matched: a term's id is its position
in ``terms`` followed by the file's terms, from 0. It never quotes the
message. ``action: redact`` writes ``replacement`` in place of each match.

Tens of thousands of terms are fine. With ahocorasick-rs installed
(``pip install ahocorasick-rs``) matching runs on its Aho-Corasick automaton,
in time linear in the text whatever the number of terms; without it, on one
regular expression built as a trie of the terms (each position costs one
character test per trie level, not one per term). Both give the same matches;
``engine`` picks one explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..models import PluginConfig, PluginViolation
from ._base import Findings, TextFilterPlugin, config_error, counted
from ._config import Settings, parse_config

try:
    import ahocorasick_rs  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - exercised where the extra is missing
    ahocorasick_rs = None  # type: ignore[assignment, unused-ignore]

__all__ = ["HAVE_AHOCORASICK", "DenyListPlugin", "DenyListSettings", "TermMatcher"]

HAVE_AHOCORASICK: bool = ahocorasick_rs is not None
"""Whether ahocorasick-rs is installed."""

MAX_TERM_LENGTH = 256
"""Longer terms are refused: they bound the depth of the fallback's trie."""

Match = tuple[int, int, int]
"""A match: ``(term id, start, end)``."""


class DenyListSettings(Settings):
    """``config:`` of :class:`DenyListPlugin`."""

    terms: list[str] = Field(default_factory=list)
    terms_file: str | None = None
    whole_word: bool = True
    case_sensitive: bool = False
    action: Literal["block", "redact"] = "block"
    replacement: str = "[REDACTED]"
    rule_name: str | None = None
    engine: Literal["auto", "ahocorasick", "regex"] = "auto"

    @field_validator("terms")
    @classmethod
    def _usable_terms(cls, terms: list[str]) -> list[str]:
        for index, term in enumerate(terms):
            _check_term(term, f"item {index}")
        return terms


def _check_term(term: str, where: str) -> None:
    if not term.strip():
        raise ValueError(f"{where} is empty")
    if len(term) > MAX_TERM_LENGTH:
        raise ValueError(f"{where} is longer than {MAX_TERM_LENGTH} characters")


def read_terms_file(path: str) -> list[str]:
    """The terms in a file: one a line, stripped; blank lines and ``#`` comments skipped."""
    terms: list[str] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        term = line.strip()
        if term and not term.startswith("#"):
            _check_term(term, f"line {number}")
            terms.append(term)
    return terms


def fold(text: str) -> str:
    """Lower-case ``text`` without changing its length, so offsets carry over.

    A character whose lower case is longer (``İ``) is left as it is.
    """
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(char.lower() if len(char.lower()) == 1 else char for char in text)


def _is_word(char: str) -> bool:
    # The same test as re's \w on str patterns.
    return char.isalnum() or char == "_"


def _leftmost_longest(matches: list[Match]) -> list[Match]:
    matches.sort(key=lambda match: (match[1], match[1] - match[2]))
    kept: list[Match] = []
    end = -1
    for match in matches:
        if match[1] >= end:
            kept.append(match)
            end = match[2]
    return kept


class TermMatcher:
    """Finds terms in text: leftmost, then longest, non-overlapping matches.

    :param terms: the terms; a term's id is its index (the first of equal
        terms, after case folding, wins).
    :param whole_word: only matches not touching a word character count.
    :param case_sensitive: compare as written instead of case-folded.
    :param engine: ``"ahocorasick"``, ``"regex"``, or ``"auto"`` for the
        first when installed.
    """

    def __init__(
        self, terms: list[str], *, whole_word: bool = True, case_sensitive: bool = False, engine: str = "auto"
    ) -> None:
        if engine == "auto":
            engine = "ahocorasick" if HAVE_AHOCORASICK else "regex"
        if engine == "ahocorasick" and not HAVE_AHOCORASICK:
            raise ValueError("engine 'ahocorasick' needs the ahocorasick-rs package")
        self.engine = engine
        self.whole_word = whole_word
        self._fold = (lambda text: text) if case_sensitive else fold
        self._ids: dict[str, int] = {}
        for index, term in enumerate(terms):
            self._ids.setdefault(self._fold(term), index)
        self._unique = list(self._ids)
        self._unique_ids = list(self._ids.values())
        # Automata by haystack kind ("bytes" for ASCII text, "str") and
        # matching mode, built on first use.
        self._automata: dict[tuple[str, bool], Any] = {}
        if engine == "ahocorasick":
            self._automaton("bytes", overlapping=False)
        else:
            self._regex = re.compile(_trie_pattern(self._unique, whole_word)) if self._unique else None

    def find(self, text: str) -> list[Match]:
        """The matches in ``text``, in order."""
        if not self._unique:
            return []
        folded = self._fold(text)
        if self.engine == "ahocorasick":
            return self._find_automaton(folded)
        assert self._regex is not None
        ids = self._ids
        return [(ids[match.group()], match.start(), match.end()) for match in self._regex.finditer(folded)]

    def _automaton(self, kind: str, *, overlapping: bool) -> Any:
        automaton = self._automata.get((kind, overlapping))
        if automaton is None:
            # A DFA is the fastest to run; past some ten thousand terms its
            # memory grows into the tens of megabytes, the compact NFA does not.
            implementation = ahocorasick_rs.Implementation
            options: dict[str, Any] = {
                "implementation": implementation.DFA if len(self._unique) <= 10_000 else implementation.ContiguousNFA
            }
            if not overlapping:
                options["matchkind"] = ahocorasick_rs.MatchKind.LeftmostLongest
            if kind == "bytes":
                automaton = ahocorasick_rs.BytesAhoCorasick([term.encode() for term in self._unique], **options)
            else:
                automaton = ahocorasick_rs.AhoCorasick(self._unique, **options)
            self._automata[kind, overlapping] = automaton
        return automaton

    def _find_automaton(self, folded: str) -> list[Match]:
        # ASCII text is searched as bytes, where offsets need no translation
        # from UTF-8: markedly faster than the str automaton.
        haystack: str | bytes
        if folded.isascii():
            kind, haystack = "bytes", folded.encode("ascii")
        else:
            kind, haystack = "str", folded
        ids = self._unique_ids
        found = self._automaton(kind, overlapping=False).find_matches_as_indexes(haystack)
        if not found:
            return []
        if not self.whole_word or all(self._bounded(folded, start, end) for _, start, end in found):
            # Leftmost-longest over all matches equals leftmost-longest over
            # the whole-word ones when every pick is whole-word.
            return [(ids[index], start, end) for index, start, end in found]
        # Some leftmost-longest pick touches a word: a shorter or later term
        # may be whole-word there, so look at every occurrence.
        every = self._automaton(kind, overlapping=True).find_matches_as_indexes(haystack, overlapping=True)
        bounded = [(ids[index], start, end) for index, start, end in every if self._bounded(folded, start, end)]
        return _leftmost_longest(bounded)

    @staticmethod
    def _bounded(text: str, start: int, end: int) -> bool:
        return (start == 0 or not _is_word(text[start - 1])) and (end == len(text) or not _is_word(text[end]))


def _trie_pattern(terms: list[str], whole_word: bool) -> str:
    """One regex matching ``terms``, longest first at each position, as a trie.

    Children come before "the term ends here" (a greedy ``?``), so the first
    match found at a position is the longest term there; with ``whole_word``
    the lookahead makes it backtrack to the longest term that ends a word.
    Top-level branches each start with a literal, which lets re skip ahead to
    the next possible first character; the lookbehind comes after it.
    """
    trie: dict[str, Any] = {}
    for term in terms:
        node = trie
        for char in term:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in node.items() if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        if "" in node:
            return f"(?:{body})?" if len(branches) == 1 else f"{body}?"
        return body

    start = r"(?<!\w.)" if whole_word else ""
    end = r"(?!\w)" if whole_word else ""
    tops = [re.escape(char) + start + build(child) for char, child in trie.items()]
    return f"(?:{'|'.join(tops)}){end}"


class DenyListPlugin(TextFilterPlugin):
    """Blocks or redacts listed terms; see the module docstring."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(DenyListSettings, self.config)
        self.blocks = settings.action == "block"
        self.rule = settings.rule_name or self.name
        terms = list(settings.terms)
        if settings.terms_file is not None:
            try:
                terms.extend(read_terms_file(settings.terms_file))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise config_error([("terms_file", f"cannot use {settings.terms_file!r}: {exc}")]) from None
        if not terms:
            raise config_error([("terms", "no terms: give terms, or a terms_file that lists some")])
        try:
            self.matcher = TermMatcher(
                terms,
                whole_word=settings.whole_word,
                case_sensitive=settings.case_sensitive,
                engine=settings.engine,
            )
        except ValueError as exc:
            raise config_error([("engine", str(exc))]) from None

    def filter_text(self, text: str, found: Findings) -> str:
        """Redact the listed terms in ``text`` (or only count them, when blocking)."""
        matches = self.matcher.find(text)
        if not matches:
            return text
        for term_id, _, _ in matches:
            counted(found, str(term_id))
        if self.blocks:
            return text
        replacement = self.settings.replacement
        pieces: list[str] = []
        position = 0
        for _, start, end in matches:
            pieces.append(text[position:start])
            pieces.append(replacement)
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def violation(self, found: Findings) -> PluginViolation:
        """``DENY_LIST``, naming the rule and the term ids, never the text."""
        term_ids = sorted(int(term_id) for term_id in found)
        return PluginViolation(
            reason="Denied content",
            description=f"message matches deny list {self.rule!r}",
            code="DENY_LIST",
            details={"rule": self.rule, "term_ids": term_ids},
        )
