"""
Encoded exfiltration guard
==========================

:class:`ExfilGuardPlugin` looks for secrets and personal data hidden by an
encoding in the text of requests and responses (see
:mod:`~mcp_plugin_mw.plugins._base` for which strings): a key base64-encoded
in a tool argument, an e-mail address percent-encoded into a URL, a token
hex-encoded in a result. It decodes each encoded blob, scans what comes out
with the secrets and PII rules (:func:`~mcp_plugin_mw.plugins.secrets.find_secrets`,
:func:`~mcp_plugin_mw.plugins.pii.find_pii`), and redacts the whole blob or
refuses the message:

.. code-block:: yaml

    - name: exfil
      kind: exfil_guard
      config:
        action: redact               # redact (default) | block
        encodings: {base64: true, base64url: true, hex: true, percent: true}
        scan_secrets: true
        scan_pii: true
        ignore_types: [IP_ADDRESS]   # finding types not to report
        min_length: 16               # shortest base64 / hex run looked at
        max_blob_length: 65536       # longer runs are looked at up to this
        max_decoded_bytes: 65536     # bytes decoded (or decompressed) per blob
        max_depth: 2                 # layers: base64 inside percent-encoding is 2
        entropy: {enabled: true, min_length: 200, threshold: 0.9}
        replacement: "[REDACTED:ENCODED:{types}]"

What is decoded:

* base64 and base64url runs (``A-Z a-z 0-9 + / - _``, optional ``=``
  padding) of at least ``min_length`` characters; the four alignments are
  tried, so a run glued to a word (``token:QUtJQ...``) still decodes;
* hex runs of an even length (``0-9 a-f A-F``), at least ``min_length``;
* percent-encoded runs: a URL component (no ``/ ? & = #``) holding at
  least one ``%XX``;
* gzip and zlib data in a blob, decompressed up to ``max_decoded_bytes``;
* what a blob decodes to is scanned again for blobs, ``max_depth`` layers in
  all.

A blob counts when what it decodes to is text (UTF-8, mostly printable) in
which the secrets or PII rules find something that the encoded form does not
show in the clear (so ``q=caf%C3%A9`` or ``name=Bob%20Smith`` are nothing).
With ``entropy.enabled``, a blob of at least ``entropy.min_length``
characters that decodes to no text and to no known file format, and whose
characters' Shannon entropy reaches ``entropy.threshold`` of the maximum
for its alphabet (6 bits for base64, 4 for hex), counts as
``HIGH_ENTROPY``: encrypted or random data leaving in bulk.

Not reported: images and other media in ``data:`` URIs
(``data:image/png;base64,...``) and blobs that decode to a known binary
format (PNG, JPEG, GIF, WebP, PDF, ZIP, fonts, DER certificates...); image
and audio content items are not text and are never looked at; hashes and ids
(git SHAs, sha256 and sha512 digests, UUIDs) decode to short binary with no
text and stay under ``entropy.min_length``.

``action: redact`` replaces the whole encoded blob with ``replacement``,
where ``{types}`` becomes the types found, joined by ``+``
(``[REDACTED:ENCODED:AWS_ACCESS_KEY_ID]``). ``action: block`` refuses the
message with code ``ENCODED_EXFILTRATION``; the details name the types and
the encodings (``base64``, ``percent>base64``), never the values. A resource
URI cannot be redacted without fetching something else, so on
``resource_pre_fetch`` a finding blocks whatever the action.
"""

from __future__ import annotations

import binascii
import math
import re
import zlib
from collections import Counter
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

from pydantic import Field, field_validator

from ..models import PluginConfig, PluginContext, PluginResult, PluginViolation, ResourcePreFetchPayload
from ._base import Findings, TextFilterPlugin, counted, labels, printable_text
from ._config import Settings, parse_config
from .pii import find_pii
from .secrets import find_secrets

__all__ = ["ExfilGuardPlugin", "ExfilGuardSettings", "Finder", "Hit"]


class Encodings(Settings):
    """Which encodings to decode."""

    base64: bool = True
    base64url: bool = True
    hex: bool = True
    percent: bool = True


class Entropy(Settings):
    """The check for long high-entropy blobs that decode to nothing readable."""

    enabled: bool = True
    min_length: int = Field(default=200, ge=32)
    threshold: float = Field(default=0.9, gt=0, le=1)


class ExfilGuardSettings(Settings):
    """``config:`` of :class:`ExfilGuardPlugin`."""

    action: Literal["redact", "block"] = "redact"
    encodings: Encodings = Field(default_factory=Encodings)
    scan_secrets: bool = True
    scan_pii: bool = True
    ignore_types: list[str] = Field(default_factory=list)
    min_length: int = Field(default=16, ge=8, le=4096)
    max_blob_length: int = Field(default=65536, ge=64, le=16 * 1024 * 1024)
    max_decoded_bytes: int = Field(default=65536, ge=64, le=16 * 1024 * 1024)
    max_depth: int = Field(default=2, ge=1, le=4)
    entropy: Entropy = Field(default_factory=Entropy)
    replacement: str = "[REDACTED:ENCODED:{types}]"

    @field_validator("ignore_types")
    @classmethod
    def _type_names(cls, types: list[str]) -> list[str]:
        for index, name in enumerate(types):
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"item {index}: {name!r} is not a type name (upper case, like EMAIL)")
        return types

    @field_validator("replacement")
    @classmethod
    def _one_placeholder(cls, replacement: str) -> str:
        try:
            replacement.format(types="X")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only the placeholder {{types}} may be used: {exc}") from None
        return replacement


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
# Base64 characters to "a", all else to a space: runs are then found with
# bytes.find of "a" * min_length, a C substring search, where a regular
# expression would retry a character class from every letter of every word.
_RUN_TABLE = bytes(ord("a") if byte in _BASE64_ALPHABET else ord(" ") for byte in range(256))
_HEX_DIGITS = "0123456789abcdefABCDEF"
_URLSAFE = str.maketrans("-_", "+/")
# A URL component (no / ? & = #) with at least one %XX.
_PERCENT_RUN = re.compile(r"[A-Za-z0-9._~+!*'()$,;:@%-]*%[0-9A-Fa-f]{2}[A-Za-z0-9._~+!*'()$,;:@%-]*")
_MEDIA_DATA_URI = re.compile(r"data:(?:image|audio|video|font)/[\w.+-]+(?:;[\w=.-]+)*;base64,$", re.IGNORECASE)

_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"RIFF",
    b"%PDF",
    b"PK\x03\x04",
    b"OggS",
    b"fLaC",
    b"ID3",
    b"wOFF",
    b"wOF2",
    b"\x00\x01\x00\x00",
    b"OTTO",
    b"\x30\x82",
    b"\x30\x81",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
"""File formats whose base64 is ordinary content, not a leak (images, media, documents, fonts, DER)."""


def _known_format(data: bytes) -> bool:
    return data.startswith(_MAGIC) or data[4:8] == b"ftyp"


def _decompress(data: bytes, limit: int) -> bytes | None:
    """gzip or zlib ``data`` inflated up to ``limit`` bytes, else None."""
    if data[:2] == b"\x1f\x8b":
        wbits = 31
    elif len(data) > 2 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0:
        wbits = 15
    else:
        return None
    try:
        return zlib.decompressobj(wbits).decompress(data, limit)
    except zlib.error:
        return None


def shannon_ratio(blob: str, alphabet_bits: float) -> float:
    """Shannon entropy per character of ``blob`` over the maximum of its alphabet."""
    counts = Counter(blob)
    size = len(blob)
    entropy = -sum(count / size * math.log2(count / size) for count in counts.values())
    return entropy / alphabet_bits


def _base64_decodings(blob: str, limit: int) -> list[bytes]:
    """What ``blob`` decodes to at each alignment that decodes (first those that give text)."""
    blob = blob.rstrip("=").translate(_URLSAFE)
    out: list[bytes] = []
    for skip in range(4):
        part = blob[skip:]
        part = part[: (limit // 3) * 4]
        if len(part) % 4 == 1:
            part = part[:-1]
        try:
            data = binascii.a2b_base64(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue
        if data:
            out.append(data)
        if skip == 0 and printable_text(data) is not None:
            break
    return out


# --------------------------------------------------------------------------
# Finding
# --------------------------------------------------------------------------

Hit = tuple[int, int, str, str]
"""An encoded blob that counts: ``(start, end, encoding chain, type)``."""


class Finder:
    """Finds encoded blobs with secrets or PII inside; see the module docstring."""

    def __init__(self, settings: ExfilGuardSettings) -> None:
        self.settings = settings
        self.encodings = settings.encodings
        self.ignore = frozenset(settings.ignore_types)
        self.limit = settings.max_decoded_bytes
        self._needle = b"a" * settings.min_length

    def find(self, text: str, depth: int = 1, chain: str = "") -> list[Hit]:
        """The blobs in ``text`` that count, outermost first."""
        hits: list[Hit] = []
        settings = self.settings
        encodings = self.encodings
        if (encodings.base64 or encodings.base64url or encodings.hex) and len(text) >= settings.min_length:
            for start, run_end in self._runs(text):
                end = min(run_end, start + settings.max_blob_length)
                while end < len(text) and end - run_end < 2 and text[end] == "=":
                    end += 1
                hits.extend(self._blob(text, start, end, depth, chain))
        if encodings.percent and "%" in text:
            for match in _PERCENT_RUN.finditer(text):
                hits.extend(self._percent(text, match.start(), match.end(), depth, chain))
        return _outermost(hits)

    def _runs(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` of each run of base64 characters at least ``min_length`` long."""
        # One byte a character ("replace" maps each non-ASCII one to "?").
        marks = text.encode("ascii", "replace").translate(_RUN_TABLE)
        needle = self._needle
        runs: list[tuple[int, int]] = []
        position = marks.find(needle)
        while position >= 0:
            start = marks.rfind(b" ", 0, position) + 1
            end = marks.find(b" ", position)
            if end < 0:
                end = len(marks)
            runs.append((start, end))
            position = marks.find(needle, end)
        return runs

    def _blob(self, text: str, start: int, end: int, depth: int, chain: str) -> list[Hit]:
        blob = text[start:end]
        encodings = self.encodings
        if _MEDIA_DATA_URI.search(text, max(0, start - 80), start):
            return []
        candidates: list[tuple[str, bytes]] = []
        bare = blob.rstrip("=")
        if encodings.hex and len(bare) % 2 == 0 and not bare.strip(_HEX_DIGITS):
            candidates.append(("hex", bytes.fromhex(bare[: 2 * self.limit])))
        else:
            urlsafe = "-" in bare or "_" in bare
            classic = "+" in bare or "/" in bare
            if urlsafe and classic:
                return []
            if urlsafe:
                allowed = encodings.base64url
            elif classic:
                allowed = encodings.base64
            else:
                allowed = encodings.base64 or encodings.base64url
            if allowed:
                name = "base64url" if urlsafe else "base64"
                candidates.extend((name, data) for data in _base64_decodings(blob, self.limit))
        found: list[Hit] = []
        readable = False
        for name, data in candidates:
            if _known_format(data):
                return []
            inflated = _decompress(data, self.limit)
            if inflated is not None:
                name, data = f"{name}+gzip", inflated
            decoded = printable_text(data)
            if decoded is None:
                continue
            readable = True
            for kind in self._inside(decoded, blob, depth, f"{chain}{name}"):
                found.append((start, end, kind[0], kind[1]))
            if found:
                return found
        entropy = self.settings.entropy
        if not readable and candidates and entropy.enabled and len(bare) >= entropy.min_length:
            bits = 4.0 if candidates[0][0] == "hex" else 6.0
            if shannon_ratio(bare, bits) >= entropy.threshold and "HIGH_ENTROPY" not in self.ignore:
                return [(start, end, f"{chain}{candidates[0][0]}", "HIGH_ENTROPY")]
        return []

    def _percent(self, text: str, start: int, end: int, depth: int, chain: str) -> list[Hit]:
        encoded = text[start:end]
        try:
            decoded = unquote_to_bytes(encoded).decode("utf-8")
        except UnicodeDecodeError:
            return []
        if decoded == encoded:
            return []
        return [(start, end, kind, name) for kind, name in self._inside(decoded, encoded, depth, f"{chain}percent")]

    def _inside(self, decoded: str, encoded: str, depth: int, chain: str) -> list[tuple[str, str]]:
        """``(chain, type)`` for what ``decoded`` holds that ``encoded`` does not show."""
        out: list[tuple[str, str]] = []
        spans: list[tuple[str, int, int]] = []
        if self.settings.scan_secrets:
            spans.extend(find_secrets(decoded))
        if self.settings.scan_pii:
            spans.extend(find_pii(decoded))
        for kind, low, high in spans:
            if kind not in self.ignore and decoded[low:high] not in encoded:
                out.append((chain, kind))
        if depth < self.settings.max_depth:
            for _, _, inner_chain, kind in self.find(decoded, depth + 1, f"{chain}>"):
                out.append((inner_chain, kind))
        return out


def _outermost(hits: list[Hit]) -> list[Hit]:
    """The hits not inside another hit's blob (those inside are merged into it)."""
    if len(hits) < 2:
        return hits
    hits.sort(key=lambda hit: (hit[0], -hit[1]))
    kept: list[Hit] = []
    span_end = -1
    span_start = -1
    for hit in hits:
        if hit[0] >= span_end:
            span_start, span_end = hit[0], hit[1]
            kept.append(hit)
        else:
            # Inside (or overlapping) the current blob: report it on that blob.
            kept.append((span_start, span_end, hit[2], hit[3]))
            span_end = max(span_end, hit[1])
    return kept


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------


class ExfilGuardPlugin(TextFilterPlugin):
    """Redacts or blocks secrets and PII hidden in encoded blobs; see the module docstring."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(ExfilGuardSettings, self.config)
        self.blocks = settings.action == "block"
        self.finder = Finder(settings)

    def filter_text(self, text: str, found: Findings) -> str:
        """Redact the encoded blobs with findings in ``text`` (or only count them, when blocking)."""
        hits = self.finder.find(text)
        if not hits:
            return text
        by_blob: dict[tuple[int, int], list[str]] = {}
        for start, end, chain, kind in hits:
            counted(found, f"{chain}:{kind}")
            by_blob.setdefault((start, end), []).append(kind)
        if self.blocks:
            return text
        pieces: list[str] = []
        position = 0
        for (start, end), kinds in sorted(by_blob.items()):
            if start < position:
                continue
            pieces.append(text[position:start])
            pieces.append(self.settings.replacement.format(types="+".join(dict.fromkeys(sorted(kinds)))))
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def violation(self, found: Findings) -> PluginViolation:
        """``ENCODED_EXFILTRATION``, naming the types and encodings found, never the values."""
        types = sorted({label.rpartition(":")[2] for label in found})
        encodings = sorted({label.rpartition(":")[0] for label in found})
        return PluginViolation(
            reason="Encoded exfiltration",
            description=f"encoded data holds {', '.join(types)}",
            code="ENCODED_EXFILTRATION",
            details={"types": types, "encodings": encodings, "findings": labels(found)},
        )

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Block a resource URI that carries encoded findings (a URI cannot be redacted)."""
        found: Findings = {}
        uri: Any = payload.uri
        if type(uri) is str:
            for start, end, chain, kind in self.finder.find(uri):
                del start, end
                counted(found, f"{chain}:{kind}")
        if not found:
            return None
        return PluginResult(continue_processing=False, violation=self.violation(found))
