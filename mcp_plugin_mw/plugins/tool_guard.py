"""
Tool guard
==========

:class:`ToolGuardPlugin` checks the definitions a server lists (``tools/list``,
``prompts/list``, ``resources/list`` and ``resources/templates/list``
results, on the ``tool_post_list``, ``prompt_post_list`` and
``resource_post_list`` hooks) before the client's model reads them. It
defends against two attacks on MCP clients:

* **tool poisoning**: instructions for the model hidden in a description
  (invisible characters, ``<IMPORTANT>`` blocks, "ignore previous
  instructions", "read ``~/.ssh/id_rsa`` and send it to https://...");
* **rug pulls**: a server that changes a definition after it was first seen
  (and perhaps reviewed), so that a trusted tool starts saying something else.

.. code-block:: yaml

    - name: guard
      kind: tool_guard
      config:
        action: block                 # or strip
        pin_mode: enforce             # or flag, off
        store: file
        path: /var/lib/mcp/pins.json
        approved:                     # from: mcp-plugin-mw tool-hashes URL
          search: [3f1c0b...64 hex digits]
          "prompt:summarize": [9ab0...]

Scanning
    Tools: ``title``, ``description`` and every string in ``inputSchema``,
    ``outputSchema`` and ``annotations``. Prompts: ``title``, ``description``
    and each of ``arguments[]``'s ``title`` and ``description``. Resources and
    templates: ``title``, ``description`` and, for hidden characters only,
    ``name``. Identifiers (tool, prompt and argument names, schema keys,
    ``uri``, ``uriTemplate``) are checked for hidden characters only. What is
    looked for (``checks`` lists the kinds to look for; all by default,
    ``[]`` turns scanning off):

    ========================= ====================================================
    ``tag_characters``        Unicode tags U+E0000-U+E007F (invisible ASCII)
    ``zero_width_characters`` U+200B-U+200D, U+2060-U+2064, U+FEFF
    ``bidi_controls``         U+202A-U+202E, U+2066-U+2069
    ``directive_block``       ``<important>``, ``<system>``, ``<instructions>``
                              tags, any case, with what they enclose
    ``override_instructions`` "ignore (all) previous/prior instructions" and kin
    ``local_file_access``     ``~/.ssh``, ``id_rsa``, ``.env``, ``/etc/passwd``,
                              ``mcp.json``, "read the file"
    ``exfiltration``          "send/forward/upload ... to http(s)://..."
    ========================= ====================================================

    Phrases and tags are looked for after hidden characters are removed and
    the text is NFKC-normalized, so ``ig<U+200B>nore`` and full-width letters
    do not hide them. All patterns run on RE2, in time linear in the text.

Actions
    ``action: block`` (the default) refuses the whole list when any entry has
    a finding: code ``TOOL_POISONING``, details naming each entry (kind and
    name) and its finding kinds, never quoting the text. ``action: strip``
    removes hidden characters from text (not from identifiers) and directive
    blocks (an unclosed tag: to the end of the string) and passes the list on
    changed. An entry whose danger stripping cannot remove (a phrase outside
    any directive block, hidden characters in an identifier, where removing
    them would rename the tool) is **dropped** from the list; the result's
    metadata names what was stripped and dropped. Dropping keeps the rest of
    the server usable; it does not refuse calls to the dropped tool by name
    (pair with ``tool_policy`` for that).

Pinning
    The first definition seen of each entry is hashed and stored, keyed by
    kind and name (``tool:search``, ``prompt:summarize``, ``resource:<uri>``,
    ``resource_template:<uriTemplate>``) under a server name: ``server`` if
    configured, else the request context's ``server_id``, else ``"default"``.
    A later definition with another hash is refused with code
    ``TOOL_DEFINITION_CHANGED`` (``pin_mode: enforce``), or passed with a
    logged warning and the change in the result's metadata (``pin_mode:
    flag``; the first definition stays pinned). ``pin_mode: off`` only scans.
    The hash is :func:`definition_hash`: the sha256 of
    ``json.dumps(definition, sort_keys=True, separators=(",", ":"))`` with the
    top-level ``_meta`` left out (for resources also ``size`` and
    ``annotations.lastModified``, which change with the content). What is
    pinned is the definition as the server sent it, before any stripping;
    entries of a list refused for poisoning are not pinned.

Approvals
    ``approved`` maps a tool name (or ``prompt:<name>``, ``resource:<uri>``,
    ``resource_template:<uriTemplate>``, ``tool:<name>``) to the sha256
    digests of definitions a person has reviewed; ``mcp-plugin-mw tool-hashes
    URL`` prints them for a server's tools. An approved definition passes both
    checks: it is not scanned (so an approval also settles a false positive,
    for that exact text only) and not compared with the pin. With
    ``approved_only: true``, an entry listed in ``approved`` passes only with
    a listed digest, first sight included, and the store is not used for it.

Stores
    ``memory`` (the default) keeps pins in the process: they are lost on
    restart and on reload, and every worker pins on its own. ``file`` keeps
    them in the JSON file ``path`` (written atomically, by a temporary file
    and a rename, under an exclusive lock where the platform has ``fcntl``),
    shared by the processes of one machine and kept across restarts; an
    unreadable or malformed file is an error, never silently replaced.
    ``redis`` keeps them in Redis hashes named ``<key_prefix>:<server>``,
    shared by every worker and machine using the same ``url`` (connection
    options such as ``socket_timeout`` go in the URL's query string); each
    check is one transaction, so the first definition seen by any worker
    wins. With ``redis`` the hooks are coroutines. A store error is raised, so
    the plugin's ``mode`` decides whether the list then passes or is refused
    (``enforce``, the default, refuses it).

Results
    Refusals are violations with HTTP status 502 and JSON-RPC error -32603
    (the server's answer, not the client's request, is at fault):
    ``TOOL_POISONING`` with details ``{"entries": [{"kind", "name",
    "findings"}]}``, and ``TOOL_DEFINITION_CHANGED`` with details
    ``{"server", "changed": [{"kind", "name", "sha256", "pinned"}]}``
    (``sha256`` is the new definition's digest, the one to approve;
    ``pinned`` is None for an ``approved_only`` entry). A list that passes
    changed or flagged carries ``{<plugin name>: {"stripped": [...],
    "dropped": [...], "changed": [...]}}`` (the keys that apply) in the
    result's metadata; a clean list gets no result at all, so the very same
    payload goes on. The default category is ``content``, the one that may
    change what it sees.

Security
    Scanning is a heuristic: it catches the known ways of hiding instructions,
    not every way of phrasing them (homoglyphs, other languages, instructions
    spread over several fields). Pinning is trust on first use: it detects
    change, not a definition that was malicious from the start; review the
    first definitions and list them in ``approved`` (with ``approved_only``)
    to close that gap. The server name should come from configuration: a
    ``server_id`` read from a request header (``server_id_header``) is chosen
    by the client, which can then pick a pin namespace where nothing is
    pinned yet. Violation descriptions and details name entries with
    non-printable characters escaped, so that what the client (and its model)
    reads of a refusal carries no hidden text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import unicodedata
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, get_args
from urllib.parse import quote

from pydantic import Field, PlainValidator, model_validator

from .._regex import UserPattern, compile_user_pattern
from ..models import (
    Category,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptListPayload,
    ResourceListPayload,
    ToolListPayload,
    check_redis_url,
)
from ..plugin import Plugin
from ._config import Settings, parse_config

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "CHECKS",
    "Check",
    "RedisToolGuardPlugin",
    "ToolGuardPlugin",
    "ToolGuardSettings",
    "definition_findings",
    "definition_hash",
]

logger = logging.getLogger("mcp_plugin_mw.plugins.tool_guard")

Check = Literal[
    "tag_characters",
    "zero_width_characters",
    "bidi_controls",
    "directive_block",
    "override_instructions",
    "local_file_access",
    "exfiltration",
]
Kind = Literal["tool", "prompt", "resource", "resource_template"]

CHECKS: tuple[Check, ...] = get_args(Check)
"""Every kind of finding, in the order they are reported."""

_KINDS: tuple[Kind, ...] = ("tool", "prompt", "resource", "resource_template")


# --------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------


def _stable(definition: Mapping[str, Any], kind: str) -> dict[str, Any]:
    stable = {key: value for key, value in definition.items() if key != "_meta"}
    if kind == "resource":
        stable.pop("size", None)
        annotations = stable.get("annotations")
        if isinstance(annotations, dict) and "lastModified" in annotations:
            stable["annotations"] = {key: value for key, value in annotations.items() if key != "lastModified"}
    return stable


def definition_hash(definition: Mapping[str, Any], kind: Kind = "tool") -> str:
    """The sha256 (64 hex digits) of a definition as listed, as the guard pins and ``approved`` lists it.

    The canonical form is ``json.dumps(d, sort_keys=True, separators=(",", ":"))``
    (ASCII, key order ignored) of the definition without its top-level
    ``_meta``; for a ``resource`` also without ``size`` and
    ``annotations.lastModified``.
    """
    canonical = json.dumps(_stable(definition, kind), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------

_HIDDEN_CLASSES: dict[Check, str] = {
    "tag_characters": "\U000e0000-\U000e007f",
    "zero_width_characters": "\u200b-\u200d\u2060-\u2064\ufeff",
    "bidi_controls": "\u202a-\u202e\u2066-\u2069",
}

_TAG_NAMES = ("important", "system", "instructions?")
_DIRECTIVE = "|".join(
    [
        # A closed block, with what it encloses; the lazy body stops at the first closing tag.
        *(rf"<\s*{name}\b[^<>]*>.*?<\s*/\s*{name}\s*>" for name in _TAG_NAMES),
        # An unclosed opening tag: the model reads the rest as the directive.
        rf"<\s*(?:{'|'.join(_TAG_NAMES)})\b[^<>]*>.*",
        # A stray closing tag.
        rf"<\s*/\s*(?:{'|'.join(_TAG_NAMES)})\s*>",
    ]
)

_PHRASES: dict[Check, str] = {
    "override_instructions": (
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|every)\s+)?"
        r"(?:(?:of\s+)?(?:the|your|my|these|those)\s+)?"
        r"(?:previous|prior|above|earlier|preceding|former|original|system)\s+"
        r"(?:instructions?|prompts?|messages?|rules|directives?|guidelines|context)\b"
    ),
    "local_file_access": (
        r"~/\.(?:ssh|aws|gnupg|kube|docker|cursor)\b"
        r"|\bid_(?:rsa|dsa|ecdsa|ed25519)\b"
        r"|(?:^|[\s'\"`(=:/])\.env\b"
        r"|/etc/(?:passwd|shadow|sudoers)\b"
        r"|\bmcp\.json\b"
        r"|\bread\s+the\s+file\b"
    ),
    "exfiltration": (
        r"\b(?:send|forward|upload|transmit|exfiltrat)\w*\b.{0,200}?"
        r"\bto\s+(?:(?:the|this|that|our|my)\s+)?(?:(?:url|endpoint|server|webhook|address|site)\s+)?"
        r"<?\s*(?:https?|ftp|wss?)://"
    ),
}

_FLAGS = re.IGNORECASE | re.DOTALL


def _compile(pattern: str) -> UserPattern:
    return compile_user_pattern(pattern, where="tool_guard", flags=_FLAGS)


@dataclasses.dataclass(slots=True)
class _Findings:
    """What one entry's scan found, and which of it stripping cannot remove."""

    found: set[str] = dataclasses.field(default_factory=set)
    residual: set[str] = dataclasses.field(default_factory=set)

    def kinds(self) -> list[str]:
        return [check for check in CHECKS if check in self.found]


class _Scanner:
    """The configured checks, compiled; walks one definition at a time."""

    def __init__(self, checks: Iterable[Check]) -> None:
        enabled = set(checks)
        self.enabled = bool(enabled)
        self._hidden = [(kind, _compile(f"[{chars}]")) for kind, chars in _HIDDEN_CLASSES.items() if kind in enabled]
        classes = "".join(chars for kind, chars in _HIDDEN_CLASSES.items() if kind in enabled)
        self._hidden_any = _compile(f"[{classes}]") if classes else None
        self._directive = _compile(_DIRECTIVE) if "directive_block" in enabled else None
        self._phrases = [(kind, _compile(pattern)) for kind, pattern in _PHRASES.items() if kind in enabled]

    # -- strings -----------------------------------------------------------

    def _hidden_in(self, text: str) -> set[str]:
        return {kind for kind, pattern in self._hidden if pattern.search(text) is not None}

    def identifier(self, text: str, findings: _Findings) -> None:
        """An identifier: hidden characters are findings that stripping cannot remove."""
        if text.isascii() or self._hidden_any is None:
            return
        hidden = self._hidden_in(text)
        findings.found |= hidden
        findings.residual |= hidden

    def label(self, text: str, findings: _Findings) -> str:
        """A display name: hidden characters are found and removed."""
        if text.isascii() or self._hidden_any is None:
            return text
        hidden = self._hidden_in(text)
        if not hidden:
            return text
        findings.found |= hidden
        return self._hidden_any.sub("", text)

    def prose(self, text: str, findings: _Findings) -> str:
        """Text the model reads: every check; returns the text as strip would leave it."""
        visible = text
        if not text.isascii() and self._hidden_any is not None:
            hidden = self._hidden_in(text)
            if hidden:
                findings.found |= hidden
                visible = self._hidden_any.sub("", text)
        normalized = _normalize(visible)
        found: list[str] = []
        stripped = visible
        if self._directive is not None and self._directive.search(normalized) is not None:
            found.append("directive_block")
            stripped = self._directive.sub("", visible)
        found.extend(kind for kind, pattern in self._phrases if pattern.search(normalized) is not None)
        if found:
            findings.found.update(found)
            rest = _normalize(stripped)
            if self._directive is not None and self._directive.search(rest) is not None:
                findings.residual.add("directive_block")  # e.g. a full-width tag, which sub cannot see
            findings.residual.update(kind for kind, pattern in self._phrases if pattern.search(rest) is not None)
        return stripped

    # -- containers --------------------------------------------------------

    def _json(self, value: Any, findings: _Findings) -> Any:
        """Every string value of a JSON value as prose, every key as an identifier; copied on change."""
        kind = type(value)
        if kind is str:
            return self.prose(value, findings)
        if kind is dict:
            copied: dict[str, Any] | None = None
            for key, item in value.items():
                if type(key) is str:
                    self.identifier(key, findings)
                new = self._json(item, findings)
                if new is not item:
                    if copied is None:
                        copied = dict(value)
                    copied[key] = new
            return value if copied is None else copied
        if kind is list:
            items: list[Any] | None = None
            for index, item in enumerate(value):
                new = self._json(item, findings)
                if new is not item:
                    if items is None:
                        items = list(value)
                    items[index] = new
            return value if items is None else items
        return value

    def _arguments(self, value: Any, findings: _Findings) -> Any:
        if type(value) is not list:
            return value
        items: list[Any] | None = None
        for index, argument in enumerate(value):
            if type(argument) is not dict:
                continue
            new = self._fields(argument, (("name", "id"), ("title", "prose"), ("description", "prose")), findings)
            if new is not argument:
                if items is None:
                    items = list(value)
                items[index] = new
        return value if items is None else items

    def _fields(
        self, entry: dict[str, Any], fields: tuple[tuple[str, str], ...], findings: _Findings
    ) -> dict[str, Any]:
        updates: dict[str, Any] = {}
        for field, role in fields:
            if field not in entry:
                continue
            value = entry[field]
            new: Any = value
            if role == "id":
                if type(value) is str:
                    self.identifier(value, findings)
            elif role == "label":
                if type(value) is str:
                    new = self.label(value, findings)
            elif role == "prose":
                if type(value) is str:
                    new = self.prose(value, findings)
            elif role == "json":
                new = self._json(value, findings)
            else:  # arguments
                new = self._arguments(value, findings)
            if new is not value:
                updates[field] = new
        return {**entry, **updates} if updates else entry

    def scan(self, kind: Kind, entry: dict[str, Any]) -> tuple[dict[str, Any], _Findings]:
        """``entry`` as strip would leave it (the same dict when unchanged), and what was found."""
        findings = _Findings()
        if not self.enabled:
            return entry, findings
        return self._fields(entry, _FIELDS[kind], findings), findings


_FIELDS: dict[Kind, tuple[tuple[str, str], ...]] = {
    "tool": (
        ("name", "id"),
        ("title", "prose"),
        ("description", "prose"),
        ("inputSchema", "json"),
        ("outputSchema", "json"),
        ("annotations", "json"),
    ),
    "prompt": (("name", "id"), ("title", "prose"), ("description", "prose"), ("arguments", "arguments")),
    "resource": (("uri", "id"), ("name", "label"), ("title", "prose"), ("description", "prose")),
    "resource_template": (("uriTemplate", "id"), ("name", "label"), ("title", "prose"), ("description", "prose")),
}


def _normalize(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


_DEFAULT_SCANNER: _Scanner | None = None


def definition_findings(definition: Mapping[str, Any], kind: Kind = "tool") -> list[str]:
    """The finding kinds (see :data:`CHECKS`) of every check in one definition; empty when clean."""
    global _DEFAULT_SCANNER
    if _DEFAULT_SCANNER is None:
        _DEFAULT_SCANNER = _Scanner(CHECKS)
    return _DEFAULT_SCANNER.scan(kind, dict(definition))[1].kinds()


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

_HEX = frozenset("0123456789abcdef")


def _sha256(value: Any) -> str:
    if isinstance(value, str):
        digest = value.strip().lower()
        if len(digest) == 64 and _HEX.issuperset(digest):
            return digest
        shown = repr(value if len(value) <= 80 else value[:77] + "...")
    else:
        shown = f"a {type(value).__name__}"
    raise ValueError(f"expected a sha256 digest as 64 hexadecimal digits, got {shown}")


Sha256 = Annotated[str, PlainValidator(_sha256)]
"""A sha256 digest as 64 hexadecimal digits (stored in lower case)."""


class ToolGuardSettings(Settings):
    """The ``config:`` of :class:`ToolGuardPlugin`."""

    action: Literal["strip", "block"] = "block"
    checks: tuple[Check, ...] = CHECKS
    pin_mode: Literal["enforce", "flag", "off"] = "enforce"
    server: str | None = Field(default=None, min_length=1)
    approved: dict[str, tuple[Sha256, ...]] = Field(default_factory=dict)
    approved_only: bool = False
    store: Literal["memory", "file", "redis"] = "memory"
    path: str | None = Field(default=None, min_length=1)
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="mcp_plugin_mw:tool_guard", min_length=1)

    @model_validator(mode="after")
    def _store_options(self) -> ToolGuardSettings:
        if self.store == "file" and self.path is None:
            raise ValueError("store file needs a path")
        if self.store != "file" and self.path is not None:
            raise ValueError("path is only used with store: file")
        if self.store != "redis":
            for key in ("url", "key_prefix"):
                if key in self.model_fields_set:
                    raise ValueError(f"{key} is only used with store: redis")
            return self
        check_redis_url(self.url, "store redis")
        return self


def _approved_key(name: str) -> str:
    kind, sep, rest = name.partition(":")
    if sep and kind in _KINDS:
        return f"{kind}:{rest}"
    return f"tool:{name}"


# --------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------


class _PinStore(Protocol):
    def load(self) -> None: ...
    def pin(self, server: str, hashes: dict[str, str]) -> dict[str, str]: ...


class MemoryPins:
    """Pins in this process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pins: dict[str, dict[str, str]] = {}

    def load(self) -> None:
        """Nothing to load."""

    def pin(self, server: str, hashes: dict[str, str]) -> dict[str, str]:
        """Pin each key not pinned yet; return every key's pinned hash."""
        with self._lock:
            known = self._pins.setdefault(server, {})
            for key, digest in hashes.items():
                known.setdefault(key, digest)
            return {key: known[key] for key in hashes}


class FilePins:
    """Pins in a JSON file: ``{"version": 1, "servers": {server: {key: sha256}}}``.

    The file is re-read when it changed on disk (another process pinned
    something) and rewritten atomically when this process pins a new key.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._pins: dict[str, dict[str, str]] = {}
        self._stamp: tuple[int, int, int] | None = None

    def load(self) -> None:
        """Make the file's directory and read the file now, so that a bad one fails at start.

        :raises ValueError: the file is unreadable or not a pin file.
        """
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._refresh()

    def pin(self, server: str, hashes: dict[str, str]) -> dict[str, str]:
        """Pin each key not pinned yet (by any process); return every key's pinned hash."""
        with self._lock:
            self._refresh()
            known = self._pins.get(server, {})
            if any(key not in known for key in hashes):
                with self._file_lock():
                    self._refresh()  # under the lock: another process may have pinned them meanwhile
                    known = self._pins.setdefault(server, {})
                    added = False
                    for key, digest in hashes.items():
                        if key not in known:
                            known[key] = digest
                            added = True
                    if added:
                        self._write()
            return {key: known[key] for key in hashes}

    def _refresh(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._pins, self._stamp = {}, None
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{self.path}: cannot read the pin file: {exc}") from None
        self._pins = _parse_pin_file(document, self.path)
        self._stamp = stamp

    def _write(self) -> None:
        document = {"version": 1, "servers": self._pins}
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        stat = os.stat(self.path)
        self._stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover - Windows: the thread lock only
            yield
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a", encoding="utf-8") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _parse_pin_file(document: Any, path: Path) -> dict[str, dict[str, str]]:
    servers = document.get("servers") if isinstance(document, dict) and document.get("version") == 1 else None
    if not isinstance(servers, dict):
        raise ValueError(f'{path}: not a pin file (expected {{"version": 1, "servers": {{...}}}})')
    pins: dict[str, dict[str, str]] = {}
    for server, entries in servers.items():
        if not isinstance(entries, dict) or not all(
            isinstance(digest, str) and len(digest) == 64 and _HEX.issuperset(digest) for digest in entries.values()
        ):
            raise ValueError(f"{path}: servers.{server}: expected a mapping of keys to sha256 digests")
        pins[str(server)] = {str(key): digest for key, digest in entries.items()}
    return pins


class RedisPins:
    """Pins in Redis hashes ``<key_prefix>:<server>``; one transaction per check.

    A client is made per event loop, because a redis-py asyncio connection
    belongs to the loop that opened it.
    """

    def __init__(self, url: str, key_prefix: str) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                from redis.asyncio import Redis

                client = self._clients[loop] = Redis.from_url(self.url)
            return client

    def key(self, server: str) -> str:
        """The Redis hash that holds ``server``'s pins."""
        return f"{self.key_prefix}:{quote(server, safe='')}"

    async def pin(self, server: str, hashes: dict[str, str]) -> dict[str, str]:
        """Pin each key not pinned yet (by any worker); return every key's pinned hash.

        :raises redis.RedisError: when Redis cannot be reached or fails.
        """
        name = self.key(server)
        keys = list(hashes)
        async with self._client().pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.hsetnx(name, key, hashes[key])
            pipe.hmget(name, keys)
            replies = await pipe.execute()
        stored = replies[-1]
        return {key: _text(value) for key, value in zip(keys, stored, strict=True)}

    async def aclose(self) -> None:
        """Close every client, each on its own loop."""
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        current = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(client.aclose(), loop))


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------

_ListPayload = ToolListPayload | PromptListPayload | ResourceListPayload

_LISTS: dict[type[Any], tuple[tuple[str, Kind, str], ...]] = {
    ToolListPayload: (("tools", "tool", "name"),),
    PromptListPayload: (("prompts", "prompt", "name"),),
    ResourceListPayload: (("resources", "resource", "uri"), ("resource_templates", "resource_template", "uriTemplate")),
}
"""Per payload type: (field, kind, identity key) of each list it carries."""


def _label(value: Any) -> str:
    """An entry's name as safe to show: non-printable characters escaped, at most 100 characters."""
    text = value if isinstance(value, str) else json.dumps(value)
    if not text.isprintable():
        text = ascii(text)[1:-1]
    return text if len(text) <= 100 else text[:97] + "..."


def _names(records: list[dict[str, Any]], limit: int = 5) -> str:
    shown = ", ".join(f"{record['kind'].replace('_', ' ')} {record['name']!r}" for record in records[:limit])
    return shown + (f" and {len(records) - limit} more" if len(records) > limit else "")


@dataclasses.dataclass(slots=True)
class _Review:
    """One list's scan and what is left for the pin store to answer."""

    server: str
    updates: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    stripped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dropped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    changed: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pending: list[tuple[Kind, str, str, str]] = dataclasses.field(default_factory=list)
    """(kind, key, label, sha256) of each entry to compare with its pin."""
    fresh: dict[str, str] = dataclasses.field(default_factory=dict)
    """The hash to pin per key (the first entry of that key in the list)."""
    refused: PluginResult | None = None


class ToolGuardPlugin(Plugin):
    """Scans and pins listed tool, prompt and resource definitions; see the module docstring.

    With ``store: redis`` the instance is a :class:`RedisToolGuardPlugin`,
    whose hooks are coroutines; otherwise the hooks are plain functions.
    """

    default_category: ClassVar[Category] = Category.CONTENT

    def __new__(cls, config: PluginConfig) -> ToolGuardPlugin:
        if cls is ToolGuardPlugin and config.config.get("store") == "redis":
            cls = RedisToolGuardPlugin
        return super().__new__(cls)

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(ToolGuardSettings, self.config)
        self._scanner = _Scanner(settings.checks)
        self._approved = {_approved_key(name): frozenset(digests) for name, digests in settings.approved.items()}
        self._store: _PinStore | None = None
        self._open_store(settings)

    def _open_store(self, settings: ToolGuardSettings) -> None:
        if settings.pin_mode == "off":
            return
        if settings.store == "file":
            assert settings.path is not None
            self._store = FilePins(settings.path)
        else:
            self._store = MemoryPins()

    def initialize(self) -> None:
        """Read the pin file (``store: file``), so that a bad one fails at start."""
        if self._store is not None:
            self._store.load()

    # ------------------------------------------------------------------
    # Hooks
    # ------------------------------------------------------------------

    def tool_post_list(self, payload: ToolListPayload, context: PluginContext) -> PluginResult | None:
        """Scan and pin the listed tools."""
        return self._check(payload, context)

    def prompt_post_list(self, payload: PromptListPayload, context: PluginContext) -> PluginResult | None:
        """Scan and pin the listed prompts."""
        return self._check(payload, context)

    def resource_post_list(self, payload: ResourceListPayload, context: PluginContext) -> PluginResult | None:
        """Scan and pin the listed resources and resource templates."""
        return self._check(payload, context)

    def _check(self, payload: _ListPayload, context: PluginContext) -> PluginResult | None:
        review = self.review(payload, context)
        if review.refused is not None:
            return review.refused
        stored = self._store.pin(review.server, review.fresh) if review.fresh and self._store is not None else {}
        return self.decide(payload, review, stored)

    # ------------------------------------------------------------------
    # Shared by every store
    # ------------------------------------------------------------------

    def review(self, payload: _ListPayload, context: PluginContext) -> _Review:
        """Scan ``payload``'s lists, apply ``action``, and collect what must be compared with the pins."""
        settings = self.settings
        review = _Review(settings.server or context.global_context.server_id or "default")
        pinning = settings.pin_mode != "off"
        strip = settings.action == "strip"
        poisoned: list[dict[str, Any]] = []
        for field, kind, identity in _LISTS[type(payload)]:
            entries: list[dict[str, Any]] = getattr(payload, field)
            kept: list[dict[str, Any]] = []
            changed_list = False
            for entry in entries:
                name = entry.get(identity, "")
                key = f"{kind}:{name if isinstance(name, str) else json.dumps(name)}"
                label = _label(name)
                digest = definition_hash(entry, kind)
                approved = self._approved.get(key)
                if approved is not None and digest in approved:
                    kept.append(entry)  # reviewed: neither scanned nor compared with the pin
                    continue
                cleaned, findings = self._scanner.scan(kind, entry)
                if findings.found:
                    record = {"kind": kind, "name": label, "findings": findings.kinds()}
                    if not strip:
                        poisoned.append(record)
                        continue
                    if findings.residual:
                        review.dropped.append(record)
                        changed_list = True
                        continue
                    review.stripped.append(record)
                    if cleaned is not entry:
                        changed_list = True
                kept.append(cleaned)
                if not pinning:
                    continue
                if settings.approved_only and approved is not None:
                    review.changed.append({"kind": kind, "name": label, "sha256": digest, "pinned": None})
                    continue
                review.pending.append((kind, key, label, digest))
                review.fresh.setdefault(key, digest)
            if changed_list:
                review.updates[field] = kept
        if poisoned:
            review.refused = self._poisoning(poisoned)
        elif review.changed and settings.pin_mode == "enforce":
            review.refused = self._changes(review)  # approved_only: refused whatever the store says
        return review

    def decide(self, payload: _ListPayload, review: _Review, stored: Mapping[str, str]) -> PluginResult | None:
        """The hook's result once the pin store has answered with ``stored`` (key -> pinned hash)."""
        for kind, key, label, digest in review.pending:
            pinned = stored.get(key, digest)
            if pinned != digest:
                review.changed.append({"kind": kind, "name": label, "sha256": digest, "pinned": pinned})
        if review.changed and self.settings.pin_mode == "enforce":
            return self._changes(review)
        metadata: dict[str, Any] = {}
        if review.stripped:
            metadata["stripped"] = review.stripped
        if review.dropped:
            metadata["dropped"] = review.dropped
        if review.changed:
            metadata["changed"] = review.changed
            for record in review.changed:
                logger.warning(
                    "%s: %s %r on server %r is not the definition first seen (pinned %s, now %s);"
                    " list %s in approved to accept it",
                    self.name,
                    record["kind"],
                    record["name"],
                    review.server,
                    record["pinned"] or "none: approved_only",
                    record["sha256"],
                    record["sha256"],
                )
        if not metadata:
            return None
        modified = payload.model_copy(update=review.updates) if review.updates else None
        return PluginResult(modified_payload=modified, metadata={self.name: metadata})

    def _poisoning(self, poisoned: list[dict[str, Any]]) -> PluginResult:
        kinds = [check for check in CHECKS if any(check in record["findings"] for record in poisoned)]
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Tool poisoning",
                description=f"hidden or injected instructions ({', '.join(kinds)}) in {_names(poisoned)}",
                code="TOOL_POISONING",
                details={"entries": poisoned},
                http_status_code=502,
                mcp_error_code=-32603,
            ),
        )

    def _changes(self, review: _Review) -> PluginResult:
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="Definition changed",
                description=f"definition changed since first seen on server {_label(review.server)!r}:"
                f" {_names(review.changed)}",
                code="TOOL_DEFINITION_CHANGED",
                details={"server": _label(review.server), "changed": review.changed},
                http_status_code=502,
                mcp_error_code=-32603,
            ),
        )


class RedisToolGuardPlugin(ToolGuardPlugin):
    """:class:`ToolGuardPlugin` with ``store: redis``: async hooks, pins in Redis."""

    def _open_store(self, settings: ToolGuardSettings) -> None:
        self._redis = RedisPins(settings.url, settings.key_prefix)

    async def tool_post_list(  # type: ignore[override]
        self, payload: ToolListPayload, context: PluginContext
    ) -> PluginResult | None:
        """Scan and pin the listed tools."""
        return await self._acheck(payload, context)

    async def prompt_post_list(  # type: ignore[override]
        self, payload: PromptListPayload, context: PluginContext
    ) -> PluginResult | None:
        """Scan and pin the listed prompts."""
        return await self._acheck(payload, context)

    async def resource_post_list(  # type: ignore[override]
        self, payload: ResourceListPayload, context: PluginContext
    ) -> PluginResult | None:
        """Scan and pin the listed resources and resource templates."""
        return await self._acheck(payload, context)

    async def _acheck(self, payload: _ListPayload, context: PluginContext) -> PluginResult | None:
        review = self.review(payload, context)
        if review.refused is not None:
            return review.refused
        stored = await self._redis.pin(review.server, review.fresh) if review.fresh else {}
        return self.decide(payload, review, stored)

    async def shutdown(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()
