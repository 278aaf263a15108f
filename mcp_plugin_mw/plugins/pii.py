"""
PII filter
==========

:class:`PIIFilterPlugin` finds personal data in the text of requests and
responses (see :mod:`~mcp_plugin_mw.plugins._base` for which strings) and
masks it, or refuses the message:

.. code-block:: yaml

    - name: pii
      kind: pii_filter
      config:
        strategy: partial          # redact | partial | hash | block
        detect: {ip_address: false}
        allow_list: ["support@example.com"]
        custom_patterns:
          - {name: EMPLOYEE_ID, pattern: "EMP-[0-9]{6}"}

Built-in types, each switched by ``detect.<type>`` (all on by default):

``SSN``
    US social security numbers written ``123-45-6789`` or ``123 45 6789``;
    area 000, 666 and 900-999, group 00 and serial 0000 are not issued and
    not reported. Bare nine-digit runs are not reported.
``CREDIT_CARD``
    12 to 19 digits passing the Luhn check, contiguous or in the groups the
    brands print (4-4-4-4 and 4-4-4-4-3, Amex 4-6-5 and 4-4-4-3, Diners
    4-6-4, 13-digit Visa 4-4-4-1, Maestro 4-4-4), separators (space or dash)
    used consistently, starting with 2-6 (the networks) or JCB's old 1800 and
    Maestro's 0604; twelve digits only with a Maestro prefix.
``EMAIL``
    ``local@domain.tld``. Text that looks like one inside a URL's authority
    or path (``https://user@example.com/``, ``https://example.com/@bob.dev``)
    is part of the URL, not an address; a ``mailto:`` link and a URL's query
    string or fragment do carry addresses and are reported. Asset names such
    as ``logo@2x.png`` (a file extension for a top-level domain), scp-style
    remotes (``user@host:path``) and ``git@host`` (the account git hosts log
    in over ssh) are not addresses.
``PHONE``
    See :mod:`~mcp_plugin_mw.plugins._phones` for the lengths and prefixes
    (libphonenumber's metadata). North American numbers with separators
    (``(415) 555-2671``, ``415.555.2671``, ``+1 415 555 2671``,
    ``1-800-555-0199``), the area code starting with 2-9, and an extension
    (``x4451``, ``ext. 12``) is part of the number. International numbers
    after ``+`` or the ``00`` prefix, with a ``(0)`` trunk prefix allowed
    (``+44 (0)20 7946 0958``, ``0049 30 1234567``), whose country code and
    length fit. National numbers of ``regions`` (written with a trunk ``0``,
    or by Italy's and Spain's plans): nine digits or more, separated or not
    (``(0117) 496 0133``, ``04 69 31 57 46``, ``04267970917``), shorter ones
    only after a phone word. A run of digits with no separators is a phone
    after a phone word (``Tel.``, ``phone``, ``téléphone``, ``móvil``,
    ``Telefono``, ``mobiel``, ``msisdn``...) or when it is a whole number of
    the plans (a NANP number with a 2-9 exchange, an Italian or Spanish
    one), not when an id label comes before (``#``, ``order``, ``id``,
    ``ref``, ``Bestellnummer``...). Dates (``2024-01-15``, ``05.03.2024``),
    dotted quads and seven-digit local numbers are not phones.
``IP_ADDRESS``
    IPv4 in dotted quads with valid octets, and IPv6 as accepted by
    :mod:`ipaddress` with at least two non-empty groups and a decimal digit
    (so ``std::vector`` is not reported). A quad that is part of a longer
    dotted run (``1.3.6.1.4.1``), follows a version word (``v``,
    ``version``, ``build``, ``release``, ``rev``, ``rv``, ``firmware``,
    ``kernel``; ``AssemblyVersion("12.3.0.17")`` too), a comparison
    (``foo==16.16.8.9``), a product token (``Chrome/120.0.6099.109``) or a
    package name (``pkg@1.2.3.4``) is a version number. ``ip_skip`` names
    the kinds of address not reported (default: loopback and unspecified,
    which name no host: ``127.0.0.1``, ``0.0.0.0``, ``::1``).
``IBAN``
    Two letters, two check digits and up to 30 letters or digits, with or
    without a space every four, passing the ISO 7064 mod-97 check.

``custom_patterns`` add types of your own (regular expressions run on RE2;
one RE2 cannot compile, such as a backreference or a lookaround, is refused
at load unless ``allow_backtracking: true``); ``replacement`` gives a
custom type a fixed replacement. ``allow_list`` holds exact values that are
never masked.

Strategies: ``redact`` writes ``[REDACTED:EMAIL]``; ``partial`` keeps the last
four letters and digits and masks the others (``***-**-6789``; e-mail
addresses keep their first character and their domain, ``a***@example.com``);
``hash`` writes ``[HASH:EMAIL:1a2b3c4d]``, the first eight hex digits of the
SHA-256 of ``hash_salt`` and the value, stable across requests (set a salt:
SSNs and phone numbers are few enough to hash them all); ``block`` refuses the
message with code ``PII_DETECTED``, naming the types found and never the
values.

``strategy`` may also be spelled ``mask``.

``engine: presidio`` (``pip install 'mcp-plugin-mw[presidio]'``) adds the
entities of Microsoft Presidio's analyzer listed in ``presidio.entities``
(names and places with a spaCy ``presidio.model``; national identifiers such
as ``US_DRIVER_LICENSE`` or ``IT_FISCAL_CODE`` from its rule-based recognizers)
to the built-in types, which the detector below still finds; they are masked
under Presidio's names (``[REDACTED:PERSON]``). See
:mod:`~mcp_plugin_mw.plugins._presidio`.

Speed: the digit-led types (all but e-mail) are found from their lead
characters (a digit, ``+`` or ``(``): in ASCII text a byte search skips to
each, and only the alternatives that can start with it are tried (one
compiled alternation per lead), each candidate then checked by its
validator; other text takes one alternation of them all. E-mail addresses
are found from their ``@`` and IPv6 addresses from two close colons, both
cheap literal searches. A string with no digit and no ``@`` is skipped
without scanning.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator

from ..models import PluginConfig, PluginViolation
from ._base import Findings, TextFilterPlugin, config_error, counted, labels
from ._config import Settings, parse_config
from ._phones import DEFAULT_REGIONS, PhoneRules, has_context, known_region, labelled_id, nanp_exchange
from .regex_replace import compile_guarded

if TYPE_CHECKING:
    from ._presidio import PresidioFinder

__all__ = ["DEFAULT_PRESIDIO_ENTITIES", "TYPES", "Detector", "PIIFilterPlugin", "PIIFilterSettings", "find_pii"]

Strategy = Literal["redact", "partial", "hash", "block"]


class PIIDetect(Settings):
    """Which built-in types to look for."""

    ssn: bool = True
    credit_card: bool = True
    email: bool = True
    phone: bool = True
    ip_address: bool = True
    iban: bool = True


class CustomPattern(Settings):
    """A type of your own: a label, a regular expression and an optional fixed replacement."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    pattern: str = Field(min_length=1)
    replacement: str | None = None


DEFAULT_PRESIDIO_ENTITIES: tuple[str, ...] = (
    "PERSON",
    "LOCATION",
    "US_DRIVER_LICENSE",
    "US_ITIN",
    "UK_NHS",
    "ES_NIF",
    "ES_NIE",
    "IT_FISCAL_CODE",
    "IT_DRIVER_LICENSE",
    "MEDICAL_LICENSE",
    "CRYPTO",
)
"""What ``engine: presidio`` reports by default: names and places (with a
model), and national identifiers the built-in types do not cover whose
recognizers can reach the default threshold (US_PASSPORT's and
US_BANK_NUMBER's top out at 0.45 and 0.4 even with context words)."""


class PresidioSettings(Settings):
    """``presidio:`` of :class:`PIIFilterPlugin`, read with ``engine: presidio``."""

    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_PRESIDIO_ENTITIES), min_length=1)
    """Presidio entity names to report; PERSON, LOCATION, NRP and ORGANIZATION need a ``model``."""
    language: str = Field(default="en", min_length=1)
    model: str | None = Field(default=None, min_length=1)
    """An installed spaCy model (a name or a path) whose NER adds names and places; none: patterns only."""
    score_threshold: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("entities")
    @classmethod
    def _upper(cls, entities: list[str]) -> list[str]:
        return [entity.strip().upper() for entity in entities]


class PIIFilterSettings(Settings):
    """``config:`` of :class:`PIIFilterPlugin`; ``mask`` is accepted for ``strategy``."""

    strategy: Strategy = Field(default="redact", validation_alias=AliasChoices("strategy", "mask"))
    detect: PIIDetect = Field(default_factory=PIIDetect)
    allow_list: list[str] = Field(default_factory=list)
    custom_patterns: list[CustomPattern] = Field(default_factory=list)
    hash_salt: str = ""
    regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS), min_length=1)
    """Regions whose national phone formats (no country code) are recognised."""
    ip_skip: list[IPSkip] = Field(default_factory=lambda: list(DEFAULT_IP_SKIP))
    """Kinds of IP address not reported."""
    allow_backtracking: bool = False
    """Run ``custom_patterns`` RE2 cannot compile on Python's engine (unsafe on hostile text)."""
    engine: Literal["builtin", "presidio"] = "builtin"
    """``presidio`` adds Presidio's entities to the built-in types (``pip install 'mcp-plugin-mw[presidio]'``)."""
    presidio: PresidioSettings = Field(default_factory=PresidioSettings)

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        regions = [region.upper() for region in regions]
        unknown = [region for region in regions if not known_region(region)]
        if unknown:
            raise ValueError(f"unknown regions (ISO 3166 codes such as GB): {', '.join(unknown)}")
        return regions

    @field_validator("custom_patterns")
    @classmethod
    def _distinct_names(cls, patterns: list[CustomPattern]) -> list[CustomPattern]:
        names = [pattern.name.upper() for pattern in patterns]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"names must be distinct (ignoring case); repeated: {', '.join(duplicates)}")
        taken = sorted(set(names) & set(TYPES))
        if taken:
            raise ValueError(f"names must differ from the built-in types; taken: {', '.join(taken)}")
        return patterns


# --------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------

# Digit-led types share one alternation whose first node is a character
# class, so that re's search skips in C to the next digit, '+' or '(' instead
# of trying every alternative at every position. Each alternative therefore
# starts just after that lead character: ``(?<!C.)`` checks the character
# before the lead (matches must start a token; the shared ``\w`` part is
# checked once for all, so digits inside a number cost one test),
# ``(?<=...)`` which lead it was. Validators have the final word on every
# candidate.
_LEAD = "[0-9+(]"
_EXTENSION = r"(?:(?: ?(?:x|ext\.?|extension) ?)[0-9]{1,6}(?![0-9]))?"
# re looks for a class one character at a time, several times slower than
# bytes.find looks for one byte: marking the lead characters in ASCII text
# encoded to bytes (the same offsets; bytes.translate is a table lookup per
# byte, str.translate a dict lookup per character) lets find skip the text
# between them.
_LEAD_MARK = 1
_LEAD_MARKS = bytes.maketrans(b"0123456789+(", b"\x01" * 12)
_DIGIT_LED: dict[str, str] = {
    # Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
    "SSN": (
        r"(?<![.+-].)(?<=[0-8])[0-9]{2}(?<!000)(?<!666)"
        r"(?P<ssn_sep>[- ])(?!00)[0-9]{2}(?P=ssn_sep)(?!0000)[0-9]{4}(?![\w-])"
    ),
    "CREDIT_CARD": (
        r"(?<![.+-].)(?<=[0-9])(?:[0-9]{11,18}"
        r"|[0-9]{3}(?P<cc_sep>[ -])[0-9]{4}(?P=cc_sep)[0-9]{4}"
        r"(?:(?P=cc_sep)(?:[0-9]{4}(?:(?P=cc_sep)[0-9]{1,4})?|[0-9]{1,3}))?"
        r"|[0-9]{3}(?P<ax_sep>[ -])[0-9]{6}(?P=ax_sep)[0-9]{4,5})(?![\w-])"
    ),
    # North American: [+]1 country code, (area) or area-, exchange, line,
    # and an extension (303-996-1274x4451).
    "PHONE": (
        r"(?<![+.-].)"
        r"(?:(?<=\+)1[ .-]?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])"
        r"|(?<=\()[2-9][0-9]{2}\) ?"
        r"|(?<=1)[ .-]?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])"
        r"|(?<=[2-9])[0-9]{2}[ .-])"
        r"[0-9]{3}[ .-][0-9]{4}" + _EXTENSION + r"(?!\w|[.-][0-9])"
    ),
    # International: + and 8 to 15 digits with light punctuation and a
    # national trunk prefix in parentheses (+44 (0)20 ...), checked later.
    "PHONE_INTL": r"(?<![+].)(?<=\+)[1-9][0-9 .()/-]{6,22}[0-9]" + _EXTENSION + r"(?!\w|[.-][0-9])",
    # National formats: a trunk prefix 0 (or 00, the international prefix),
    # the area code perhaps in parentheses, groups of digits.
    "PHONE_NATIONAL": (
        r"(?<![.+-].)(?:(?<=\()0[0-9]{1,4}\)[ -]?[0-9]{2,12}|(?<=0)[0-9]{1,12})"
        r"(?:[ ./-][0-9]{1,12}){0,6}" + _EXTENSION + r"(?![\w/]|[.-][0-9])"
    ),
    # A run of digits with no separators (checked later).
    "PHONE_BARE": r"(?<![.+-].)(?<=[1-9])[0-9]{6,11}(?![\w/]|[.-][0-9])",
    # Four octets of 0-255 without leading zeros; the first one's lead digit
    # is already read.
    "IPV4": (
        r"(?<![.].)(?:(?<=1)[0-9]{2}|(?<=2)(?:[0-4][0-9]|5[0-5])|(?<=[1-9])[0-9]|)"
        r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}(?!\w|\.[0-9])"
    ),
    # Led by the first check digit: the country code is the two letters before
    # (so this one is not under the shared token-start check).
    "IBAN": (
        r"(?<=[A-Z]{2}[0-9])(?<![A-Za-z0-9][A-Z]{2}[0-9])"
        r"[0-9](?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
    ),
}
_GROUP_TYPE = {"SSN": "SSN", "CREDIT_CARD": "CREDIT_CARD", "PHONE": "PHONE", "PHONE_INTL": "PHONE"}
_GROUP_TYPE.update(PHONE_NATIONAL="PHONE", PHONE_BARE="PHONE")
_GROUP_TYPE.update(IPV4="IP_ADDRESS", IBAN="IBAN")
_GROUP_OFFSET = {"IBAN": 2}  # where the match really starts, before the lead
# Which alternatives can start with which lead character.
_BY_LEAD = (
    ("+", ("PHONE", "PHONE_INTL")),
    ("(", ("PHONE", "PHONE_NATIONAL")),
    ("0123456789", ("SSN", "CREDIT_CARD", "PHONE", "PHONE_NATIONAL", "PHONE_BARE", "IPV4")),
)

# E-mail addresses are found from their '@', IPv6 addresses from two colons
# close together: both literals re finds fast, and rare in most text.
_LAST_NOT_LOCAL = re.compile(r".*[^A-Za-z0-9._%+-]", re.DOTALL)
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}(?![\w-]|\.[A-Za-z0-9])")
# git@github.com:org/repo.git: an scp-style remote, not an address (nor is
# git@host anywhere: the account git hosting services log in over ssh).
_SCP_PATH = re.compile(r":[A-Za-z_~./]")
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?:\.[0-9]{1,3}){3})?(?![\w:]|\.[0-9])")
_HEX = frozenset("0123456789abcdefABCDEF")
_MAYBE_PII = "0123456789@"  # every built-in type has a digit or an '@'

TYPES: tuple[str, ...] = ("SSN", "CREDIT_CARD", "EMAIL", "PHONE", "IP_ADDRESS", "IBAN")
"""The built-in types."""

_SETTING = {
    "SSN": "ssn",
    "CREDIT_CARD": "credit_card",
    "EMAIL": "email",
    "PHONE": "phone",
    "IP_ADDRESS": "ip_address",
    "IBAN": "iban",
}


# What a dotted quad that is a version number comes after: a word such as
# "version" or "build" (AssemblyVersion("12.3.0.17") too), a comparison
# (foo==16.16.8.9), a product token (Chrome/120.0.6099.109) or a package
# name (pkg@1.2.3.4).
_VERSION_BEFORE = re.compile(
    r"(?:\b(?:v|ver|build|release|rev|revision|rv|firmware|fw|kernel)|version)[\s:#=(\"']*\Z"
    r"|[=!~<>]=\s*\Z|[A-Za-z0-9_]/\Z|@\Z",
    re.IGNORECASE,
)
# Asset names written like addresses (logo@2x.png) end in a file extension.
_FILE_SUFFIXES = frozenset(
    ["png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "json", "txt", "pdf", "zip"]
)
_URL_TOKEN_STOP = frozenset(" \t\r\n\"'<>()[]{}`,;")
_PHONE_PUNCTUATION = re.compile(r"[ ./-]{2}|\(\)|[^0-9 ./()-]")


# Card and phone candidates hold only ASCII digits and separators, so their
# digits are taken as bytes: bytes.translate deletes in C, where str.translate
# with a table goes through a dict per character.
# Luhn's doubled digits (2d, less 9 above 9), so that the sum is taken in C:
# the sum of ASCII digits' bytes is 48 per digit more than the digits'.
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def _luhn(digits: bytes) -> bool:
    total = sum(digits[-1::-2]) + sum(digits[-2::-2].translate(_DOUBLED))
    return (total - 48 * len(digits)) % 10 == 0


_MAESTRO = (
    b"5018",
    b"5020",
    b"5038",
    b"5893",
    b"6304",
    b"6390",
    b"6759",
    b"6761",
    b"6762",
    b"6763",
    b"56",
    b"57",
    b"58",
)


def _card_ok(value: str, text: str, start: int) -> bool:
    digits = value.encode().translate(None, b" -")
    # Issuer numbers start with 2 to 6 (Mastercard's 2-series, Amex and
    # Diners 3, Visa 4, Mastercard and Maestro 5, Discover and Maestro 6),
    # but for JCB's old 15-digit 1800 and 2131 and Maestro's 0604.
    if not (0x32 <= digits[0] <= 0x36 or digits.startswith((b"1800", b"0604"))):
        return False
    # Twelve digits: only Maestro issues numbers this short.
    return (len(digits) > 12 or digits.startswith(_MAESTRO)) and _luhn(digits)


class _PhoneChecks:
    """The validators of the phone alternatives, under the configured regions."""

    def __init__(self, rules: PhoneRules) -> None:
        self.rules = rules

    def international(self, value: str, text: str, start: int) -> bool:
        number = _without_extension(value)[1:]
        # A national trunk prefix written in parentheses after the country
        # code (+44 (0)20 ...) is not dialled from abroad.
        if "(0)" in number:
            number = _TRUNK_IN_PARENS.sub(" ", number, 1).strip()
        if _PHONE_PUNCTUATION.search(number):
            return False
        if "(" in number or ")" in number:
            opened = number.count("(")
            if opened > 1 or opened != number.count(")"):
                return False
        return self.rules.international(_phone_digits(number))

    def national(self, value: str, text: str, start: int) -> bool:
        number = _without_extension(value)
        digits = _phone_digits(number)
        if digits.startswith("00"):
            # The international prefix (0044 20 7946 0958, 001-415-555-2671):
            # no national number starts with it.
            return len(digits) > 9 and self.rules.international(digits[2:]) and not labelled_id(text, start)
        if _NOT_A_PHONE.match(number) or _PHONE_PUNCTUATION.search(number.lstrip("(")):
            return False
        if not self.rules.national(digits):
            return False
        # Nine digits or more: a number as people write one. Shorter: only
        # after a phone word.
        if len(digits) >= 9:
            return not labelled_id(text, start)
        return has_context(text, start)

    def bare(self, value: str, text: str, start: int) -> bool:
        """A run of digits: a phone after a phone word, or as long as one and not labelled an id."""
        if not self.rules.national(value) or labelled_id(text, start):
            return False
        if has_context(text, start):
            return True
        # As long as a phone number, and one by the regions' numbering (a
        # whole NANP number; no national number starts with 1, where
        # timestamps do).
        if len(value) < 9 or value[0] == "1":
            return False
        return (self.rules.nanp and nanp_exchange(value)) or self.rules.numbered(value)


# Dates and dotted quads written with a leading zero (05.03.2024,
# 010.001.002.003), and the US "ID" shape 0xx-xxx-xxxx, are not phones.
_NOT_A_PHONE = re.compile(
    r"[0-9]{1,2}([./-])[0-9]{1,2}\1[0-9]{2,4}(?![0-9])|[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z|0[0-9]{2}-[0-9]{3}-[0-9]{4}\Z"
)
_PHONE_DROP = b" .()+-/"
_TRUNK_IN_PARENS = re.compile(r" ?\(0\) ?")


def _phone_digits(value: str) -> str:
    return value.encode().translate(None, _PHONE_DROP).decode()


_EXTENSION_TAIL = re.compile(_EXTENSION[:-1] + r"\Z")


def _without_extension(value: str) -> str:
    # "x", "ext" and "extension" all have an x.
    return _EXTENSION_TAIL.sub("", value) if "x" in value else value


IPSkip = Literal["loopback", "unspecified", "private", "link_local", "multicast", "reserved"]
DEFAULT_IP_SKIP: tuple[IPSkip, ...] = ("loopback", "unspecified")
"""Addresses not reported by default: they name no host (127.0.0.1, 0.0.0.0, ::1)."""


class _IPChecks:
    """Address validators, skipping the kinds of address in ``skip``."""

    def __init__(self, skip: frozenset[str]) -> None:
        self.skip = skip
        # Only loopback and unspecified skipped (the default): decided from
        # the text, without building an address object.
        self._by_text = skip <= {"loopback", "unspecified"}

    def _skipped(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(getattr(address, f"is_{kind}") for kind in self.skip)

    def ipv4(self, value: str, text: str, start: int) -> bool:
        # The pattern has checked the octets.
        if _after_version_word(text, start):
            return False
        if self._by_text:
            if "loopback" in self.skip and value.startswith("127."):
                return False
            return not ("unspecified" in self.skip and value == "0.0.0.0")
        return not self._skipped(ipaddress.IPv4Address(value))

    def ipv6(self, value: str) -> bool:
        try:
            address = ipaddress.IPv6Address(value)
        except ValueError:
            return False
        groups = [group for group in value.split(":") if group]
        if len(groups) < 2 or not any(char.isdigit() for char in value):
            return False  # std::vector, a::b
        mapped = address.ipv4_mapped
        return not self._skipped(address if mapped is None else mapped)


_IPV4_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_OCTETS = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}\Z")
# How _VERSION_BEFORE's words end: their last letter, and the letters that can
# come before it (None: the one-letter "v"). Folding under IGNORECASE adds
# only the long s among these letters.
_VERSION_ENDINGS: dict[str, str | None] = {
    "v": None,
    "r": "eE",
    "n": "oO",
    "d": "lL",
    "e": "sS\u017frR",
    "w": "fF",
    "l": "eE",
}
_VERSION_ENDINGS.update({last.upper(): before for last, before in _VERSION_ENDINGS.items()})


def _after_version_word(text: str, start: int) -> bool:
    # Only when, past the separators, the text ends like one of
    # _VERSION_BEFORE's words can that regex match: checking so first spares
    # most addresses the regex search.
    floor = max(0, start - 16)
    if start and (text[start - 1] in "=@" or (text[start - 1] == "/" and start > 1 and text[start - 2].isalnum())):
        return _VERSION_BEFORE.search(text, floor, start) is not None
    index = start - 1
    while index >= floor and (text[index] in ":#=(\"'" or text[index].isspace()):
        index -= 1
    if index < floor:
        return False
    ending = text[index]
    if ending not in _VERSION_ENDINGS:
        return False
    before = _VERSION_ENDINGS[ending]
    if before is not None and index > 0 and text[index - 1] not in before:
        return False
    return _VERSION_BEFORE.search(text, floor, start) is not None


def _iban_ok(value: str, text: str, start: int) -> bool:
    compact = value.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


_VALIDATORS: dict[str, Callable[[str, str, int], bool] | None] = {
    "SSN": None,  # the pattern says it all
    "CREDIT_CARD": _card_ok,
    "IBAN": _iban_ok,
}

Span = tuple[str, int, int]
"""A finding: ``(type, start, end)``."""

_KIND = itemgetter(0)
_START = itemgetter(1)


def _emails(text: str) -> Iterator[Span]:
    at = text.find("@")
    while at != -1:
        domain = _EMAIL_DOMAIN.match(text, at)
        if domain is not None:
            # The local part runs back from the '@' to the last character
            # that cannot be in one (one re call, not a Python loop).
            floor = max(0, at - 64)
            stop = _LAST_NOT_LOCAL.match(text, floor, at)
            start = floor if stop is None else stop.end()
            before = text[start - 1] if start else " "
            while start < at and text[start] == ".":  # a leading dot is punctuation
                start += 1
            local = text[start:at]
            # The local part must start a token (and be at most 64 long).
            if (
                local
                and not (before.isalnum() or before in "_.%+-")
                and ".." not in local
                and domain.group().rpartition(".")[2].lower() not in _FILE_SUFFIXES
                and not _SCP_PATH.match(text, domain.end())
                and local != "git"
                and (start == 0 or text[start - 1] in _URL_TOKEN_STOP or _outside_url(text, start))
            ):
                yield "EMAIL", start, domain.end()
                at = text.find("@", domain.end())
                continue
        at = text.find("@", at + 1)


def _outside_url(text: str, start: int) -> bool:
    # Walk back to the start of the token: inside a URL's authority or path
    # the '@' belongs to the URL; in its query or fragment it is an address.
    index = start - 1
    floor = max(0, start - 2048)
    while index >= floor and text[index] not in _URL_TOKEN_STOP:
        index -= 1
    token = text[index + 1 : start]
    return "://" not in token or "?" in token or "#" in token


def _ipv6s(text: str, valid: Callable[[str], bool]) -> Iterator[Span]:
    hint = _IPV6_HINT.search(text)
    while hint is not None:
        start = hint.start()
        floor = max(0, start - 4)
        while start > floor and text[start - 1] in _HEX:
            start -= 1
        match = _IPV6.match(text, start)
        if match is not None and valid(match.group()):
            yield "IP_ADDRESS", start, match.end()
            hint = _IPV6_HINT.search(text, match.end())
        else:
            hint = _IPV6_HINT.search(text, hint.start() + 1)


class Detector:
    """Finds the built-in PII types in ``types`` (all of them by default)."""

    def __init__(
        self,
        types: Iterable[str] = TYPES,
        *,
        regions: Iterable[str] = DEFAULT_REGIONS,
        ip_skip: Iterable[str] = DEFAULT_IP_SKIP,
    ) -> None:
        wanted = set(types)
        unknown = wanted - set(TYPES)
        if unknown:
            raise ValueError(f"unknown PII types: {', '.join(sorted(unknown))}")
        groups = [group for group, kind in _GROUP_TYPE.items() if kind in wanted]
        token_start = "|".join(f"(?P<{group}>{_DIGIT_LED[group]})" for group in groups if group != "IBAN")
        # Every token-start type has six more digits or separators after the
        # lead: checking that once skips short numbers cheaply.
        alternatives = [f"(?<![\\w].)(?=[0-9 .()/-]{{6}})(?:{token_start})"] if token_start else []
        if "IBAN" in groups:
            alternatives.insert(0, f"(?P<IBAN>{_DIGIT_LED['IBAN']})")
        # No alternative starts after a digit, a lower-case letter or '_'
        # (a token starts after no word character, an IBAN's check digits
        # after capitals): testing that before branching is what makes the
        # digits inside numbers cheap to pass over.
        pattern = f"{_LEAD}(?<![0-9a-z_].)(?:{'|'.join(alternatives)})"
        self._led = re.compile(pattern) if alternatives else None
        # On ASCII text the scan goes from lead to lead itself, and at each
        # tries only the alternatives that can start with that character:
        # re tries an alternation's branches one by one, each costing about
        # as much as a failed match, so fewer branches is most of the speed.
        self._by_lead: dict[str, re.Pattern[str]] = {}
        for leads, candidates in _BY_LEAD:
            chosen = [group for group in candidates if group in groups]
            if chosen:
                branches = "|".join(f"(?P<{group}>{_DIGIT_LED[group]})" for group in chosen)
                compiled = re.compile(f"{_LEAD}(?=[0-9 .()/-]{{6}})(?:{branches})")
                self._by_lead.update(dict.fromkeys(leads, compiled))
        self._iban = re.compile(f"[0-9](?P<IBAN>{_DIGIT_LED['IBAN']})") if "IBAN" in groups else None
        phones = _PhoneChecks(PhoneRules(tuple(regions)))
        self._ips = _IPChecks(frozenset(ip_skip))
        validators: dict[str, Callable[[str, str, int], bool] | None] = {
            **_VALIDATORS,
            "PHONE": None,  # the pattern says it all
            "PHONE_INTL": phones.international,
            "PHONE_NATIONAL": phones.national,
            "PHONE_BARE": phones.bare,
            "IPV4": self._ips.ipv4,
        }
        # One lookup per candidate: (type, offset, validator) by group name.
        self._groups = {group: (_GROUP_TYPE[group], _GROUP_OFFSET.get(group, 0), validators[group]) for group in groups}
        self._email = "EMAIL" in wanted
        self._ipv6 = "IP_ADDRESS" in wanted

    def find(self, text: str) -> list[Span]:
        """The PII in ``text``, in order, not overlapping."""
        # str.__contains__ is a memchr; a regex class search is 50 times slower.
        if not any(map(text.__contains__, _MAYBE_PII)):
            return []
        spans: list[Span] = []
        led = self._led
        if led is not None:
            groups = self._groups
            append = spans.append
            if text.isascii():
                # bytes.find skips to the next lead character far faster
                # than re looks for a class.
                find = text.encode().translate(_LEAD_MARKS).find
                by_lead = self._by_lead
                iban = self._iban
                position = find(_LEAD_MARK)
                while position != -1:
                    before = text[position - 1] if position else " "
                    if before.isalnum() or before == "_":
                        # Inside a word or a number: only an IBAN's check
                        # digits follow capitals.
                        if iban is None or not before.isupper():
                            position = find(_LEAD_MARK, position + 1)
                            continue
                        match = iban.match(text, position)
                    else:
                        pattern = by_lead.get(text[position])
                        match = None if pattern is None else pattern.match(text, position)
                    if match is None:
                        position = find(_LEAD_MARK, position + 1)
                        continue
                    kind, offset, valid = groups[match.lastgroup]  # type: ignore[index]
                    start, end = match.span()
                    if valid is None:
                        append((kind, start, end))
                    else:
                        start -= offset
                        if valid(text[start:end], text, start):
                            append((kind, start, end))
                    position = find(_LEAD_MARK, end)
            else:
                # Translating non-ASCII text is slower than the search it spares.
                for match in led.finditer(text):
                    kind, offset, valid = groups[match.lastgroup]  # type: ignore[index]
                    start, end = match.span()
                    start -= offset
                    if valid is None or valid(text[start:end], text, start):
                        append((kind, start, end))
        sources = 1
        if self._email and "@" in text:
            sources += 1
            spans.extend(_emails(text))
        if self._ipv6 and ":" in text:
            sources += 1
            spans.extend(_ipv6s(text, self._ips.ipv6))
        return _disjoint(spans) if sources > 1 else spans


def _disjoint(spans: list[Span]) -> list[Span]:
    """``spans`` in order, keeping the earliest (then the longest) of overlapping ones."""
    # Sorting on the start alone keys in C; spans that start together (rare)
    # come in the order found, so the longest of them replaces the first kept.
    spans.sort(key=_START)
    kept: list[Span] = []
    end = -1
    for span in spans:
        if span[1] >= end:
            kept.append(span)
            end = span[2]
        elif span[2] > end and span[1] == kept[-1][1]:
            kept[-1] = span
            end = span[2]
    return kept


_DEFAULT_DETECTOR = Detector()


def find_pii(text: str) -> list[Span]:
    """Every built-in type of PII in ``text``: ``(type, start, end)``, in order."""
    return _DEFAULT_DETECTOR.find(text)


# --------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------


def _partial(kind: str, value: str) -> str:
    if kind == "EMAIL":
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    keep = 4
    masked: list[str] = []
    for char in reversed(value):
        if char.isalnum():
            if keep:
                keep -= 1
                masked.append(char)
            else:
                masked.append("*")
        else:
            masked.append(char)
    return "".join(reversed(masked))


def _presidio_finder(settings: PresidioSettings) -> PresidioFinder:
    """The Presidio analyzer for ``settings`` (imported here: Presidio and spaCy take seconds to import)."""
    try:
        from ._presidio import PresidioFinder
    except ImportError as exc:
        problem = "presidio needs the presidio-analyzer package: pip install 'mcp-plugin-mw[presidio]'"
        if exc.name not in ("presidio_analyzer", "spacy"):  # installed, but broken
            problem += f" (importing it failed: {exc})"
        raise config_error([("engine", problem)]) from None
    return PresidioFinder(
        settings.entities,
        language=settings.language,
        model=settings.model,
        score_threshold=settings.score_threshold,
        explicit="entities" in settings.model_fields_set,
    )


class PIIFilterPlugin(TextFilterPlugin):
    """Masks or blocks personal data; see the module docstring for the rules."""

    blocking: ClassVar[bool] = False

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(PIIFilterSettings, self.config)
        self.blocks = settings.strategy == "block"
        enabled = [kind for kind in TYPES if getattr(settings.detect, _SETTING[kind])]
        defaults = (
            len(enabled) == len(TYPES)
            and tuple(settings.regions) == DEFAULT_REGIONS
            and tuple(settings.ip_skip) == DEFAULT_IP_SKIP
        )
        self._detector = (
            _DEFAULT_DETECTOR if defaults else Detector(enabled, regions=settings.regions, ip_skip=settings.ip_skip)
        )
        self._allow = frozenset(settings.allow_list)
        self._custom: list[tuple[str, Any]] = []
        self._replacements: dict[str, str] = {}
        problems: list[tuple[str, str]] = []
        for index, custom in enumerate(settings.custom_patterns):
            try:
                compiled = compile_guarded(custom.pattern, allow_backtracking=settings.allow_backtracking)
            except ValueError as exc:
                problems.append((f"custom_patterns[{index}].pattern", str(exc)))
                continue
            name = custom.name.upper()
            self._custom.append((name, compiled))
            if custom.replacement is not None:
                self._replacements[name] = custom.replacement
        if problems:
            raise config_error(problems)
        self._presidio: PresidioFinder | None = None
        if settings.engine == "presidio":
            self._presidio = _presidio_finder(settings.presidio)
        elif "presidio" in settings.model_fields_set:
            # Without the engine the section would be ignored, and names
            # silently let through.
            raise config_error([("presidio", "read only with engine: presidio; set it, or remove this section")])
        self._salt = settings.hash_salt.encode()
        # Replacements that do not depend on the value, made once rather than
        # per finding (unless a subclass masks its own way).
        self._fixed: dict[str, str] = {}
        if type(self).mask is PIIFilterPlugin.mask:
            if settings.strategy == "redact":
                kinds = [*TYPES, *(name for name, _ in self._custom)]
                if self._presidio is not None:
                    kinds.extend(self._presidio.entities)
                self._fixed = {kind: f"[REDACTED:{kind}]" for kind in kinds}
            self._fixed.update(self._replacements)

    def find(self, text: str) -> list[Span]:
        """Every PII span in ``text``: ``(type, start, end)``, in order, not overlapping."""
        found = self._detector.find(text)
        merge = False
        if self._presidio is not None:
            # After the built-in spans: of two starting together and as long,
            # the built-in one is kept.
            added = self._presidio.find(text)
            if added:
                found.extend(added)
                merge = True
        if self._custom:
            for name, compiled in self._custom:
                found.extend((name, match.start(), match.end()) for match in compiled.finditer(text) if match.group())
            merge = True
        if merge:
            found = _disjoint(found)
        if self._allow and found:
            found = [span for span in found if text[span[1] : span[2]] not in self._allow]
        return found

    def mask(self, kind: str, value: str) -> str:
        """The replacement for ``value``, of type ``kind``, under the configured strategy."""
        fixed = self._replacements.get(kind)
        if fixed is not None:
            return fixed
        strategy = self.settings.strategy
        if strategy == "partial":
            return _partial(kind, value)
        if strategy == "hash":
            digest = hashlib.sha256(self._salt + value.encode()).hexdigest()[:8]
            return f"[HASH:{kind}:{digest}]"
        return f"[REDACTED:{kind}]"

    def filter_text(self, text: str, found: Findings) -> str:
        """Mask the PII in ``text`` (or only count it, when blocking)."""
        spans = self.find(text)
        if not spans:
            return text
        for kind, times in Counter(map(_KIND, spans)).items():
            counted(found, kind, times)
        if self.blocks:
            return text
        pieces: list[str] = []
        append = pieces.append
        fixed = self._fixed.get
        mask = self.mask
        position = 0
        for kind, start, end in spans:
            append(text[position:start])
            replacement = fixed(kind)
            append(mask(kind, text[start:end]) if replacement is None else replacement)
            position = end
        append(text[position:])
        return "".join(pieces)

    def violation(self, found: Findings) -> PluginViolation:
        """``PII_DETECTED``, naming the types and counts, never the values."""
        kinds = labels(found)
        return PluginViolation(
            reason="PII detected",
            description=f"message contains personal data: {', '.join(kinds)}",
            code="PII_DETECTED",
            details={"types": kinds, "counts": dict(found)},
        )
