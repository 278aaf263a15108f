"""
Secrets detection
=================

:class:`SecretsDetectionPlugin` finds credentials in the text of requests and
responses (see :mod:`~mcp_plugin_mw.plugins._base` for which strings) and
redacts them, or refuses the message:

.. code-block:: yaml

    - name: secrets
      kind: secrets_detection
      config:
        action: block              # redact (default) | block
        detect: {jwt: false}
        high_entropy: {enabled: true, min_length: 32, threshold: 4.5}

Types, each switched by ``detect.<type>`` (all on by default):

========================= =====================================================
``AWS_ACCESS_KEY_ID``     ``AKIA``/``ASIA`` (and the other IAM prefixes) and
                          16 upper-case letters or digits
``AWS_SECRET_ACCESS_KEY`` 40 base64 characters, only where labelled
                          (``aws_secret_access_key = ...``); the label stays
``GITHUB_TOKEN``          ``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``
                          tokens and ``github_pat_`` fine-grained tokens
``SLACK_TOKEN``           ``xoxb-``, ``xoxp-``, ``xoxa-``, ``xoxr-``,
                          ``xoxs-`` and ``xapp-`` tokens
``SLACK_WEBHOOK``         ``https://hooks.slack.com/services/...`` URLs
``STRIPE_KEY``            ``sk_live_``, ``sk_test_``, ``rk_live_``,
                          ``rk_test_`` keys (publishable ``pk_`` keys are not
                          secret)
``GOOGLE_API_KEY``        ``AIza`` and 35 URL-safe characters
``PRIVATE_KEY``           a PEM ``-----BEGIN ... PRIVATE KEY-----`` block up
                          to its ``END`` line (to the end of the text when the
                          block is cut short)
``JWT``                   three base64url parts whose first decodes to a JSON
                          object with ``alg``
========================= =====================================================

``high_entropy`` (off by default) also reports ``HIGH_ENTROPY``: runs of at
least ``min_length`` base64 or hex characters, with letters and digits, whose
Shannon entropy per character reaches ``threshold`` bits. Expect some false
positives (hashes, ids): that is why it is off.

``action: redact`` writes ``[REDACTED:GITHUB_TOKEN]`` in place of the secret;
``action: block`` refuses the message with code ``SECRETS_DETECTED``, naming
the types found and never the values.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Literal

import orjson
from pydantic import Field

from ..models import PluginConfig, PluginViolation
from ._base import Findings, TextFilterPlugin, counted, labels
from ._config import Settings, parse_config

__all__ = ["TYPES", "SecretsDetectionPlugin", "SecretsDetectionSettings", "find_secrets"]


class SecretsDetect(Settings):
    """Which types to look for."""

    aws_access_key_id: bool = True
    aws_secret_access_key: bool = True
    github_token: bool = True
    slack_token: bool = True
    slack_webhook: bool = True
    stripe_key: bool = True
    google_api_key: bool = True
    private_key: bool = True
    jwt: bool = True


class HighEntropy(Settings):
    """Settings of the optional high-entropy check."""

    enabled: bool = False
    min_length: int = Field(default=32, ge=8)
    threshold: float = Field(default=4.5, gt=0, le=8)


class SecretsDetectionSettings(Settings):
    """``config:`` of :class:`SecretsDetectionPlugin`."""

    action: Literal["redact", "block"] = "redact"
    detect: SecretsDetect = Field(default_factory=SecretsDetect)
    high_entropy: HighEntropy = Field(default_factory=HighEntropy)


# Each pattern starts with a literal (its lookbehinds come after it), so re
# searches for that literal instead of trying the pattern at every position:
# a separate pass per type is then far cheaper than one alternation. A match
# may start ``offset`` characters before the literal; a labelled secret's
# value is its group ``value`` (the label is kept). ``gate`` is groups of
# strings: the pattern is worth running only if, for each group, one of its
# strings is in the text. Single characters make the cheapest gates (a
# memchr, where a pass of re costs 0.5 ns a character and more), so each
# pattern is gated on a character it cannot match without, picked to be
# rare in prose: most passes over clean text are then skipped outright.
_PATTERNS: dict[str, tuple[str, int, tuple[tuple[str, ...], ...]]] = {
    "AWS_ACCESS_KEY_ID": (
        r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA)[A-Z0-9]{16}(?![A-Za-z0-9])",
        0,
        (("A",),),
    ),
    "AWS_SECRET_ACCESS_KEY": (
        r"(?i:aws_?secret(?:_?access)?_?key|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?"
        r"(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        0,
        ((":", "="), ("ecret", "ECRET")),
    ),
    "GITHUB_TOKEN": (
        r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36,251}|ithub_pat_[A-Za-z0-9_]{22,242})(?![A-Za-z0-9_])",
        0,
        (("_",),),
    ),
    "SLACK_TOKEN": (
        r"x(?<![A-Za-z0-9-]x)(?:ox[abprs]-[A-Za-z0-9-]{10,250}|app-[0-9]-[A-Za-z0-9-]{10,250})",
        0,
        (("-",), ("x",)),
    ),
    "SLACK_WEBHOOK": (
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,300}",
        0,
        (("/",),),
    ),
    "STRIPE_KEY": (
        r"k(?<=[rs]k)(?<![A-Za-z0-9_][rs]k)_(?:live|test)_[A-Za-z0-9]{16,247}(?![A-Za-z0-9])",
        1,
        (("_",),),
    ),
    "GOOGLE_API_KEY": (r"AIza(?<![A-Za-z0-9_-]AIza)[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", 0, (("I",), ("z",))),
    "PRIVATE_KEY": (
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
        0,
        (("G",),),
    ),
    "JWT": (
        r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![A-Za-z0-9_.-])",
        0,
        (("J",),),
    ),
}

TYPES: tuple[str, ...] = (*_PATTERNS, "HIGH_ENTROPY")
"""Every type this plugin can report."""

_HIGH_ENTROPY = r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{{{min},}}={{0,2}}(?![A-Za-z0-9+/_=-])"


def _jwt_ok(value: str) -> bool:
    header = value.partition(".")[0]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s character distribution."""
    length = len(text)
    return -sum(count / length * math.log2(count / length) for count in Counter(text).values())


class _Finder:
    """The enabled types' patterns, with their validators."""

    def __init__(self, types: list[str], entropy: HighEntropy) -> None:
        self.rules: list[tuple[str, re.Pattern[str], int, tuple[tuple[str, ...], ...]]] = []
        for kind in types:
            pattern, offset, gate = _PATTERNS[kind]
            self.rules.append((kind, re.compile(pattern, re.DOTALL), offset, gate))
        if entropy.enabled:
            self.rules.append(("HIGH_ENTROPY", re.compile(_HIGH_ENTROPY.format(min=entropy.min_length)), 0, ()))
        self.threshold = entropy.threshold
        self.validators: dict[str, Callable[[str], bool]] = {"JWT": _jwt_ok, "HIGH_ENTROPY": self._entropic}

    def _entropic(self, value: str) -> bool:
        return (
            any(char.isdigit() for char in value)
            and any(char.isalpha() for char in value)
            and shannon_entropy(value.rstrip("=")) >= self.threshold
        )

    def find(self, text: str) -> list[tuple[str, int, int]]:
        found: list[tuple[str, int, int]] = []
        sources = 0
        for kind, pattern, offset, gate in self.rules:
            if not all(any(map(text.__contains__, group)) for group in gate):
                continue
            before = len(found)
            for match in pattern.finditer(text):
                start, end = match.span("value") if pattern.groups else match.span()
                start -= offset
                validator = self.validators.get(kind)
                if validator is None or validator(text[start:end]):
                    found.append((kind, start, end))
            sources += len(found) > before
        if sources > 1:
            # Keep the earliest, then the longest, of overlapping findings.
            found.sort(key=lambda span: (span[1], span[1] - span[2]))
            kept: list[tuple[str, int, int]] = []
            last = -1
            for span in found:
                if span[1] >= last:
                    kept.append(span)
                    last = span[2]
            found = kept
        return found


_DEFAULT_FINDER = _Finder(list(_PATTERNS), HighEntropy())


def find_secrets(text: str) -> list[tuple[str, int, int]]:
    """The secrets of the default types in ``text``: ``(type, start, end)``, in order."""
    return _DEFAULT_FINDER.find(text)


class SecretsDetectionPlugin(TextFilterPlugin):
    """Redacts or blocks credentials; see the module docstring for the types."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(SecretsDetectionSettings, self.config)
        self.blocks = settings.action == "block"
        enabled = [kind for kind in _PATTERNS if getattr(settings.detect, kind.lower())]
        if len(enabled) == len(_PATTERNS) and not settings.high_entropy.enabled:
            self._finder = _DEFAULT_FINDER
        else:
            self._finder = _Finder(enabled, settings.high_entropy)

    def filter_text(self, text: str, found: Findings) -> str:
        """Redact the secrets in ``text`` (or only count them, when blocking)."""
        # Every secret is at least 20 characters long.
        if len(text) < 20:
            return text
        spans = self._finder.find(text)
        if not spans:
            return text
        for kind, _, _ in spans:
            counted(found, kind)
        if self.blocks:
            return text
        pieces: list[str] = []
        position = 0
        for kind, start, end in spans:
            pieces.append(text[position:start])
            pieces.append(f"[REDACTED:{kind}]")
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def violation(self, found: Findings) -> PluginViolation:
        """``SECRETS_DETECTED``, naming the types and counts, never the values."""
        kinds = labels(found)
        return PluginViolation(
            reason="Secrets detected",
            description=f"message contains credentials: {', '.join(kinds)}",
            code="SECRETS_DETECTED",
            details={"types": kinds, "counts": dict(found)},
        )
