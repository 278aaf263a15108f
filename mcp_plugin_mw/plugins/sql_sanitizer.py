"""
SQL sanitizer
=============

:class:`SQLSanitizerPlugin` parses the SQL a client sends in tool and prompt
arguments, statement by statement, with sqlglot, and refuses dangerous
statements before the server runs them. Needs ``sqlglot``
(``pip install 'mcp-plugin-mw[sql]'``).

.. code-block:: yaml

    - name: sql
      kind: sql_sanitizer
      config:
        fields: ["sql", "query", "statement"]   # default: argument names holding SQL
        dialect: postgres                       # default: none, read as several dialects
        deny: [drop, truncate, alter, grant, revoke]   # default
        allow: [select, insert]                 # default: none (every type not denied)
        block_delete_without_where: true        # default
        block_update_without_where: true        # default
        allow_stacked: false                    # default
        on_parse_error: block                   # default

Settings:

* ``fields`` (``[sql, query, statement]``): shell-style globs matched,
  ignoring case, against argument names at any depth (``params.query``
  counts; ``*_sql`` matches ``raw_sql``). The string under a matching name, or
  each string of a list under it, is SQL.
* ``dialect`` (none): a sqlglot dialect (``postgres``, ``mysql``,
  ``sqlite``, ``tsql``, ``bigquery``, ...). Databases disagree on what ends a
  string or a comment (``'a\\'; DROP TABLE t; -- '`` is one string to MySQL,
  a string, a ``DROP`` and a comment to PostgreSQL; ``/* /* */ ... */``
  nests in PostgreSQL only). With no dialect the SQL is read as standard
  SQL, MySQL and PostgreSQL, and refused when any reading is (SQL with none
  of the characters they read differently, ``\\ # $ " ` [ /* --``, is read
  once, as standard SQL); with one, only as that dialect. Install
  ``sqlglotc`` (``pip install 'sqlglot[c]'``) for a parser about twice as
  fast (most SQL needs no parser, see below).
* ``deny`` (``[drop, truncate, alter, grant, revoke]``) and ``allow`` (none):
  statement types refused, and, when ``allow`` is given, the only types
  accepted. Types: ``select`` (``UNION`` and the like too), ``insert``,
  ``update``, ``delete``, ``merge``, ``create``, ``drop``, ``alter``,
  ``truncate``, ``grant``, ``revoke``, ``set``, ``use``, ``copy``,
  ``pragma``, ``describe``, ``show``, and statements sqlglot keeps whole by
  their first keyword (``call``, ``explain``, ``vacuum``, ``exec``, ...).
* ``block_delete_without_where`` / ``block_update_without_where``
  (``true``): a ``DELETE`` or ``UPDATE`` without ``WHERE``, or whose
  ``WHERE`` reads no column (``WHERE 1=1``), is refused.
* ``allow_stacked`` (``false``): more than one statement in one string is
  refused.
* ``on_parse_error`` (``block``): SQL no reading can parse as statements
  of known types is refused (``allow`` lets it through); a query the plain
  reading (below) decides is not parsed.

What counts as a statement: comments (``--``, ``/* */``, MySQL's ``#``) and
string and quoted-identifier literals are read as the dialect reads them, so
a ``DROP`` inside them is no statement. Data-modifying statements nested in
another (``WITH d AS (DELETE FROM t RETURNING *) SELECT ...``) count as
statements of their own type; a statement sqlglot keeps whole (``EXPLAIN
ANALYZE DELETE FROM t``) is also read from its first statement keyword on.
MySQL's executable comments (``/*! ... */``, MariaDB's ``/*M! ... */``) are
refused in every dialect: MySQL runs what they hold.

Most SQL is decided without the parser, by a plain reading. SQL with none
of ``\\ # $ " ` [`` in it, only ``'...'`` strings, and outside them only
ASCII letters, digits, spaces and ``, . ( ) * = < > ! + - / % ; : | & ^ ~ ?``
with no ``--`` or ``/*``, is read alike by standard SQL, MySQL, PostgreSQL,
SQLite and DuckDB (the only readings the plain one stands for; other
dialects are always parsed): its statements end at its semicolons, and its
words outside strings are all there is to it. When it is one statement (a
final ``;`` allowed) whose first word is ``SELECT`` or ``WITH`` (a query) or
``INSERT``, with no word that starts a statement in one of its readings
(``INSERT``, ``UPDATE``, ``DELETE``, ``DROP``, ``SET``, ``SHOW``,
``EXPLAIN``, ``REPLACE``, ...; also those of a T-SQL batch, where no ``;``
is needed: ``EXEC``, ``WAITFOR``, ...) anywhere after the first, except
``DESC`` and ``END``, and not even those right after a parenthesis, where a
nested statement would start, it holds no other statement, and it passes
when ``deny`` and ``allow`` accept its type. The plain reading does not
check the rest of the grammar: such a query that sqlglot cannot parse (the
database refuses it too) passes instead of being refused as a
``parse_error``. Everything else is parsed as above, in every reading.

A refusal is a violation with code ``SQL_BLOCKED`` naming the rule
(``deny``, ``not_allowed``, ``delete_without_where``,
``update_without_where``, ``stacked``, ``parse_error``,
``executable_comment``), the statement type and the argument's path
(``details: {rule, statement, field}``); it never quotes the SQL.

.. warning::

    Parsing is not the database: a statement sqlglot reads differently from
    the server's database, a stored procedure that does what its name hides,
    or SQL that the server assembles from several arguments are not seen.
    Give the database account only the rights the tool needs; this plugin is
    a second line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import field_validator

from .._regex import UserPattern, compile_globs
from ..models import (
    Category,
    HookType,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPrehookPayload,
    ToolPreInvokePayload,
)
from ..plugin import Plugin
from ._config import Settings, parse_config

try:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    # What sqlglot's parser and tokenizer raise: on some input not their own
    # errors (a TypeError); a reading that raises any of these failed.
    _PARSE_FAILURES: tuple[type[Exception], ...] = (
        SqlglotError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        RecursionError,
    )
except ImportError:  # pragma: no cover - exercised where the extra is missing
    sqlglot = None  # type: ignore[assignment]
    _PARSE_FAILURES = ()

__all__ = ["HAVE_SQLGLOT", "SQLSanitizerPlugin", "SQLSanitizerSettings", "statement_types"]

HAVE_SQLGLOT: bool = sqlglot is not None
"""Whether sqlglot is installed."""

INSTALL_HINT = "sql_sanitizer needs the sqlglot package: pip install 'mcp-plugin-mw[sql]'"

DEFAULT_READINGS = ("", "mysql", "postgres")
"""The dialects SQL is read as when ``dialect`` is not set ("" is sqlglot's standard SQL)."""

STATEMENT_TYPES = frozenset(
    {
        "select",
        "insert",
        "update",
        "delete",
        "merge",
        "create",
        "drop",
        "alter",
        "truncate",
        "grant",
        "revoke",
        "set",
        "use",
        "copy",
        "pragma",
        "describe",
        "show",
        "explain",
        "call",
        "exec",
        "execute",
        "vacuum",
        "analyze",
        "begin",
        "commit",
        "rollback",
        "transaction",
        "cache",
        "uncache",
        "comment",
        "refresh",
        "kill",
        "load",
        "lock",
        "unlock",
        "replace",
        "prepare",
        "deallocate",
        "declare",
        "do",
        "listen",
        "notify",
        "reindex",
        "cluster",
        "checkpoint",
        "attach",
        "detach",
        "install",
        "export",
        "import",
        "summarize",
    }
)
"""The statement types ``allow`` and ``deny`` may name."""

# sqlglot expression keys to statement types, where they differ.
_TYPE_OF_KEY = {
    "union": "select",
    "intersect": "select",
    "except": "select",
    "truncatetable": "truncate",
    "altertable": "alter",
    "transaction": "begin",
}

# Nodes that are statements of their own when nested in another statement.
_NESTED_KEYS = frozenset(
    {"insert", "update", "delete", "merge", "create", "drop", "alter", "altertable", "truncatetable", "grant"}
    | {"revoke", "copy", "command"}
)

# Statements whose parts (ALTER ... DROP COLUMN, MERGE ... THEN DELETE) are
# actions of that statement, not statements.
_ATOMIC_KEYS = frozenset({"alter", "altertable", "merge"})

_STATEMENT_KEYWORD = re.compile(
    r"\b(select|insert|update|delete|merge|create|drop|alter|truncate|grant|revoke|copy|with)\b", re.IGNORECASE
)
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!")
# What dialects tokenize differently: backslashes in strings, "#" and "--"
# comments, nested "/*", dollar quoting, and the quotes of identifiers.
_DIALECT_SENSITIVE = ("\\", "#", "$", '"', "`", "[", "/*", "--")


def _dialect_sensitive(text: str) -> bool:
    # str.__contains__ per mark: a regex alternation scans ten times slower.
    return any(mark in text for mark in _DIALECT_SENSITIVE)


# The plain reading (see the module docstring). Characters it refuses
# anywhere (inside strings too: MySQL ends strings at backslashes, sqlglot's
# MySQL reading at '"'); bytes it allows outside string literals, where "--"
# and "/*" are looked for apart.
_NOT_PLAIN_CHARS = ("\\", "#", "$", '"', "`", "[")
_PLAIN_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \t\r\n,.()*=<>!+-/%;:|&^~?"
# Bytes to words: letters lowered, digits and "_" kept, the rest a space.
_WORD_TABLE = bytes(
    (byte | 0x20) if chr(byte).isascii() and chr(byte).isalpha() else byte if chr(byte) in "0123456789_" else 0x20
    for byte in range(256)
)
# The word at the start of what follows a parenthesis: where a nested
# statement (a CTE's body, the statement after a WITH clause, a subquery)
# would start.
_LEADING_WORD = re.compile(rb"[ \t\r\n]*([A-Za-z_][A-Za-z0-9_]*)")
# Statement types the plain reading decides, by first word.
_PLAIN_KINDS = {b"select": "select", b"with": "select", b"insert": "insert"}
# The dialects the plain reading may stand for: they need a ";" between
# statements (a T-SQL batch does not) and pass _plain_dialect.
_PLAIN_DIALECTS = frozenset({"", "mysql", "postgres", "sqlite", "duckdb"})
# Statement words a query holds in its own grammar (ORDER BY x DESC, CASE ...
# END): plain anywhere but right after a parenthesis.
_QUERY_WORDS = frozenset({b"desc", b"end"})
# Words that start a statement in a T-SQL batch, where no ";" separates
# statements: not plain, for a SQL Server read with the default readings.
_BATCH_WORDS = frozenset(
    {b"waitfor", b"dbcc", b"backup", b"restore", b"shutdown", b"reconfigure", b"deny", b"raiserror", b"throw"}
    | {b"goto", b"bulk", b"revert", b"setuser", b"print", b"while", b"if", b"return", b"open", b"close", b"go"}
    | {b"save", b"break", b"continue", b"exec", b"execute"}
)


class SQLSanitizerSettings(Settings):
    """``config:`` of :class:`SQLSanitizerPlugin`."""

    fields: tuple[str, ...] = ("sql", "query", "statement")
    dialect: str | None = None
    deny: tuple[str, ...] = ("drop", "truncate", "alter", "grant", "revoke")
    allow: tuple[str, ...] | None = None
    block_delete_without_where: bool = True
    block_update_without_where: bool = True
    allow_stacked: bool = False
    on_parse_error: Literal["block", "allow"] = "block"

    @field_validator("deny", "allow")
    @classmethod
    def _types(cls, types: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if types is None:
            return None
        lowered = tuple(kind.lower() for kind in types)
        unknown = [kind for kind in lowered if kind not in STATEMENT_TYPES]
        if unknown:
            raise ValueError(f"unknown statement type {unknown[0]!r}; types are: {', '.join(sorted(STATEMENT_TYPES))}")
        return lowered

    @field_validator("fields")
    @classmethod
    def _fields(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        if not fields or any(not field.strip() for field in fields):
            raise ValueError("give at least one non-empty argument name or glob")
        return tuple(field.lower() for field in fields)

    @field_validator("dialect")
    @classmethod
    def _dialect(cls, dialect: str | None) -> str | None:
        if dialect is None or sqlglot is None:
            return dialect
        try:
            sqlglot.Dialect.get_or_raise(dialect)
        except (ValueError, SqlglotError) as exc:
            raise ValueError(f"unknown sqlglot dialect {dialect!r}: {exc}") from None
        return dialect


class Refusal(NamedTuple):
    """Why SQL is refused: the rule and the statement type (if one)."""

    rule: str
    statement: str | None


def _type_of(node: Any) -> str:
    key = str(node.key)
    if key == "command":
        return str(node.this).split()[0].lower() if node.this else "command"
    return _TYPE_OF_KEY.get(key, key)


def _nested(node: Any) -> Iterator[Any]:
    """The statements nested in ``node`` (not below atomic ones)."""
    for child in node.iter_expressions():
        if child.key in _NESTED_KEYS:
            yield child
        if child.key not in _ATOMIC_KEYS:
            yield from _nested(child)


def _reads_a_column(where: Any) -> bool:
    return where is not None and next(where.find_all(exp.Column), None) is not None


def _statements_of(sql: str, dialect: str) -> list[Any]:
    # Empty statements come back as None, a comment after the last ";" as a
    # Semicolon node: neither is a statement.
    return [s for s in sqlglot.parse(sql, read=dialect or None) if s is not None and s.key != "semicolon"]


def statement_types(sql: str, dialect: str = "") -> list[str]:
    """The type of each top-level statement of ``sql`` in ``dialect``; for tests and tools."""
    return [_type_of(statement) for statement in _statements_of(sql, dialect)]


def _plain_dialect(dialect: str) -> bool:
    """Whether ``dialect`` starts strings, comments and quoted names only as the plain reading assumes.

    That is: ``'`` (after a prefix such as ``N``, ``E``, ``X``, ``U&``)
    starts the only strings, ending at the next ``'`` that no ``'`` follows
    (other escape characters are in ``_NOT_PLAIN_CHARS``); every other
    string, comment or identifier quote starts with ``--``, ``/*``, or a
    character outside ``_PLAIN_BYTES``. Anything unexpected in sqlglot's
    tables answers no.
    """
    tokenizer = sqlglot.Dialect.get_or_raise(dialect or None).tokenizer_class
    quotes = getattr(tokenizer, "_QUOTES", None)
    escapes = getattr(tokenizer, "_STRING_ESCAPES", None)
    identifiers = getattr(tokenizer, "_IDENTIFIERS", None)
    comments = getattr(tokenizer, "_COMMENTS", None)
    formats = getattr(tokenizer, "_FORMAT_STRINGS", None)
    if not (
        isinstance(quotes, dict)
        and isinstance(escapes, (set, frozenset))
        and isinstance(identifiers, dict)
        and isinstance(comments, dict)
        and isinstance(formats, dict)
    ):
        return False

    def plain(text: object) -> bool:
        """Whether ``text`` may stand outside strings in plain SQL."""
        return (
            isinstance(text, str)
            and "--" not in text
            and "/*" not in text
            and all(char.isascii() and char.encode() in _PLAIN_BYTES + b"'" for char in text)
        )

    if {start: end for start, end in quotes.items() if plain(start)} != {"'": "'"}:
        return False
    if any(escape != "'" and not any(char in escape for char in _NOT_PLAIN_CHARS) for escape in escapes):
        return False
    if any(plain(start) for start in (*identifiers, *comments)):
        return False
    for start, spec in formats.items():
        if not plain(start):
            continue
        end = spec[0] if isinstance(spec, tuple) and spec else None
        # A prefixed string ("x'", "U&'") or a numeric prefix ("0x") with no end.
        if not ((start.endswith("'") and start.count("'") == 1 and end == "'") or ("'" not in start and end == "")):
            return False
    return True


def _statement_words(dialects: Iterable[str]) -> frozenset[bytes]:
    """The words that start a statement in any of ``dialects``, lowered."""
    words = {kind.encode() for kind in STATEMENT_TYPES - {"select"}}
    for dialect in dialects:
        found = sqlglot.Dialect.get_or_raise(dialect or None)
        starters = set(getattr(found.parser_class, "STATEMENT_PARSERS", ())) | set(
            getattr(found.tokenizer_class, "COMMANDS", ())
        )
        for keyword, token_type in found.tokenizer_class.KEYWORDS.items():
            if token_type in starters:
                words.add(keyword.split()[0].lower().encode())
    return frozenset(words)


class _Checker:
    def __init__(self, settings: SQLSanitizerSettings) -> None:
        self.settings = settings
        self.deny = frozenset(settings.deny)
        self.allow = None if settings.allow is None else frozenset(settings.allow)
        self.readings = (settings.dialect,) if settings.dialect is not None else DEFAULT_READINGS
        # The plain reading, where every reading agrees with it.
        self.plain_kinds = {
            word: kind
            for word, kind in _PLAIN_KINDS.items()
            if kind not in self.deny and (self.allow is None or kind in self.allow)
        }
        if not all(dialect in _PLAIN_DIALECTS and _plain_dialect(dialect) for dialect in self.readings):
            self.plain_kinds = {}
        # Words that start a statement: not plain right after a parenthesis,
        # nor anywhere else but for _QUERY_WORDS.
        self.statement_words = _statement_words(self.readings) if self.plain_kinds else frozenset()
        self.words_anywhere = (self.statement_words - _QUERY_WORDS) | _BATCH_WORDS

    def check(self, sql: str) -> Refusal | None:
        if self.plain_kinds and self.plain(sql):
            return None
        return self.parsed(sql)

    def parsed(self, sql: str) -> Refusal | None:
        """:meth:`check` with sqlglot's parser, whatever the plain reading says."""
        if _EXECUTABLE_COMMENT.search(sql) and self._in_comment(sql):
            return Refusal("executable_comment", None)
        parsed_once = False
        if self.settings.dialect is None and not _dialect_sensitive(sql):
            # Nothing the dialects read differently: one reading decides,
            # unless it cannot parse the SQL.
            try:
                statements = _statements_of(sql, "")
            except _PARSE_FAILURES:
                statements = None
            if statements is not None and all(_type_of(s) in STATEMENT_TYPES for s in statements):
                return self._statements(statements, "", top=True)
        for dialect in self.readings:
            try:
                statements = _statements_of(sql, dialect)
            except _PARSE_FAILURES:
                continue
            if any(_type_of(statement) not in STATEMENT_TYPES for statement in statements):
                continue  # sqlglot read an expression ("SELEC * FRM t" as an alias), not a statement
            parsed_once = True
            found = self._statements(statements, dialect, top=True)
            if found is not None:
                return found
        if not parsed_once and self.settings.on_parse_error == "block":
            return Refusal("parse_error", None)
        return None

    def plain(self, sql: str) -> bool:
        """Whether the plain reading accepts ``sql`` (see the module docstring); no means: parse it."""
        if any(char in sql for char in _NOT_PLAIN_CHARS):
            return False
        # Bytes split twice as fast as str; non-ASCII ones are refused below
        # outside strings.
        parts = sql.encode("utf-8", "surrogatepass").split(b"'")
        if not len(parts) % 2:
            return False  # a string left open
        data = b" ".join(parts[::2])  # what stands outside the strings
        if data.translate(None, _PLAIN_BYTES) or b"--" in data or b"/*" in data:
            return False
        words = data.translate(_WORD_TABLE).split()
        if not words or data.lstrip()[: len(words[0])].lower() != words[0]:
            return False  # nothing, or something before the first word
        if words[0] not in self.plain_kinds or not self.words_anywhere.isdisjoint(words[1:]):
            return False
        semicolons = data.count(b";")
        if semicolons and (semicolons > 1 or not data.rstrip().endswith(b";")):
            return False  # more than one statement
        if data.count(b"(") != data.count(b")"):
            return False
        starts, leading = self.statement_words, _LEADING_WORD.match
        for after in data.replace(b")", b"(").split(b"(")[1:]:
            word = leading(after)
            if word is not None and word[1].lower() in starts:
                return False
        return True

    def _in_comment(self, sql: str) -> bool:
        # The marker may sit in a string literal; it counts when a reading's
        # tokenizer sees a comment that starts with it.
        for dialect in self.readings:
            try:
                tokens = sqlglot.Dialect.get_or_raise(dialect or None).tokenize(sql)
            except _PARSE_FAILURES:
                return True  # cannot tell: fail closed
            if any(comment.lstrip().startswith(("!", "M!")) for token in tokens for comment in token.comments):
                return True
        return False

    def _statements(self, statements: list[Any], dialect: str, *, top: bool) -> Refusal | None:
        if top and len(statements) > 1 and not self.settings.allow_stacked:
            return Refusal("stacked", _type_of(statements[1]))
        for statement in statements:
            for node in (statement, *_nested(statement)):
                found = self._one(node, dialect)
                if found is not None:
                    return found
        return None

    def _one(self, node: Any, dialect: str) -> Refusal | None:
        kind = _type_of(node)
        if kind in self.deny:
            return Refusal("deny", kind)
        if self.allow is not None and kind not in self.allow:
            return Refusal("not_allowed", kind)
        if (
            kind == "delete"
            and self.settings.block_delete_without_where
            and not _reads_a_column(node.args.get("where"))
        ):
            return Refusal("delete_without_where", kind)
        if (
            kind == "update"
            and self.settings.block_update_without_where
            and not _reads_a_column(node.args.get("where"))
        ):
            return Refusal("update_without_where", kind)
        if node.key == "command":
            return self._command(node, dialect)
        return None

    def _command(self, node: Any, dialect: str) -> Refusal | None:
        """A statement sqlglot keeps whole: read what follows its first statement keyword."""
        rest = node.expression.this if isinstance(node.expression, exp.Literal) else str(node.expression or "")
        try:
            tokens = sqlglot.Dialect.get_or_raise(dialect or None).tokenize(rest)
        except _PARSE_FAILURES:
            return Refusal("parse_error", _type_of(node))
        start = next((t.start for t in tokens if _STATEMENT_KEYWORD.fullmatch(t.text)), None)
        if start is None:
            return None
        try:
            inner = _statements_of(rest[start:], dialect)
        except _PARSE_FAILURES:
            return Refusal("parse_error", _type_of(node))
        return self._statements(inner, dialect, top=False)


class SQLSanitizerPlugin(Plugin):
    """Refuses dangerous SQL in arguments; see the module docstring."""

    default_category: ClassVar[Category] = Category.VALIDATION
    default_hooks: ClassVar[tuple[HookType, ...] | None] = (HookType.TOOL_PRE_INVOKE, HookType.PROMPT_PRE_FETCH)

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        if sqlglot is None:
            raise ValueError(INSTALL_HINT)
        self.settings = parse_config(SQLSanitizerSettings, self.config)
        fields = compile_globs(self.settings.fields)
        assert fields is not None  # the settings require one
        self._fields: UserPattern = fields
        self._checker = _Checker(self.settings)

    def _find(self, value: Any, path: str, is_sql: bool, seen: dict[str, Refusal | None]) -> tuple[str, Refusal] | None:
        kind = type(value)
        if kind is str:
            if is_sql:
                # The same SQL twice in one call is checked once.
                found = seen[value] if value in seen else seen.setdefault(value, self._checker.check(value))
                if found is not None:
                    return path, found
            return None
        if kind is dict:
            match = self._fields.match
            for key, item in value.items():
                name = str(key)
                found_in = self._find(item, f"{path}.{name}" if path else name, bool(match(name.lower())), seen)
                if found_in is not None:
                    return found_in
        elif kind is list:
            for index, item in enumerate(value):
                found_in = self._find(item, f"{path}[{index}]", is_sql, seen)
                if found_in is not None:
                    return found_in
        return None

    def _scan(self, args: dict[str, Any]) -> PluginResult | None:
        found = self._find(args, "", False, {})
        if found is None:
            return None
        field, refusal = found
        what = f"{refusal.statement.upper()} statement " if refusal.statement else "SQL "
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="SQL blocked",
                description=f"{what}in {field!r} refused ({refusal.rule})",
                code="SQL_BLOCKED",
                details={"rule": refusal.rule, "statement": refusal.statement, "field": field},
            ),
        )

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Check the SQL in the tool's arguments."""
        return self._scan(payload.args)

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Check the SQL in the prompt's arguments."""
        return self._scan(payload.args)
