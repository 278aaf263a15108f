"""
Request bodies as the app may read them
=======================================

A guardrail must never decide from a narrower reading of a request body than
the app behind it. Apps and their frameworks parse bodies as JSON whatever the
``Content-Type`` says (Starlette's ``request.json()``, Flask's
``get_json(force=True)``, Django's ``json.loads(request.body)``, the MCP SDK's
pydantic models), detect UTF-16 and UTF-32 from the bytes as :func:`json.loads`
does, and some decode with the declared ``charset`` first. This module answers,
without I/O:

* :func:`sniff`: could a body that starts with these bytes be a JSON object or
  array under any of those readings? A JSON-RPC message is one or the other,
  so a body that cannot start with ``{`` or ``[`` (a form post, an upload) is
  passed on unread.
* :func:`read`: every reading of a whole body that could be JSON, decoded;
  or why the body must be refused (a charset Python cannot decode, readings
  that disagree, JSON-looking bytes that do not parse).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
from typing import Any

from . import jsonrpc

__all__ = ["BodyReading", "charsets", "read", "sniff"]

SNIFF_BYTES = 4
"""Bytes :func:`json.detect_encoding` needs to tell UTF-8, -16 and -32 apart."""

_OPENERS = frozenset("{[")
_OPENING_BYTES = (b"{", b"[")
_PLAIN_BYTES = frozenset(bytes([byte]) for byte in range(0x21, 0x7F) if byte not in b"{[")
_SNIFF_WINDOW = 4096
# What lenient apps strip before parsing (str.strip(), a BOM decoded as text,
# NULs of a C string): none of it may hide the opening bracket from us.
_IGNORABLE = "\ufeff\x00"
_UTF8 = "utf-8"
_UTF8_ONLY = [_UTF8]


@dataclasses.dataclass(slots=True)
class BodyReading:
    """The outcome of :func:`read`.

    ``value`` is the decoded JSON when ``refusal`` is None; ``refusal`` is
    ``(status, reason)`` when the body must not reach the app: 400 for
    JSON-looking bytes that do not parse, 415 for a charset that cannot be
    read or readings that disagree.
    """

    value: Any = None
    refusal: tuple[int, str] | None = None


def charsets(content_types: list[str]) -> list[str] | None:
    """The text codecs named by ``charset`` parameters, or None if one is unknown.

    Several Content-Type headers, and comma-separated lists in one, all
    count: different parts of a stack pick different ones.
    """
    found: list[str] = []
    for value in content_types:
        if "charset" not in value.lower():
            continue
        for part in value.replace(",", ";").split(";"):
            key, _, name = part.partition("=")
            if key.strip().lower() != "charset":
                continue
            codec = _codec(name.strip().strip("\"'"))
            if codec is None:
                return None
            if codec not in found:
                found.append(codec)
    return found


def _codec(name: str) -> str | None:
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    # base64, zlib and the like are codecs too, but no text encoding.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _detected(prefix: bytes) -> str:
    return codecs.lookup(json.detect_encoding(prefix)).name


def _readings(prefix: bytes, declared: list[str]) -> list[str]:
    if not declared and prefix[:1] in _OPENING_BYTES and prefix[1:2] != b"\x00":
        return _UTF8_ONLY  # what json.detect_encoding says of such a start
    detected = _detected(prefix)
    # utf-8-sig and utf-8 read a body the same way once the BOM is skipped.
    readings = [detected]
    for codec in declared:
        family = _UTF8 if codec == "utf-8-sig" else codec
        if family not in readings and not (family == _UTF8 and detected == "utf-8-sig"):
            readings.append(family)
    return readings


def _first_significant(text: str) -> str | None:
    for char in text:
        if not (char.isspace() or char in _IGNORABLE):
            return char
    return None


def sniff(prefix: bytes, declared: list[str], *, complete: bool) -> bool | None:
    """Whether a body starting with ``prefix`` may be a JSON object or array.

    None means "read more": only ignorable characters so far. ``complete``
    says ``prefix`` is the whole body.
    """
    first = prefix[:1]
    if first in _OPENING_BYTES:
        return True  # UTF-8, or the first byte of UTF-16-LE / UTF-32-LE
    if not declared and first in _PLAIN_BYTES:
        # An ASCII character that is neither whitespace nor a bracket starts
        # no JSON object in UTF-8, and no BOM or UTF-16/32 text either.
        return False
    if not complete and len(prefix) < SNIFF_BYTES:
        return None
    undecided = False
    window = prefix[:_SNIFF_WINDOW]
    complete = complete and len(window) == len(prefix)
    for codec in _readings(prefix, declared):
        try:
            text = codecs.getincrementaldecoder(codec)(errors="replace").decode(window, final=complete)
        except UnicodeError:  # a UTF-16/32 stream too short for its BOM, say
            continue
        char = _first_significant(text)
        if char is None:
            undecided = True
        elif char in _OPENERS:
            return True
    if undecided and len(window) < len(prefix):
        # A long run of whitespace: look further, then decide.
        return sniff(prefix[len(window) - len(window) % 4 :], declared, complete=complete)
    return None if undecided and not complete else False


def read(body: bytes, declared: list[str]) -> BodyReading:
    """Decode ``body`` the ways the app may; it must have passed :func:`sniff`."""
    values: list[Any] = []
    for codec in _readings(body[:SNIFF_BYTES], declared):
        if codec in (_UTF8, "utf-8-sig"):
            # The common case: one parse, no decoding pass of our own.
            value = jsonrpc.decode(body)
            if isinstance(value, dict | list):
                values.append(value)
                continue
        try:
            text = body.decode(codec)
        except (UnicodeError, LookupError):
            continue  # the app cannot read it this way either
        char = _first_significant(text)
        if char is None or char not in _OPENERS:
            continue
        value = _parse(text)
        if value is _UNPARSED:
            return BodyReading(refusal=(400, "the body looks like JSON but does not parse"))
        values.append(value)
    if not values:
        return BodyReading(refusal=(400, "the body looks like JSON but cannot be decoded"))
    if any(value != values[0] for value in values[1:]):
        return BodyReading(refusal=(415, "the body reads as different JSON in its declared charset"))
    return BodyReading(value=values[0])


_UNPARSED: Any = object()


def _parse(text: str) -> Any:
    # Python's json takes what orjson refuses (NaN, 1e400, lone surrogates);
    # lenient apps strip whitespace, BOMs and NULs around the document.
    for candidate in (text, text.strip().strip(_IGNORABLE).strip()):
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    return _UNPARSED
