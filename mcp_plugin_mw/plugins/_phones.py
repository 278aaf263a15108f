"""
Phone number checks
===================

The rules :mod:`~mcp_plugin_mw.plugins.pii` applies to a phone-shaped
candidate once its pattern has matched. They read libphonenumber's metadata
(the :mod:`phonenumbers` port, as Presidio does) for what a number may look
like: which country codes exist and how many digits follow each, which
regions write a national trunk prefix (``0`` in most of Europe), and how
long a national number is. Parsing every candidate with
:func:`phonenumbers.parse` would cost 30 to 70 µs each; looking up lengths
in tables built once from the same metadata costs well under one.

The checks are about shape and length, not about whether a number is
allocated (libphonenumber's ``is_possible_number``, not ``is_valid_number``):
made-up and test numbers are as personal in a log as real ones.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneMetadata

__all__ = ["DEFAULT_REGIONS", "PhoneRules", "known_region"]

DEFAULT_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IT", "NL", "ES")
"""Regions whose national formats (written without a country code) are recognised by default."""

# Words that say a bare run of digits is a phone number. A run with no
# separators and no country code is as likely an id, an amount or a
# timestamp; written after one of these (in a label, a JSON key, a sentence)
# it is a number to call. Each language of DEFAULT_REGIONS is covered.
_CONTEXT = re.compile(
    # A word start: after a non-letter, or a capital in camelCase (contactPhone).
    r"(?:(?<![a-z])|(?=[A-Z]))"
    r"(?i:phone|tel|fon|mobil|cell|fax|call|sms|whatsapp|dial|ring|contact|msisdn|reach"
    r"|t[ée]l[ée]phon|portable|joignable|appel|cellular|chiam|llam|m[óo]vil|handy|anruf|erreich"
    r"|mobiel|bel|gsm|rufnummer|tlf|tfno)\w*\W{0,4}\Z",
)
_CONTEXT_WINDOW = 24
# What says a run of digits is an id, an amount or a count instead: a label
# such as "order", "id", "#" or "ref" just before it.
_ID_LABEL = re.compile(
    r"(?:#|\b(?:id|ids|no|nr|num|ref|order|invoice|account|acct|seq|pid|uid|ts|timestamp|epoch|serial|sku"
    r"|ticket|case|tracking|bestel\w*|bestell\w*|commande|pedido|ordine|rechnung|factura|fattura|facture)"
    r"\W{0,3})\Z|_id\W{0,4}\Z",
    re.IGNORECASE,
)


def known_region(region: str) -> bool:
    """Whether libphonenumber has metadata for ``region`` (an ISO 3166 code such as ``GB``)."""
    return region in phonenumbers.SUPPORTED_REGIONS


@functools.cache
def _lengths_after_country_code(code: int) -> frozenset[int]:
    """How many digits may follow country code ``code`` (none when it does not exist)."""
    lengths: set[int] = set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ()):
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            metadata = PhoneMetadata.metadata_for_nongeo_region(code)
        else:
            metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is not None and metadata.general_desc is not None:
            lengths.update(metadata.general_desc.possible_length or ())
    lengths.discard(-1)
    return frozenset(lengths)


def nanp(digits: str) -> bool:
    """North American Numbering Plan: ten digits (after a 1), the area code starting with 2-9.

    Exchanges start with 2-9 too, but (555) 123-4567 is how people write an
    example number: it is checked like a real one.
    """
    if len(digits) == 11:
        if digits[0] != "1":
            return False
        digits = digits[1:]
    return len(digits) == 10 and digits[0] >= "2"


class PhoneRules:
    """The lengths and prefixes of the national formats of ``regions``."""

    def __init__(self, regions: tuple[str, ...] = DEFAULT_REGIONS) -> None:
        unknown = [region for region in regions if not known_region(region)]
        if unknown:
            raise ValueError(f"unknown regions: {', '.join(unknown)}")
        self.regions = regions
        self.nanp = "US" in regions or "CA" in regions
        # National numbers: after a trunk prefix ("0" in most of Europe) only
        # the length is checked, as is_possible_number does; regions without
        # one (Italy, Spain) write numbers whose first digits tell their kind,
        # so their national pattern must match.
        trunk: set[int] = set()
        patterns: list[re.Pattern[str]] = []
        for region in regions:
            metadata = PhoneMetadata.metadata_for_region(region)
            if metadata is None or metadata.general_desc is None or metadata.country_code == 1:
                continue
            if metadata.national_prefix == "0":
                trunk.update(length + 1 for length in metadata.general_desc.possible_length or () if length > 0)
            elif metadata.general_desc.national_number_pattern:
                patterns.append(re.compile(metadata.general_desc.national_number_pattern))
        self._trunk = frozenset(trunk)
        self._patterns = tuple(patterns)

    def international(self, digits: str) -> bool:
        """``digits`` (after ``+`` or ``00``, any ``(0)`` removed) start with a country code and fit it."""
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                if code == 1:
                    return nanp(digits)
                return len(digits) - size in _lengths_after_country_code(code)
        return False

    def national(self, digits: str) -> bool:
        """``digits`` are a number as written inside one of the regions, without a country code."""
        if self.nanp and nanp(digits):
            return True
        if digits[0] == "0" and len(digits) in self._trunk:
            return True
        return self.numbered(digits)

    def numbered(self, digits: str) -> bool:
        """``digits`` match the numbering plan of a region written without a trunk prefix (Italy, Spain)."""
        return any(pattern.fullmatch(digits) for pattern in self._patterns)


def nanp_exchange(digits: str) -> bool:
    """Whether ``digits`` are a whole NANP number: area code and exchange both start with 2-9."""
    return nanp(digits) and digits[-7] >= "2"


def labelled_id(text: str, start: int) -> bool:
    """Whether a label such as "order", "id" or "#" comes just before ``start``."""
    return _ID_LABEL.search(text, max(0, start - 16), start) is not None


def has_context(text: str, start: int) -> bool:
    """Whether a word such as "phone", "Tel." or "téléphone" comes just before ``start``."""
    floor = max(0, start - _CONTEXT_WINDOW)
    return _CONTEXT.search(text, floor, start) is not None
