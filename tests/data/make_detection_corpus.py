#!/usr/bin/env python3
"""Write the labelled evaluation corpora for the PII and secrets detectors.

Run from the repository root (needs the ``test`` extra, which pins ``faker``)::

    python tests/data/make_detection_corpus.py

It (re)writes, byte for byte the same on every run:

``tests/data/pii_eval.jsonl``
    Positive cases in seven locales (en_US, en_GB, de_DE, fr_FR, it_IT, nl_NL,
    es_ES; the same number each), written as prose, JSON (MCP tool arguments and
    results, records), log lines and CSV rows, with one to three pieces of
    personal data each, plus hard negatives (cases without any span) in every
    locale: dotted-quad version numbers, OIDs, loopback and unspecified
    addresses, git remotes, npm scopes, decorators, ``@2x`` assets, dates,
    order and invoice numbers, UUIDs, hashes, ISBNs, prices, measurements,
    postal codes, epoch timestamps, numeric ids, Luhn-invalid 16-digit
    numbers, ``localhost:8080``, semver ranges, coordinates, CSS colours and
    sentences about phone numbers and e-mail addresses that contain none.

``tests/data/secrets_eval.jsonl``
    Fake but format-correct credentials of many providers (lengths, alphabets
    and prefixes as the providers document them) in .env files, YAML, JSON,
    INI, shell commands, log lines, Python and JavaScript source and prose;
    and negatives: documented placeholders (ids ``secrets-placeholder-*``) and
    look-alikes (ids ``secrets-negative-*``).

Each line is ``{"id", "locale", "style", "text", "spans"}``; a span is
``{"type", "start", "end"}``, character offsets into ``text``. Texts are built
by concatenating pieces and recording the offsets of the labelled ones as they
are appended (never by searching), and every span is checked against the value
written.

Labelling rules
---------------
PII types: ``EMAIL``, ``PHONE``, ``CREDIT_CARD``, ``IP_ADDRESS``, ``IBAN`` and
``SSN`` (US only, ``123-45-6789`` or ``123 45 6789``, valid areas).

* A phone span is the number as written: a leading ``+`` or ``00``, an area
  code in parentheses (``(0117) 496 0133``, ``(591)341-7776``), a trunk
  ``(0)`` and an ``x1234`` extension belong to it. Parentheses that wrap the
  whole number, as in ``(+44 20 7946 0958)`` or ``(call 020 7946 0958)``, are
  punctuation and are not part of the span.
* Card numbers (Luhn-valid, from faker) are labelled with their separators;
  IBANs compact or in groups of four.
* Private IPv4 addresses are labelled (a host's address is personal data);
  loopback and unspecified addresses (``127.0.0.1``, ``0.0.0.0``, ``::1``,
  ``::``) are not, nor is a ``:port`` or the brackets around an IPv6 address.
* ``mailto:``, angle brackets and display names are not part of an e-mail span.
* Numbers faker writes that are not valid national numbers (a German or Dutch
  area code starting with 0) are drawn again; US numbers use area codes and
  exchanges starting 2-9.

Secrets are typed by provider category (``AWS_ACCESS_KEY_ID``, ``GITHUB_TOKEN``,
``STRIPE_KEY``, ... ``PRIVATE_KEY``, ``JWT``, ``PASSWORD`` for passwords in
assignments and URLs, ``GENERIC_SECRET`` for api_key/secret/token assignments;
``SQUARE_TOKEN`` and ``MAILGUN_API_KEY`` as well). A span covers the
credential only: the value of ``password=...`` or ``"api_key": "..."``
without the label or quotes, only the password of a connection URL, the
``AccountKey`` of an Azure connection string, the whole webhook URL of Slack
and Discord, and a PEM private key from ``-----BEGIN`` to
the end of its ``-----END ...-----`` line. Identifiers that are not secret
(Twilio ``AC`` account SIDs, Stripe ``pk_live_`` publishable keys, a service
account's ``private_key_id``, ``client_id``\\s, public keys and certificates)
are not labelled. Placeholders are never secrets: the AWS documentation
examples, runs of ``x``/``X``/``*``, ``<...>``, ``YOUR_API_KEY``, ``${VAR}``,
``$VAR``, ``{{ ... }}``, values read from the environment, the word
``password`` as a password and the well-known default ``changeme`` (it is
what documentation and templates ship; finding it in a config is a weak
default, not a leaked credential).

The output depends on faker's data, so the ``test`` extra pins faker exactly;
after changing the pin, run this script and commit the regenerated files
(``tests/test_detection_accuracy.py`` checks they match).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import random
import re
import string
import struct
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from faker import Faker
from faker.providers.address.it_IT import Provider as ItalianAddresses

HERE = Path(__file__).resolve().parent
PII_PATH = HERE / "pii_eval.jsonl"
SECRETS_PATH = HERE / "secrets_eval.jsonl"

SEED = 20240115
LOCALES: tuple[str, ...] = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "nl_NL", "es_ES")
PII_POSITIVES_PER_LOCALE = 150
PII_NEGATIVES_PER_LOCALE = 70
SECRETS_POSITIVES = 480
SECRETS_PLACEHOLDERS = 130
SECRETS_LOOKALIKES = 140

PII_TYPES: tuple[str, ...] = ("EMAIL", "PHONE", "CREDIT_CARD", "IP_ADDRESS", "IBAN", "SSN")

Piece = tuple[str | None, str]
"""``(type, text)``: a labelled value, or literal text when the type is None."""
Pieces = list[Piece]
Case = dict[str, Any]


def lit(text: str) -> Piece:
    return (None, text)


class Text:
    """A text assembled from pieces, with the offsets of the labelled ones."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._spans: list[tuple[str, int, int, str]] = []

    def add(self, pieces: Iterable[Piece]) -> None:
        for kind, text in pieces:
            if kind is not None:
                if not text or text != text.strip():
                    raise ValueError(f"bad {kind} value {text!r}")
                self._spans.append((kind, self._length, self._length + len(text), text))
            self._parts.append(text)
            self._length += len(text)

    def build(self) -> tuple[str, list[dict[str, Any]]]:
        text = "".join(self._parts)
        spans = []
        previous_end = 0
        for kind, start, end, value in self._spans:
            if text[start:end] != value or start < previous_end:
                raise AssertionError(f"span {kind} {start}:{end} does not hold {value!r}")
            previous_end = end
            spans.append({"type": kind, "start": start, "end": end})
        return text, spans


def assemble(pieces: Iterable[Piece]) -> tuple[str, list[dict[str, Any]]]:
    text = Text()
    text.add(pieces)
    return text.build()


def render(template: str, slots: dict[str, Pieces | str]) -> Pieces:
    """``template`` with each ``{name}`` replaced by ``slots[name]``."""
    out: Pieces = []
    for index, part in enumerate(re.split(r"\{(\w+)\}", template)):
        if index % 2:
            value = slots[part]
            out.extend([lit(value)] if isinstance(value, str) else value)
        elif part:
            out.append(lit(part))
    return out


def join(items: Sequence[Pieces], separator: str) -> Pieces:
    out: Pieces = []
    for index, item in enumerate(items):
        if index:
            out.append(lit(separator))
        out.extend(item)
    return out


def rand_str(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def digits(rng: random.Random, length: int) -> str:
    return str(rng.randint(1, 9)) + rand_str(rng, string.digits, length - 1)


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in moved)) % 97 == 1


# --------------------------------------------------------------------------- PII

LANG = {"en_US": "en", "en_GB": "en", "de_DE": "de", "fr_FR": "fr", "it_IT": "it", "nl_NL": "nl", "es_ES": "es"}
COUNTRY_CODE = {"en_US": "1", "en_GB": "44", "de_DE": "49", "fr_FR": "33", "it_IT": "39", "nl_NL": "31", "es_ES": "34"}
# faker's en_GB lorem is Latin; English filler text comes from en_US.
PROSE_LOCALE = {"en_GB": "en_US"}

CLAUSES: dict[str, dict[str, list[str]]] = {
    "en": {
        "EMAIL": [
            "Please email {v} with any questions.",
            "Contact: {v}",
            "You can reach me at {v}.",
            "Send the signed copy to {v} by Friday.",
            "Reply-To: {v}",
            "The customer's email address is {v}.",
            "Forwarding this to {v} for review.",
        ],
        "PHONE": [
            "Call me on {v}.",
            "Phone: {v}",
            "Mobile: {v}",
            "Tel: {v}",
            "For urgent issues ring {v} any time.",
            "The customer called from {v} about the delivery.",
            "Best number to reach {name} is {v}, after 5pm.",
        ],
        "CREDIT_CARD": [
            "Card number: {v}",
            "Please charge my card {v}, expiry 09/27.",
            "Payment declined for card {v}.",
            "I paid with {v} but was charged twice.",
        ],
        "IBAN": [
            "IBAN: {v}",
            "Please transfer the deposit to {v}.",
            "The refund will be sent to account {v}.",
            "Bank details for {company}: {v}",
        ],
        "IP_ADDRESS": [
            "Login from {v} was blocked.",
            "The request came from IP {v}.",
            "Please allow {v} on the firewall.",
            "Suspicious traffic originated at {v} overnight.",
        ],
        "SSN": [
            "SSN: {v}",
            "Social Security Number {v} is on file.",
            "The employee's SSN {v} needs verifying.",
            "Applicant SSN: {v}",
        ],
        "PAREN": ["Ask for {name} {v} at reception.", "Our agent {name} {v} will follow up.", "Speak to {name} {v}."],
    },
    "de": {
        "EMAIL": [
            "Kontakt: {v}",
            "Bitte schreiben Sie an {v}.",
            "E-Mail: {v}",
            "Die Rechnung geht an {v}.",
            "Antwort bitte an {v} senden.",
        ],
        "PHONE": [
            "Tel.: {v}",
            "Telefon: {v}",
            "Sie erreichen mich unter {v}.",
            "Mobil: {v}",
            "Rückruf erbeten unter {v}.",
            "{name} ist unter {v} erreichbar.",
        ],
        "CREDIT_CARD": [
            "Kreditkarte: {v}",
            "Bitte belasten Sie meine Karte {v}.",
            "Zahlung mit Karte {v} abgelehnt.",
        ],
        "IBAN": [
            "IBAN: {v}",
            "Bitte überweisen Sie den Betrag auf {v}.",
            "Kontoverbindung: {v}, BIC folgt.",
            "Bankverbindung der {company}: {v}",
        ],
        "IP_ADDRESS": ["Anmeldung von {v} erkannt.", "IP-Adresse: {v}", "Zugriff von {v} wurde gesperrt."],
        "PAREN": ["Ansprechpartner: {name} {v}", "Bitte wenden Sie sich an {name} {v}."],
    },
    "fr": {
        "EMAIL": [
            "Courriel : {v}",
            "Écrivez-nous à {v}.",
            "Adresse e-mail : {v}",
            "Merci de répondre à {v}.",
        ],
        "PHONE": [
            "Téléphone : {v}",
            "Tél. : {v}",
            "Vous pouvez me joindre au {v}.",
            "Portable : {v}",
            "Appelez le {v} pour confirmer.",
            "{name} est joignable au {v}.",
        ],
        "CREDIT_CARD": [
            "Carte bancaire : {v}",
            "Veuillez débiter ma carte {v}.",
            "Paiement refusé pour la carte {v}.",
        ],
        "IBAN": [
            "IBAN : {v}",
            "Merci de virer le montant sur le compte {v}.",
            "RIB / IBAN : {v}",
            "Coordonnées bancaires de {company} : {v}",
        ],
        "IP_ADDRESS": ["Connexion depuis {v} bloquée.", "Adresse IP : {v}", "La requête provient de {v}."],
        "PAREN": ["Contact : {name} {v}", "Adressez-vous à {name} {v}."],
    },
    "it": {
        "EMAIL": [
            "Email: {v}",
            "Scrivete a {v}.",
            "Posta elettronica: {v}",
            "Per informazioni contattare {v}.",
        ],
        "PHONE": [
            "Telefono: {v}",
            "Tel.: {v}",
            "Cellulare: {v}",
            "Mi può chiamare al {v}.",
            "Per urgenze chiamare il {v}.",
            "{name} risponde al {v}.",
        ],
        "CREDIT_CARD": [
            "Carta di credito: {v}",
            "Addebitare sulla carta {v}.",
            "Pagamento rifiutato per la carta {v}.",
        ],
        "IBAN": ["IBAN: {v}", "Effettuare il bonifico su {v}.", "Coordinate bancarie di {company}: {v}"],
        "IP_ADDRESS": ["Accesso da {v} bloccato.", "Indirizzo IP: {v}", "La richiesta proviene da {v}."],
        "PAREN": ["Referente: {name} {v}", "Rivolgersi a {name} {v}."],
    },
    "nl": {
        "EMAIL": ["E-mail: {v}", "Mail ons via {v}.", "Stuur de factuur naar {v}.", "Contact: {v}"],
        "PHONE": [
            "Telefoon: {v}",
            "Tel.: {v}",
            "Mobiel: {v}",
            "U kunt mij bereiken op {v}.",
            "Bel {v} voor een afspraak.",
            "{name} is bereikbaar op {v}.",
        ],
        "CREDIT_CARD": [
            "Creditcard: {v}",
            "Graag afschrijven van kaart {v}.",
            "Betaling met kaart {v} geweigerd.",
        ],
        "IBAN": [
            "IBAN: {v}",
            "Gelieve het bedrag over te maken naar {v}.",
            "Rekeningnummer: {v}",
            "Bankgegevens van {company}: {v}",
        ],
        "IP_ADDRESS": ["Inlog vanaf {v} geblokkeerd.", "IP-adres: {v}", "Het verzoek kwam van {v}."],
        "PAREN": ["Contactpersoon: {name} {v}", "Vraag naar {name} {v}."],
    },
    "es": {
        "EMAIL": [
            "Correo: {v}",
            "Escríbanos a {v}.",
            "Correo electrónico: {v}",
            "Envíe la factura a {v}.",
        ],
        "PHONE": [
            "Teléfono: {v}",
            "Tel.: {v}",
            "Móvil: {v}",
            "Puede llamarme al {v}.",
            "Llame al {v} para confirmar.",
            "{name} atiende en el {v}.",
        ],
        "CREDIT_CARD": [
            "Tarjeta de crédito: {v}",
            "Cargue el importe a la tarjeta {v}.",
            "Pago rechazado con la tarjeta {v}.",
        ],
        "IBAN": [
            "IBAN: {v}",
            "Realice la transferencia a {v}.",
            "Cuenta bancaria: {v}",
            "Datos bancarios de {company}: {v}",
        ],
        "IP_ADDRESS": ["Acceso desde {v} bloqueado.", "Dirección IP: {v}", "La solicitud procede de {v}."],
        "PAREN": ["Contacto: {name} {v}", "Pregunte por {name} {v}."],
    },
}

CALL_WORD = {"en": "call", "de": "Tel.", "fr": "tél.", "it": "tel.", "nl": "tel.", "es": "tel."}

SIGNATURE_LABELS: dict[str, dict[str, str]] = {
    "en": {"EMAIL": "Email", "PHONE": "Tel", "IBAN": "IBAN"},
    "de": {"EMAIL": "E-Mail", "PHONE": "Tel.", "IBAN": "IBAN"},
    "fr": {"EMAIL": "Courriel", "PHONE": "Tél.", "IBAN": "IBAN"},
    "it": {"EMAIL": "Email", "PHONE": "Tel.", "IBAN": "IBAN"},
    "nl": {"EMAIL": "E-mail", "PHONE": "Tel.", "IBAN": "IBAN"},
    "es": {"EMAIL": "Correo", "PHONE": "Tel.", "IBAN": "IBAN"},
}

GREETING = {
    "en": ["Hi {name},", "Dear {name},", "Hello,"],
    "de": ["Hallo {name},", "Sehr geehrte Damen und Herren,", "Guten Tag,"],
    "fr": ["Bonjour {name},", "Madame, Monsieur,", "Bonjour,"],
    "it": ["Ciao {name},", "Gentile {name},", "Buongiorno,"],
    "nl": ["Hoi {name},", "Beste {name},", "Geachte heer/mevrouw,"],
    "es": ["Hola {name},", "Estimado/a {name}:", "Buenos días,"],
}

JSON_KEYS: dict[str, list[str]] = {
    "EMAIL": ["email", "contact_email", "to", "reply_to", "customerEmail"],
    "PHONE": ["phone", "telephone", "mobile", "phone_number", "contactPhone"],
    "CREDIT_CARD": ["card_number", "pan", "cardNumber"],
    "IBAN": ["iban", "payout_iban", "bankAccount"],
    "IP_ADDRESS": ["ip", "client_ip", "remote_addr", "sourceIp"],
    "SSN": ["ssn", "social_security_number", "taxpayerId"],
}

CSV_HEADERS: dict[str, dict[str, str]] = {
    "en": {"name": "name", "EMAIL": "email", "PHONE": "phone", "CREDIT_CARD": "card_number", "IBAN": "iban",
           "IP_ADDRESS": "ip_address", "SSN": "ssn", "city": "city", "amount": "amount", "date": "date"},
    "de": {"name": "Name", "EMAIL": "E-Mail", "PHONE": "Telefon", "CREDIT_CARD": "Kartennummer", "IBAN": "IBAN",
           "IP_ADDRESS": "IP-Adresse", "city": "Ort", "amount": "Betrag", "date": "Datum"},
    "fr": {"name": "Nom", "EMAIL": "Courriel", "PHONE": "Téléphone", "CREDIT_CARD": "Numéro de carte",
           "IBAN": "IBAN", "IP_ADDRESS": "Adresse IP", "city": "Ville", "amount": "Montant", "date": "Date"},
    "it": {"name": "Nome", "EMAIL": "Email", "PHONE": "Telefono", "CREDIT_CARD": "Numero carta", "IBAN": "IBAN",
           "IP_ADDRESS": "Indirizzo IP", "city": "Città", "amount": "Importo", "date": "Data"},
    "nl": {"name": "Naam", "EMAIL": "E-mail", "PHONE": "Telefoon", "CREDIT_CARD": "Kaartnummer", "IBAN": "IBAN",
           "IP_ADDRESS": "IP-adres", "city": "Plaats", "amount": "Bedrag", "date": "Datum"},
    "es": {"name": "Nombre", "EMAIL": "Correo", "PHONE": "Teléfono", "CREDIT_CARD": "Número de tarjeta",
           "IBAN": "IBAN", "IP_ADDRESS": "Dirección IP", "city": "Ciudad", "amount": "Importe", "date": "Fecha"},
}  # fmt: skip

DATE_FORMAT = {
    "en_US": "%m/%d/%Y",
    "en_GB": "%d/%m/%Y",
    "de_DE": "%d.%m.%Y",
    "fr_FR": "%d/%m/%Y",
    "it_IT": "%d/%m/%Y",
    "nl_NL": "%d-%m-%Y",
    "es_ES": "%d/%m/%Y",
}

CARD_BRANDS: list[tuple[str, list[list[int]]]] = [
    ("visa16", [[4, 4, 4, 4]]),
    ("mastercard", [[4, 4, 4, 4]]),
    ("amex", [[4, 6, 5], [4, 4, 4, 3]]),
    ("visa13", [[4, 4, 4, 1]]),
    ("discover", [[4, 4, 4, 4]]),
    ("diners", [[4, 6, 4]]),
    ("jcb16", [[4, 4, 4, 4]]),
    ("jcb15", [[4, 6, 5]]),
    ("maestro", [[4, 4, 4]]),
    ("visa19", [[4, 4, 4, 4, 3]]),
    ("visa16", [[4, 4, 4, 4]]),
    ("mastercard", [[4, 4, 4, 4]]),
]

IT_CITIES: list[str] = sorted(ItalianAddresses.cities)

# Fixed bounds: faker's defaults are relative to today, which would change the corpus every day.
EPOCH_START = datetime(2019, 1, 1, tzinfo=UTC)
EPOCH_END = datetime(2025, 6, 30, tzinfo=UTC)


class PIIWriter:
    """Draws the values and writes the cases of one locale."""

    def __init__(self, locale: str, seed: int) -> None:
        self.locale = locale
        self.lang = LANG[locale]
        self.rng = random.Random(seed)
        self.fake = Faker(locale)
        self.fake.seed_instance(seed)
        self.prose = Faker(PROSE_LOCALE.get(locale, locale))
        self.prose.seed_instance(seed + 1)
        self.us = Faker("en_US")
        self.us.seed_instance(seed + 2)

    # ------------------------------------------------------------ values

    def city(self) -> str:
        if self.locale == "it_IT":  # faker's it_IT city list comes from a set, ordered by PYTHONHASHSEED
            return self.fake.random_element(IT_CITIES)
        return self.fake.city()

    def sentence(self) -> str:
        return self.prose.sentence(nb_words=self.rng.randint(5, 11))

    def national_phone(self) -> str:
        while True:
            number = self.fake.phone_number()
            if self.locale in ("de_DE", "nl_NL"):
                digits_only = re.sub(r"\D", "", number)
                code = COUNTRY_CODE[self.locale]
                national = digits_only[len(code) :] if number.startswith("+") else digits_only
                national = national.removeprefix("0")
                if national.startswith("0"):
                    continue  # a "0" after the trunk prefix is no area code
            return number

    def nanp(self) -> tuple[str, str, str]:
        def part() -> str:
            while True:
                value = str(self.rng.randint(2, 9)) + rand_str(self.rng, string.digits, 2)
                if value[1:] != "11":
                    return value

        return part(), part(), rand_str(self.rng, string.digits, 4)

    def intl_phone(self) -> str:
        """The locale's number in international form, with ``+`` or ``00``."""
        code = COUNTRY_CODE[self.locale]
        prefix = self.rng.choice(["+", "00"])
        if self.locale == "en_GB" and self.rng.random() < 0.4:
            national = self.rng.choice(["20 7946 0", "7700 900", "161 496 0", "117 496 0"])
            return f"{prefix}{code} {national}{rand_str(self.rng, string.digits, 3)}"
        while True:
            number = self.national_phone()
            if "(" in number:
                continue
            if number.startswith("+" + code):
                rest = number[1 + len(code) :].lstrip(" -")
                if rest and rest[0].isdigit():
                    return f"{prefix}{code} {rest}"
                continue
            if self.locale == "it_IT":
                return f"{prefix}{code} {number}"
            if self.locale == "es_ES" or not number.startswith("0"):
                return f"{prefix}{code} {number}"
            return f"{prefix}{code} {number[1:]}"

    def us_phone(self) -> str:
        area, exchange, line = self.nanp()
        forms = [
            f"({area}) {exchange}-{line}",
            f"+1 {area} {exchange} {line}",
            f"{area}{exchange}{line}",
            f"1-{area}-{exchange}-{line}",
            f"+1 ({area}) {exchange}-{line}",
            f"{area}-{exchange}-{line}x{digits(self.rng, self.rng.randint(2, 5))}",
            f"{area}.{exchange}.{line}",
        ]
        return self.rng.choice(forms)

    def phone(self, ctx: str) -> tuple[Pieces, bool]:
        r = self.rng.random()
        if self.locale == "en_US":
            number = self.fake.phone_number() if r < 0.5 else self.us_phone()
        elif r < 0.65:
            number = self.national_phone()
        else:
            number = self.intl_phone()
        if ctx == "prose" and not number.startswith("(") and self.rng.random() < 0.2:
            if self.rng.random() < 0.5:
                return [lit(f"({CALL_WORD[self.lang]} "), ("PHONE", number), lit(")")], True
            return [lit("("), ("PHONE", number), lit(")")], True
        return [("PHONE", number)], False

    def email(self, ctx: str) -> Pieces:
        address = self.rng.choice([self.fake.email, self.fake.free_email, self.fake.company_email])()
        if ctx == "prose":
            r = self.rng.random()
            if r < 0.15:
                return [lit("<"), ("EMAIL", address), lit(">")]
            if r < 0.3:
                return [lit(f"{self.fake.name()} <"), ("EMAIL", address), lit(">")]
            if r < 0.4:
                return [lit("[" + self.fake.word() + "](mailto:"), ("EMAIL", address), lit(")")]
            if r < 0.5:
                return [lit('<a href="mailto:'), ("EMAIL", address), lit('">'), ("EMAIL", address), lit("</a>")]
        if ctx == "log" and self.rng.random() < 0.3:
            return [lit("<"), ("EMAIL", address), lit(">")]
        return [("EMAIL", address)]

    def card(self) -> Pieces:
        brand, groupings = self.rng.choice(CARD_BRANDS)
        number = self.fake.credit_card_number(card_type=brand)
        while number.startswith("0"):  # faker's Maestro ranges include 0604, which no issuer uses
            number = self.fake.credit_card_number(card_type=brand)
        if not luhn_ok(number):
            raise AssertionError(f"faker wrote a Luhn-invalid {brand} number {number}")
        separator = self.rng.choice(["", " ", " ", "-"])
        grouping = self.rng.choice(groupings)
        if separator and sum(grouping) == len(number):
            groups, at = [], 0
            for size in grouping:
                groups.append(number[at : at + size])
                at += size
            number = separator.join(groups)
        return [("CREDIT_CARD", number)]

    def iban(self) -> Pieces:
        value = self.fake.iban()
        if not iban_ok(value):
            raise AssertionError(f"faker wrote an invalid IBAN {value}")
        if self.rng.random() < 0.6:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return [("IBAN", value)]

    def ipv6(self) -> str:
        while True:
            groups = self.fake.ipv6().split(":")
            if self.rng.random() < 0.6:
                start = self.rng.randint(2, 5)
                for index in range(start, start + self.rng.randint(1, 3)):
                    groups[index] = "0"
            address = ipaddress.IPv6Address(":".join(groups))
            if not (address.is_loopback or address.is_unspecified):
                return address.compressed if self.rng.random() < 0.8 else ":".join(groups)

    def ip(self, ctx: str) -> Pieces:
        r = self.rng.random()
        private = 0.35 if ctx == "log" else 0.1
        if r < private:
            address = self.fake.ipv4_private()
        elif r < 0.7:
            address = self.fake.ipv4_public()
        else:
            address = self.ipv6()
        if ctx == "log" and self.rng.random() < 0.25:
            port = str(self.rng.randint(1024, 65535))
            if ":" in address:
                return [lit("["), ("IP_ADDRESS", address), lit(f"]:{port}")]
            return [("IP_ADDRESS", address), lit(f":{port}")]
        return [("IP_ADDRESS", address)]

    def ssn(self) -> Pieces:
        value = self.us.ssn()
        area, group, serial = value.split("-")
        if area in ("000", "666") or area >= "900" or group == "00" or serial == "0000":
            raise AssertionError(f"faker wrote an invalid SSN {value}")
        if self.rng.random() < 0.3:
            value = value.replace("-", " ")
        return [("SSN", value)]

    def value(self, kind: str, ctx: str) -> tuple[Pieces, bool]:
        if kind == "PHONE":
            return self.phone(ctx)
        if kind == "EMAIL":
            return self.email(ctx), False
        if kind == "CREDIT_CARD":
            return self.card(), False
        if kind == "IBAN":
            return self.iban(), False
        if kind == "IP_ADDRESS":
            return self.ip(ctx), False
        return self.ssn(), False

    def slots(self, value: Pieces) -> dict[str, Pieces | str]:
        return {"v": value, "name": self.fake.name(), "company": self.fake.company()}

    # ------------------------------------------------------------ styles

    def prose_case(self, kinds: list[str]) -> Pieces:
        clauses = CLAUSES[self.lang]
        if set(kinds) <= {"EMAIL", "PHONE", "IBAN"} and self.rng.random() < 0.3:
            labels = SIGNATURE_LABELS[self.lang]
            lines: list[Pieces] = [[lit(self.sentence())], [lit("")], [lit("-- ")], [lit(self.fake.name())]]
            if self.rng.random() < 0.5:
                lines.append([lit(self.fake.company())])
            for kind in kinds:
                lines.append([lit(f"{labels[kind]}: "), *self.value(kind, "field")[0]])
            return join(lines, "\n")
        parts: list[Pieces] = []
        for kind in kinds:
            value, wrapped = self.value(kind, "prose")
            template = self.rng.choice(clauses["PAREN"] if wrapped else clauses[kind])
            parts.append(render(template, self.slots(value)))
        for _ in range(self.rng.randint(0, 2)):
            parts.insert(self.rng.randint(0, len(parts)), [lit(self.sentence())])
        if self.rng.random() < 0.25:
            parts.insert(0, [lit(self.rng.choice(GREETING[self.lang]).format(name=self.fake.first_name()))])
            return join(parts, "\n")
        return join(parts, self.rng.choice([" ", " ", "\n"]))

    def json_value(self, value: Any, indent: int | None, level: int) -> Pieces:
        if isinstance(value, dict):
            if not value:
                return [lit("{}")]
            items = [[lit(json.dumps(key, ensure_ascii=False) + ": "), *self.json_value(item, indent, level + 1)]
                     for key, item in value.items()]  # fmt: skip
            if indent is None:
                return [lit("{"), *join(items, ", "), lit("}")]
            pad, inner = " " * (indent * level), " " * (indent * (level + 1))
            return [lit("{\n" + inner), *join(items, ",\n" + inner), lit("\n" + pad + "}")]
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            out: Pieces = [lit('"')]
            for kind, text in value:
                escaped = json.dumps(text, ensure_ascii=False)[1:-1]
                if kind is not None and escaped != text:
                    raise AssertionError(f"{text!r} changes in JSON")
                out.append((kind, escaped))
            return [*out, lit('"')]
        if isinstance(value, list):
            inner_items = [self.json_value(item, indent, level + 1) for item in value]
            if indent is None:
                return [lit("["), *join(inner_items, ", "), lit("]")]
            pad, inner = " " * (indent * level), " " * (indent * (level + 1))
            return [lit("[\n" + inner), *join(inner_items, ",\n" + inner), lit("\n" + pad + "]")]
        return [lit(json.dumps(value, ensure_ascii=False))]

    def json_case(self, kinds: list[str]) -> Pieces:
        fields: dict[str, Any] = {"name": [lit(self.fake.name())]}
        note: Pieces | None = None
        for index, kind in enumerate(kinds):
            if index == len(kinds) - 1 and len(kinds) > 1 and self.rng.random() < 0.35:
                value, wrapped = self.value(kind, "prose")
                note = render(self.rng.choice(CLAUSES[self.lang]["PAREN" if wrapped else kind]), self.slots(value))
                continue
            key = self.rng.choice(JSON_KEYS[kind])
            while key in fields:
                key += "_2"
            fields[key] = self.value(kind, "field")[0]
        if self.rng.random() < 0.4:
            fields["city"] = [lit(self.city())]
        if note is not None:
            fields["note"] = note
        shape = self.rng.randrange(4)
        indent = self.rng.choice([None, None, 2])
        document: dict[str, Any]
        if shape == 0:
            tool = self.rng.choice(["create_contact", "update_customer", "send_invoice", "lookup_account"])
            document = {
                "jsonrpc": "2.0",
                "id": self.rng.randint(1, 999),
                "method": "tools/call",
                "params": {"name": tool, "arguments": fields},
            }
        elif shape == 1:
            text_pieces = join([[lit(f"{key}: "), *value] for key, value in fields.items()], "\n")
            document = {
                "jsonrpc": "2.0",
                "id": self.rng.randint(1, 999),
                "result": {"content": [{"type": "text", "text": text_pieces}], "isError": False},
            }
        elif shape == 2:
            document = {
                "id": self.rng.randint(10_000, 99_999_999),
                **fields,
                "created_at": self.moment().strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        else:
            document = {"customer": {"name": fields.pop("name"), "contact": fields}, "status": "active"}
        return self.json_value(document, indent, 0)

    def moment(self) -> datetime:
        return self.fake.date_time_between(start_date=EPOCH_START, end_date=EPOCH_END, tzinfo=UTC)

    def timestamp(self) -> str:
        moment = self.moment()
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def log_case(self, kinds: list[str]) -> Pieces:
        rng = self.rng
        if kinds == ["IP_ADDRESS"] and rng.random() < 0.5:
            address = self.ip("field")
            if rng.random() < 0.5:
                moment = self.moment().strftime("%b %d %H:%M:%S").replace(" 0", "  ")
                user = rng.choice(["deploy", "root", "ubuntu", self.fake.user_name()])
                return [
                    lit(f"{moment} web{rng.randint(1, 9):02d} sshd[{rng.randint(1000, 99999)}]: "
                        f"{rng.choice(['Accepted publickey', 'Failed password'])} for {user} from "),
                    *address,
                    lit(f" port {rng.randint(1024, 65535)} ssh2"),
                ]  # fmt: skip
            moment = self.moment().strftime("%d/%b/%Y:%H:%M:%S +0000")
            path = rng.choice(["/api/v1/orders", "/login", "/static/app.js", "/mcp", "/health"])
            return [
                *address,
                lit(f' - - [{moment}] "{rng.choice(["GET", "POST"])} {path} HTTP/1.1" '
                    f'{rng.choice([200, 200, 304, 401, 404])} {rng.randint(0, 50000)} "-" "{self.fake.user_agent()}"'),
            ]  # fmt: skip
        if set(kinds) <= {"EMAIL", "IP_ADDRESS"} and "EMAIL" in kinds and rng.random() < 0.4:
            host = self.fake.domain_name()
            pieces: Pieces = [
                lit(f"{self.moment().strftime('%b %d %H:%M:%S')} mail postfix/smtp"
                    f"[{rng.randint(1000, 99999)}]: {rand_str(rng, '0123456789ABCDEF', 10)}: to=<"),
                ("EMAIL", self.fake.email()),
                lit(">"),
            ]  # fmt: skip
            if "IP_ADDRESS" in kinds:
                pieces += [lit(f", relay=mx.{host}["), ("IP_ADDRESS", self.fake.ipv4_public()), lit("]:25")]
            else:
                pieces.append(lit(", relay=local"))
            return [*pieces, lit(f", delay=0.{rng.randint(10, 99)}, status=sent (250 2.0.0 OK)")]
        level = rng.choice(["INFO", "INFO", "WARN", "DEBUG", "ERROR"])
        logger = rng.choice(["api.auth", "billing.worker", "mcp.gateway", "crm.sync", "notify"])
        message = rng.choice(
            ["request handled", "login succeeded", "payment initiated", "profile updated", "webhook received"]
        )
        keys = {
            "EMAIL": ["email", "user", "to"],
            "PHONE": ["phone", "msisdn", "sms_to"],
            "CREDIT_CARD": ["card", "pan"],
            "IBAN": ["iban", "account"],
            "IP_ADDRESS": ["ip", "client", "remote_addr", "src"],
            "SSN": ["ssn"],
        }
        pairs: list[Pieces] = [[lit(f"request_id={uuid.UUID(int=rng.getrandbits(128), version=4)}")]]
        for kind in kinds:
            value = self.value(kind, "log")[0]
            quote = '"' if any(" " in text for _, text in value) else ""
            pairs.append([lit(f"{rng.choice(keys[kind])}={quote}"), *value, lit(quote)])
        if rng.random() < 0.3:
            pairs.append([lit(f"duration_ms={rng.randint(1, 900)}")])
        line = [lit(f"{self.timestamp()} {level:<5} [{logger}] {message} "), *join(pairs, " ")]
        if rng.random() < 0.25:
            line = [lit(f"{self.timestamp()} INFO  [{logger}] worker started pid={rng.randint(100, 99999)}\n"), *line]
        return line

    def csv_case(self, kinds: list[str]) -> Pieces:
        headers = CSV_HEADERS[self.lang]
        delimiter = "," if self.lang == "en" else self.rng.choice([";", ";", ","])
        columns = ["name", *kinds, self.rng.choice(["city", "amount", "date"])]
        rows: list[Pieces] = [[lit(delimiter.join(headers.get(column, column.lower()) for column in columns))]]
        for _ in range(self.rng.randint(1, 2)):
            cells: list[Pieces] = []
            for column in columns:
                if column == "name":
                    cell: Pieces = [lit(self.fake.name())]
                elif column == "city":
                    cell = [lit(self.city())]
                elif column == "amount":
                    amount = self.rng.randint(100, 999_999) / 100
                    text = f"{amount:,.2f}"
                    if self.lang != "en":
                        text = text.replace(",", " ").replace(".", ",").replace(" ", ".")
                    cell = [lit(text)]
                elif column == "date":
                    cell = [lit(self.moment().strftime(DATE_FORMAT[self.locale]))]
                else:
                    cell = self.value(column, "field")[0]
                if any(delimiter in text or '"' in text for _, text in cell):
                    cell = [lit('"'), *cell, lit('"')]
                cells.append(cell)
            rows.append(join(cells, delimiter))
        return join(rows, "\n")

    def positives(self, count: int) -> list[Case]:
        kinds_here = [kind for kind in PII_TYPES if kind != "SSN" or self.locale == "en_US"]
        primary = ["PHONE", "EMAIL", "PHONE", "IBAN", "CREDIT_CARD", "IP_ADDRESS", "EMAIL"]
        if self.locale == "en_US":
            primary.append("SSN")
        styles = ["prose"] * 8 + ["json"] * 5 + ["log"] * 4 + ["csv"] * 3
        cases = []
        for index in range(count):
            kinds = [primary[index % len(primary)]]
            for _ in range(self.rng.choice([0, 0, 1, 1, 2])):
                extra = self.rng.choice(kinds_here)
                if extra not in kinds:
                    kinds.append(extra)
            style = styles[index % len(styles)]
            builder = {"prose": self.prose_case, "json": self.json_case, "log": self.log_case, "csv": self.csv_case}
            text, spans = assemble(builder[style](kinds))
            if style == "json":
                json.loads(text)
            cases.append(
                {
                    "id": f"pii-{self.locale}-{index:04d}",
                    "locale": self.locale,
                    "style": style,
                    "text": text,
                    "spans": spans,
                }
            )
        return cases

    # ------------------------------------------------------------ hard negatives

    def negatives(self, count: int) -> list[Case]:
        makers = negative_makers()
        cases = []
        order = list(range(len(makers)))
        for index in range(count):
            if index % len(makers) == 0:
                self.rng.shuffle(order)
            style, snippet = makers[order[index % len(makers)]](self)
            if style == "prose" and self.rng.random() < 0.6:
                parts = [self.sentence(), snippet]
                if self.rng.random() < 0.5:
                    parts.append(self.sentence())
                snippet = " ".join(parts) if self.rng.random() < 0.7 else "\n".join(parts)
            if style == "json":
                json.loads(snippet)
            cases.append(
                {
                    "id": f"pii-{self.locale}-negative-{index:04d}",
                    "locale": self.locale,
                    "style": style,
                    "text": snippet,
                    "spans": [],
                }
            )
        return cases


NEGATIVE_WORDS: dict[str, dict[str, str]] = {
    "en": {"order": "Order number", "invoice": "Invoice", "date": "Appointment on {d} at {t}.",
           "zip": "ZIP code", "total": "Total", "weight": "Weight", "ref": "Reference",
           "tracking": "Tracking number", "coords": "Coordinates", "isbn": "ISBN", "version": "Version"},
    "de": {"order": "Bestellnummer", "invoice": "Rechnung Nr.", "date": "Termin am {d} um {t} Uhr.",
           "zip": "PLZ", "total": "Gesamtbetrag", "weight": "Gewicht", "ref": "Referenz",
           "tracking": "Sendungsnummer", "coords": "Koordinaten", "isbn": "ISBN", "version": "Version"},
    "fr": {"order": "Numéro de commande", "invoice": "Facture n°", "date": "Rendez-vous le {d} à {t}.",
           "zip": "Code postal", "total": "Total TTC", "weight": "Poids", "ref": "Référence",
           "tracking": "Numéro de suivi", "coords": "Coordonnées", "isbn": "ISBN", "version": "Version"},
    "it": {"order": "Numero d'ordine", "invoice": "Fattura n.", "date": "Appuntamento il {d} alle {t}.",
           "zip": "CAP", "total": "Totale", "weight": "Peso", "ref": "Riferimento",
           "tracking": "Numero di spedizione", "coords": "Coordinate", "isbn": "ISBN", "version": "Versione"},
    "nl": {"order": "Bestelnummer", "invoice": "Factuur nr.", "date": "Afspraak op {d} om {t}.",
           "zip": "Postcode", "total": "Totaal", "weight": "Gewicht", "ref": "Referentie",
           "tracking": "Trackingnummer", "coords": "Coördinaten", "isbn": "ISBN", "version": "Versie"},
    "es": {"order": "Número de pedido", "invoice": "Factura n.º", "date": "Cita el {d} a las {t}.",
           "zip": "Código postal", "total": "Total", "weight": "Peso", "ref": "Referencia",
           "tracking": "Número de seguimiento", "coords": "Coordenadas", "isbn": "ISBN", "version": "Versión"},
}  # fmt: skip

ABOUT_CONTACT: dict[str, list[str]] = {
    "en": [
        "Please enter your phone number and email address so we can confirm the booking.",
        "We will never ask for your card number or Social Security Number by email.",
        "Your IBAN is printed on the back of your bank card and on your statements.",
        "Phone numbers must include the country code; email addresses are checked for typos.",
        "The form rejects an IP address that is not in the allowed range.",
    ],
    "de": [
        "Bitte geben Sie Ihre Telefonnummer und E-Mail-Adresse an, damit wir den Termin bestätigen können.",
        "Wir fragen niemals per E-Mail nach Ihrer Kreditkartennummer.",
        "Ihre IBAN finden Sie auf Ihrem Kontoauszug.",
        "Die Telefonnummer muss mit Vorwahl angegeben werden.",
    ],
    "fr": [
        "Veuillez indiquer votre numéro de téléphone et votre adresse e-mail pour confirmer la réservation.",
        "Nous ne vous demanderons jamais votre numéro de carte bancaire par courriel.",
        "Votre IBAN figure sur votre relevé d'identité bancaire.",
        "Le numéro de téléphone doit comporter l'indicatif du pays.",
    ],
    "it": [
        "Inserisci il tuo numero di telefono e il tuo indirizzo email per confermare la prenotazione.",
        "Non ti chiederemo mai il numero della carta di credito via email.",
        "Il tuo IBAN è indicato nell'estratto conto.",
        "Il numero di telefono deve includere il prefisso internazionale.",
    ],
    "nl": [
        "Vul uw telefoonnummer en e-mailadres in zodat wij de afspraak kunnen bevestigen.",
        "Wij vragen nooit per e-mail om uw creditcardnummer.",
        "Uw IBAN staat op uw bankafschrift.",
        "Het telefoonnummer moet met landcode worden ingevuld.",
    ],
    "es": [
        "Introduzca su número de teléfono y su correo electrónico para confirmar la reserva.",
        "Nunca le pediremos el número de su tarjeta por correo electrónico.",
        "Su IBAN aparece en el extracto bancario.",
        "El número de teléfono debe incluir el prefijo del país.",
    ],
}

PRICE_FORMAT = {
    "en_US": "${a}",
    "en_GB": "£{a}",
    "de_DE": "{a} €",
    "fr_FR": "{a} €",
    "it_IT": "€ {a}",
    "nl_NL": "€ {a}",
    "es_ES": "{a} €",
}

NegativeMaker = Callable[[PIIWriter], tuple[str, str]]


def _amount(writer: PIIWriter) -> str:
    value = writer.rng.randint(100, 9_999_999) / 100
    text = f"{value:,.2f}"
    if writer.lang == "en":
        return text
    thousands = "\u202f" if writer.locale == "fr_FR" else "."
    return text.replace(",", " ").replace(".", ",").replace(" ", thousands)


def _quad(writer: PIIWriter) -> str:
    rng = writer.rng
    return f"{rng.randint(1, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 9999)}.{rng.randint(0, 300)}"


def _luhn_invalid(writer: PIIWriter, length: int = 16) -> str:
    while True:
        number = digits(writer.rng, length)
        if not luhn_ok(number):
            return number


def negative_makers() -> list[NegativeMaker]:
    def w(writer: PIIWriter, key: str) -> str:
        return NEGATIVE_WORDS[writer.lang][key]

    def assembly(x: PIIWriter) -> tuple[str, str]:
        return "code", f'[assembly: AssemblyVersion("{_quad(x)}")]\n[assembly: AssemblyFileVersion("{_quad(x)}")]'

    def pip_pin(x: PIIWriter) -> tuple[str, str]:
        pins = [f"requests==2.{x.rng.randint(20, 32)}.0", f"{x.fake.word()}-client=={_quad(x)}", "urllib3>=2,<3"]
        return "code", "\n".join(pins)

    def version_tag(x: PIIWriter) -> tuple[str, str]:
        return "prose", f"{w(x, 'version')} v{_quad(x)} (build {x.rng.randint(1000, 99999)})."

    def user_agent(x: PIIWriter) -> tuple[str, str]:
        chrome = f"{x.rng.randint(100, 126)}.0.{x.rng.randint(4000, 6999)}.{x.rng.randint(10, 250)}"
        ua = (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{chrome} Safari/537.36"
        )
        moment = x.moment().strftime("%d/%b/%Y:%H:%M:%S +0000")
        return "log", f'127.0.0.1 - - [{moment}] "GET /health HTTP/1.1" 200 2 "-" "{ua}"'

    def oid(x: PIIWriter) -> tuple[str, str]:
        arcs = ".".join(str(x.rng.randint(1, 30)) for _ in range(x.rng.randint(2, 4)))
        return x.rng.choice(
            [
                ("prose", f"Enhanced Key Usage: 1.3.6.1.4.1.311.{arcs} (Microsoft) and 1.3.6.1.5.5.7.3.1."),
                ("log", f"snmpget -v2c -c public localhost 1.3.6.1.2.1.{arcs}.0"),
            ]
        )

    def loopback(x: PIIWriter) -> tuple[str, str]:
        port = x.rng.choice([80, 443, 3000, 5432, 6379, 8000, 8080, 9090])
        return x.rng.choice(
            [
                ("log", f"{x.timestamp()} INFO  uvicorn running on http://0.0.0.0:{port} (Press CTRL+C to quit)"),
                ("log", f"{x.timestamp()} INFO  listening on [::]:{port} and 127.0.0.1:{port + 1}"),
                ("code", f"listen [::]:{port} ipv6only=on;\nlisten 0.0.0.0:{port};\nallow 127.0.0.1;\nallow ::1;"),
                ("json", json.dumps({"bind": "0.0.0.0", "port": port, "health": f"http://127.0.0.1:{port}/health"})),
                ("log", f'psql: error: connection to server at "::1", port {port} failed: Connection refused'),
            ]
        )

    def git_remote(x: PIIWriter) -> tuple[str, str]:
        org, repo = x.fake.user_name(), x.fake.word()
        return x.rng.choice(
            [
                ("code", f"git clone git@github.com:{org}/{repo}.git"),
                ("code", f"git remote add origin ssh://git@gitlab.{x.fake.domain_name()}:2222/{org}/{repo}.git"),
                ("log", f"Cloning into '{repo}'...\ngit@bitbucket.org: Permission denied (publickey)."),
            ]
        )

    def npm(x: PIIWriter) -> tuple[str, str]:
        return x.rng.choice(
            [
                ("code", f"npm install --save-dev @types/node@20.{x.rng.randint(1, 14)}.5 @babel/core@7.24.0"),
                ("json", json.dumps({"devDependencies": {"@types/node": "^20.11.5", "@babel/core": "7.24.0"}})),
                ("code", "import { Component } from '@angular/core';\nimport type { Config } from '@jest/types';"),
            ]
        )

    def decorator(x: PIIWriter) -> tuple[str, str]:
        route = x.fake.uri_path()
        return "code", f"@app.route('/{route}', methods=['GET'])\n@login_required\ndef view():\n    return render()"

    def asset(x: PIIWriter) -> tuple[str, str]:
        name = x.fake.word()
        return "code", f'<img src="/static/{name}@2x.png" srcset="/static/{name}@3x.png 3x" alt="{name}">'

    def dates(x: PIIWriter) -> tuple[str, str]:
        moment = x.moment()
        local = moment.strftime(DATE_FORMAT[x.locale])
        time = moment.strftime("%H:%M") if x.locale != "en_US" else moment.strftime("%I:%M %p")
        return x.rng.choice(
            [
                ("prose", w(x, "date").format(d=local, t=time)),
                ("log", f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} INFO  job finished at {local} {time}"),
                ("csv", f"date;time;status\n{local};{moment.strftime('%H:%M:%S')};ok"),
            ]
        )

    def order(x: PIIWriter) -> tuple[str, str]:
        rng = x.rng
        number = rng.choice(
            [
                f"{digits(rng, 3)}-{digits(rng, 7)}-{digits(rng, 7)}",
                f"ORD-{x.moment().strftime('%Y%m%d')}-{digits(rng, 5)}",
                f"#{digits(rng, 9)}",
            ]
        )
        return "prose", f"{w(x, 'order')}: {number}"

    def invoice(x: PIIWriter) -> tuple[str, str]:
        year = x.rng.randint(2019, 2025)
        number = x.rng.choice([f"RE-{year}-{x.rng.randint(1, 99999):06d}", f"{year}/{x.rng.randint(1, 9999):04d}"])
        return "prose", f"{w(x, 'invoice')} {number}, {w(x, 'total')}: {PRICE_FORMAT[x.locale].format(a=_amount(x))}"

    def uuids(x: PIIWriter) -> tuple[str, str]:
        return "log", f"{x.timestamp()} INFO  request_id={x.fake.uuid4()} trace_id={x.fake.uuid4()} status=200"

    def hashes(x: PIIWriter) -> tuple[str, str]:
        digest = hashlib.sha256(x.rng.randbytes(32)).hexdigest()
        sha1 = hashlib.sha1(x.rng.randbytes(32)).hexdigest()
        return x.rng.choice(
            [
                ("log", f"Digest: sha256:{digest}\nStatus: Downloaded newer image"),
                ("prose", f"HEAD is now at {sha1[:7]} Merge pull request #{x.rng.randint(100, 9999)}"),
                ("code", f"{digest}  release.tar.gz\ncommit {sha1}"),
            ]
        )

    def isbn(x: PIIWriter) -> tuple[str, str]:
        return "prose", f"{w(x, 'isbn')} {x.fake.isbn13()} / {x.fake.isbn10()}"

    def price(x: PIIWriter) -> tuple[str, str]:
        amounts = [PRICE_FORMAT[x.locale].format(a=_amount(x)) for _ in range(2)]
        return "prose", f"{w(x, 'total')}: {amounts[0]} ({amounts[1]})"

    def measurement(x: PIIWriter) -> tuple[str, str]:
        rng = x.rng
        decimal = "." if x.lang == "en" else ","
        return "prose", (
            f"{w(x, 'weight')}: {rng.randint(1, 99)}{decimal}{rng.randint(0, 9)} kg, "
            f"{rng.randint(100, 250)} x {rng.randint(100, 250)} x {rng.randint(10, 99)} mm, 230 V, 1920x1080"
        )

    def postcode(x: PIIWriter) -> tuple[str, str]:
        return "prose", f"{w(x, 'zip')}: {x.fake.postcode()}"

    def epoch(x: PIIWriter) -> tuple[str, str]:
        ms = x.rng.randint(1_600_000_000_000, 1_760_000_000_000)
        return "json", json.dumps({"ts": ms, "expires": ms // 1000 + 3600, "seq": x.rng.randint(1, 99999)})

    def numeric_id(x: PIIWriter) -> tuple[str, str]:
        rng = x.rng
        return rng.choice(
            [
                ("log", f"{x.timestamp()} INFO  user_id: {digits(rng, 8)} account_id={digits(rng, 9)} "
                        f"pid={digits(rng, 5)}"),
                ("json", json.dumps({"user_id": int(digits(rng, 8)), "orderId": int(digits(rng, 7)), "page": 2})),
            ]
        )  # fmt: skip

    def luhn_invalid(x: PIIWriter) -> tuple[str, str]:
        number = _luhn_invalid(x)
        grouped = " ".join(number[i : i + 4] for i in range(0, 16, 4))
        return "prose", f"{w(x, 'tracking')}: {x.rng.choice([number, grouped])}"

    def ports(x: PIIWriter) -> tuple[str, str]:
        port = x.rng.choice([3000, 5000, 8000, 8080, 8443, 9200])
        return "code", f"curl -s http://localhost:{port}/api/health\nredis-cli -h localhost -p 6379 ping"

    def semver(x: PIIWriter) -> tuple[str, str]:
        deps = {"react": "^18.2.0", "lodash": "~4.17.21", "express": ">=4.18.0 <5.0.0", "typescript": "5.4.x"}
        return "json", json.dumps({"dependencies": deps, "engines": {"node": ">=18.17.0"}})

    def coordinates(x: PIIWriter) -> tuple[str, str]:
        place = x.fake.local_latlng(country_code=x.locale[-2:]) or ("48.8566", "2.3522", "", "", "")
        return "prose", f"{w(x, 'coords')}: {place[0]}, {place[1]}"

    def css(x: PIIWriter) -> tuple[str, str]:
        rgb = ", ".join(str(x.rng.randint(0, 255)) for _ in range(3))
        return "code", f".button {{ color: {x.fake.hex_color()}; background: rgb({rgb}); margin: 0 auto; }}"

    def about(x: PIIWriter) -> tuple[str, str]:
        return "prose", x.rng.choice(ABOUT_CONTACT[x.lang])

    def csv_orders(x: PIIWriter) -> tuple[str, str]:
        delimiter = "," if x.lang == "en" else ";"
        rows = [delimiter.join(["order", "date", "zip", "qty", "sku"])]
        for _ in range(2):
            amount = x.rng.randint(1, 40)
            cells = [f"ORD-{digits(x.rng, 6)}", x.moment().strftime(DATE_FORMAT[x.locale]),
                     x.fake.postcode(), str(amount), f"SKU-{x.rng.randint(1000, 9999)}"]  # fmt: skip
            rows.append(delimiter.join(f'"{cell}"' if delimiter in cell else cell for cell in cells))
        return "csv", "\n".join(rows)

    def build_numbers(x: PIIWriter) -> tuple[str, str]:
        return "prose", (
            f"Windows 10 build 19045.{x.rng.randint(1000, 4999)}, kernel 6.5.0-{x.rng.randint(10, 40)}-generic, "
            f"Chrome/{x.rng.randint(100, 126)}.0.{x.rng.randint(4000, 6999)}.{x.rng.randint(10, 250)}"
        )

    return [
        assembly, pip_pin, version_tag, user_agent, oid, loopback, git_remote, npm, decorator, asset, dates,
        order, invoice, uuids, hashes, isbn, price, measurement, postcode, epoch, numeric_id, luhn_invalid,
        ports, semver, coordinates, css, about, csv_orders, build_numbers, dates, loopback,
    ]  # fmt: skip


def pii_cases() -> list[Case]:
    positives: list[Case] = []
    negatives: list[Case] = []
    for number, locale in enumerate(LOCALES):
        writer = PIIWriter(locale, SEED + 1000 * number)
        positives += writer.positives(PII_POSITIVES_PER_LOCALE)
        negatives += writer.negatives(PII_NEGATIVES_PER_LOCALE)
    return positives + negatives


# ---------------------------------------------------------------------- secrets

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
UPPER_DIGITS = string.ascii_uppercase + string.digits

PLACEHOLDER_WORDS = ("password", "changeme", "example", "secret", "xxx", "test", "dummy", "sample", "your")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_part(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def wrap64(body: bytes, width: int = 64) -> str:
    encoded = base64.b64encode(body).decode()
    return "\n".join(encoded[i : i + width] for i in range(0, len(encoded), width))


def pem(label: str, body: bytes, width: int = 64) -> str:
    return f"-----BEGIN {label}-----\n{wrap64(body, width)}\n-----END {label}-----"


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class SecretsWriter:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fakers = {}
        for number, locale in enumerate(LOCALES):
            fake = Faker(PROSE_LOCALE.get(locale, locale))
            fake.seed_instance(seed + number + 1)
            self.fakers[locale] = fake
        self.locale = LOCALES[0]

    @property
    def fake(self) -> Faker:
        return self.fakers[self.locale]

    # ------------------------------------------------------------ values

    def private_key(self, option: str) -> str:
        """A PEM private key; ``json`` is a service account's (PKCS#8), ``indent4`` a TLS key (no OpenSSH)."""
        rng = self.rng
        if option == "json":
            kind = "PKCS8"
        elif option == "indent4":
            kind = rng.choice(["RSA", "PKCS8", "EC"])
        else:
            kind = rng.choice(["RSA", "PKCS8", "EC", "OPENSSH", "RSA", "OPENSSH"])
        if kind == "RSA":
            body = bytes.fromhex("308204a40201000282010100") + rng.randbytes(1180)
            return pem("RSA PRIVATE KEY", body)
        if kind == "PKCS8":
            head = "308204be020100300d06092a864886f70d0101010500048204a8308204a40201000282010100"
            return pem("PRIVATE KEY", bytes.fromhex(head) + rng.randbytes(1180))
        if kind == "EC":
            body = (
                bytes.fromhex("30770201010420")
                + rng.randbytes(32)
                + bytes.fromhex("a00a06082a8648ce3d030107a144034200")
                + b"\x04"
                + rng.randbytes(64)
            )
            return pem("EC PRIVATE KEY", body)
        public = rng.randbytes(32)
        public_blob = ssh_string(b"ssh-ed25519") + ssh_string(public)
        check = rng.randbytes(4)
        comment = f"{self.fake.user_name()}@{self.fake.word()}".encode()
        private = check + check + public_blob + ssh_string(rng.randbytes(32) + public) + ssh_string(comment)
        private += bytes(range(1, 1 + (-len(private)) % 8))
        body = (
            b"openssh-key-v1\x00"
            + ssh_string(b"none")
            + ssh_string(b"none")
            + ssh_string(b"")
            + struct.pack(">I", 1)
            + ssh_string(public_blob)
            + ssh_string(private)
        )
        return pem("OPENSSH PRIVATE KEY", body, width=70)

    def jwt(self) -> str:
        rng = self.rng
        alg, signature = rng.choice([("HS256", 32), ("RS256", 256), ("ES256", 64), ("HS512", 64)])
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if alg != "HS256" and rng.random() < 0.5:
            header["kid"] = rand_str(rng, B64URL, 16)
        issued = rng.randint(1_650_000_000, 1_760_000_000)
        payload = {
            "sub": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "name": self.fake.name(),
            "iat": issued,
            "exp": issued + rng.choice([900, 3600, 86400]),
        }
        if rng.random() < 0.5:
            payload["iss"] = f"https://auth.{self.fake.domain_name()}"
        return f"{jwt_part(header)}.{jwt_part(payload)}.{b64url(rng.randbytes(signature))}"

    def password(self, mode: str) -> str:
        """A password; ``mode``: ``any`` (for quoted contexts), ``plain`` (unquoted), ``url``."""
        rng = self.rng
        while True:
            r = rng.random()
            if r < 0.35:
                word = self.fake.word()
                if not word.isascii() or not word.isalpha():
                    continue
                symbol = rng.choice("!#%*+.-_@" if mode != "url" else "-._~")
                value = f"{word.capitalize()}{rng.randint(1, 9999)}{symbol}"
            elif r < 0.8:
                specials = {"any": "!#%*+-.@^_~&()=?,;:/", "plain": "!%*+-.@^_~", "url": "-._~"}[mode]
                length = rng.randint(12, 28)
                value = rand_str(rng, ALNUM, 1) + rand_str(rng, ALNUM * 3 + specials, length - 1)
            else:
                words = [word for word in (self.fake.word() for _ in range(8)) if word.isascii() and word.isalpha()]
                if len(words) < 3:
                    continue
                value = "-".join(words[: rng.randint(3, 4)]) + str(rng.randint(0, 99))
            if len(value) >= 8 and not any(word in value.lower() for word in PLACEHOLDER_WORDS):
                return value

    def generic_secret(self) -> str:
        rng = self.rng
        form = rng.randrange(4)
        if form == 0:
            return rand_str(rng, HEX, rng.choice([32, 40, 64]))
        if form == 1:
            return base64.b64encode(rng.randbytes(rng.choice([24, 32]))).decode()
        if form == 2:
            return rand_str(rng, ALNUM, rng.choice([24, 32, 40]))
        return b64url(rng.randbytes(32))

    def value(self, kind: str, option: str = "") -> str:
        rng = self.rng
        if kind == "AWS_ACCESS_KEY_ID":
            prefix = "ASIA" if option == "sts" else rng.choice(["AKIA", "AKIA", "AKIA", "ASIA"])
            return prefix + rand_str(rng, string.ascii_uppercase + "234567", 16)
        if kind == "AWS_SECRET_ACCESS_KEY":
            return rand_str(rng, B64, 40)
        if kind == "GOOGLE_API_KEY":
            return "AIza" + rand_str(rng, B64URL, 35)
        if kind == "AZURE_STORAGE_KEY":
            return base64.b64encode(rng.randbytes(64)).decode()
        if kind == "GITHUB_TOKEN":
            prefix = option or rng.choice(["ghp_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"])
            if prefix == "github_pat_":
                return prefix + rand_str(rng, ALNUM, 22) + "_" + rand_str(rng, ALNUM, 59)
            return prefix + rand_str(rng, ALNUM, 36)
        if kind == "GITLAB_TOKEN":
            return "glpat-" + rand_str(rng, B64URL, 20)
        if kind == "SLACK_TOKEN":
            form = option or rng.choice(["xoxb", "xoxb", "xoxp", "xapp"])
            if form == "xoxb":
                ids = "-".join(digits(rng, rng.randint(10, 13)) for _ in range(2))
                return f"xoxb-{ids}-{rand_str(rng, ALNUM, 24)}"
            if form == "xoxp":
                ids = "-".join(digits(rng, rng.randint(10, 13)) for _ in range(3))
                return f"xoxp-{ids}-{rand_str(rng, HEX, 32)}"
            return f"xapp-1-A{rand_str(rng, UPPER_DIGITS, 10)}-{digits(rng, 13)}-{rand_str(rng, HEX, 64)}"
        if kind == "SLACK_WEBHOOK":
            team, bot = rand_str(rng, UPPER_DIGITS, rng.randint(8, 10)), rand_str(rng, UPPER_DIGITS, rng.randint(8, 10))
            return f"https://hooks.slack.com/services/T{team}/B{bot}/{rand_str(rng, ALNUM, 24)}"
        if kind == "DISCORD_TOKEN":
            if option == "webhook":
                host = rng.choice(["discord.com", "discordapp.com"])
                return f"https://{host}/api/webhooks/{digits(rng, rng.randint(18, 19))}/{rand_str(rng, B64URL, 68)}"
            user = b64url(digits(rng, rng.randint(17, 19)).encode())
            return f"{user}.{rand_str(rng, B64URL, 6)}.{rand_str(rng, B64URL, rng.choice([27, 38]))}"
        if kind == "TELEGRAM_BOT_TOKEN":
            return f"{digits(rng, rng.randint(8, 10))}:AA{rand_str(rng, B64URL, 33)}"
        if kind == "STRIPE_KEY":
            prefix = rng.choice(["sk_live_", "sk_live_", "rk_live_", "sk_test_"])
            return prefix + rand_str(rng, ALNUM, rng.choice([24, 99]))
        if kind == "SQUARE_TOKEN":
            return rng.choice(
                [
                    "sq0atp-" + rand_str(rng, B64URL, 22),
                    "sq0csp-" + rand_str(rng, B64URL, 43),
                    "EAAA" + rand_str(rng, B64URL, 60),
                ]
            )
        if kind == "TWILIO_API_KEY":
            return "SK" + rand_str(rng, HEX, 32)
        if kind == "SENDGRID_API_KEY":
            return f"SG.{rand_str(rng, B64URL, 22)}.{rand_str(rng, B64URL, 43)}"
        if kind == "MAILGUN_API_KEY":
            return "key-" + rand_str(rng, HEX, 32)
        if kind == "OPENAI_API_KEY":
            if rng.random() < 0.5:
                return f"sk-{rand_str(rng, ALNUM, 20)}T3BlbkFJ{rand_str(rng, ALNUM, 20)}"
            prefix = rng.choice(["sk-proj-", "sk-proj-", "sk-svcacct-"])
            return f"{prefix}{rand_str(rng, B64URL, 74)}T3BlbkFJ{rand_str(rng, B64URL, 74)}"
        if kind == "ANTHROPIC_API_KEY":
            return f"sk-ant-{rng.choice(['api03', 'api03', 'admin01'])}-{rand_str(rng, B64URL, 93)}AA"
        if kind == "HUGGINGFACE_TOKEN":
            return "hf_" + rand_str(rng, string.ascii_letters, 34)
        if kind == "NPM_TOKEN":
            return "npm_" + rand_str(rng, ALNUM, 36)
        if kind == "PYPI_TOKEN":
            return "pypi-AgEIcHlwaS5vcmc" + rand_str(rng, B64URL, rng.randint(120, 180))
        if kind == "DOCKERHUB_TOKEN":
            return "dckr_pat_" + rand_str(rng, B64URL, 27)
        if kind == "SHOPIFY_TOKEN":
            return rng.choice(["shpat_", "shpca_", "shppa_", "shpss_"]) + rand_str(rng, HEX + "ABCDEF", 32)
        if kind == "PRIVATE_KEY":
            return self.private_key(option)
        if kind == "JWT":
            return self.jwt()
        if kind == "PASSWORD":
            return self.password(option or "any")
        if kind == "GENERIC_SECRET":
            return self.generic_secret()
        raise KeyError(kind)

    def fill(self, template: str) -> Pieces:
        """``template`` with ``@@TYPE@@``/``@@TYPE:option@@`` slots filled by fresh values and ``@@filler@@`` slots."""
        out: Pieces = []
        pattern = re.compile(r"@@([A-Z_]+)(?::([\w-]+))?@@|@@([a-z]\w*)@@")
        at = 0
        for match in pattern.finditer(template):
            if match.start() > at:
                out.append(lit(template[at : match.start()]))
            at = match.end()
            kind, option, filler = match.groups()
            if filler:
                out.append(lit(self.filler(filler)))
                continue
            value = self.value(kind, option or "")
            if option == "json":
                value = json.dumps(value)[1:-1]
            elif option == "indent4":
                value = value.replace("\n", "\n    ")
            out.append((kind, value))
        if at < len(template):
            out.append(lit(template[at:]))
        return out

    def filler(self, name: str) -> str:
        rng, fake = self.rng, self.fake
        if name == "sentence":
            return fake.sentence(nb_words=rng.randint(5, 10))
        if name == "user":
            return fake.user_name()
        if name == "host":
            return rng.choice(["db", "postgres", "db.internal", "10.0.4.12", "pg-primary.prod.svc", "localhost"])
        if name == "domain":
            return fake.domain_name()
        if name == "word":
            return fake.word()
        if name == "db":
            return rng.choice(["app", "orders", "analytics", "prod", "billing"])
        if name == "ts":
            moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 60_000_000))
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if name == "num":
            return str(rng.randint(2, 99999))
        if name == "port":
            return str(rng.choice([5432, 3306, 27017, 6379, 5672]))
        if name == "sid":
            return "AC" + rand_str(rng, HEX, 32)
        if name == "hex40":
            return rand_str(rng, HEX, 40)
        if name == "project":
            return f"{fake.word()}-{rng.randint(100000, 999999)}"
        if name == "intro":
            return rng.choice(SECRET_INTRO[LANG[self.locale]])
        if name == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if name in ("hex7", "hex32"):
            return rand_str(rng, HEX, int(name[3:]))
        if name == "hex64":
            return hashlib.sha256(rng.randbytes(16)).hexdigest()
        if name == "b64_64":
            return base64.b64encode(hashlib.sha512(rng.randbytes(16)).digest()).decode()
        if name == "b64_settings":
            settings = {"theme": rng.choice(["dark", "light"]), "lang": self.locale, "page": rng.randint(1, 9)}
            return base64.b64encode(json.dumps(settings).encode()).decode()
        if name == "alnum24":
            return rand_str(rng, ALNUM, 24)
        if name == "alnum_lower32":
            return rand_str(rng, string.ascii_lowercase + string.digits, 32)
        if name == "b64_pubkey":  # an RSA SubjectPublicKeyInfo
            return wrap64(bytes.fromhex("30820122300d06092a864886f70d01010105000382010f00") + rng.randbytes(270))
        if name == "b64_cert":
            return wrap64(bytes.fromhex("3082037c30820264a003020102") + rng.randbytes(880))
        if name == "b64_ssh":
            return base64.b64encode(rng.randbytes(30)).decode()[:43]
        if name == "b64_png":
            return base64.b64encode(rng.randbytes(90)).decode()
        if name == "upper9":
            return rand_str(rng, UPPER_DIGITS, 9)
        raise KeyError(name)

    def case(self, case_id: str, style: str, template: str) -> Case:
        text, spans = assemble(self.fill(template))
        if style == "json":
            json.loads(text)
        return {"id": case_id, "locale": self.locale, "style": style, "text": text, "spans": spans}


SECRET_INTRO = {
    "en": [
        "Here is the key for staging:",
        "Use this token for now:",
        "Temporary credentials below, rotate after the demo:",
    ],
    "de": [
        "Hier der Schlüssel für Staging:",
        "Nimm vorerst dieses Token:",
        "Zugangsdaten, bitte nach der Demo rotieren:",
    ],
    "fr": ["Voici la clé pour la préproduction :", "Utilise ce jeton pour l'instant :", "Identifiants temporaires :"],
    "it": ["Ecco la chiave per lo staging:", "Usa questo token per ora:", "Credenziali temporanee:"],
    "nl": ["Hier is de sleutel voor staging:", "Gebruik voorlopig dit token:", "Tijdelijke inloggegevens:"],
    "es": ["Aquí está la clave para staging:", "Usa este token por ahora:", "Credenciales temporales:"],
}

# (category, environment variable, identifier in code) for the token-like categories.
TOKEN_KINDS: list[tuple[str, str, str]] = [
    ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("GOOGLE_API_KEY", "GOOGLE_API_KEY", "google_api_key"),
    ("AZURE_STORAGE_KEY", "AZURE_STORAGE_KEY", "azure_storage_key"),
    ("GITHUB_TOKEN", "GITHUB_TOKEN", "github_token"),
    ("GITLAB_TOKEN", "GITLAB_TOKEN", "gitlab_token"),
    ("SLACK_TOKEN", "SLACK_BOT_TOKEN", "slack_token"),
    ("SLACK_WEBHOOK", "SLACK_WEBHOOK_URL", "slack_webhook_url"),
    ("STRIPE_KEY", "STRIPE_SECRET_KEY", "stripe_secret_key"),
    ("SQUARE_TOKEN", "SQUARE_ACCESS_TOKEN", "square_access_token"),
    ("TWILIO_API_KEY", "TWILIO_API_KEY", "twilio_api_key"),
    ("SENDGRID_API_KEY", "SENDGRID_API_KEY", "sendgrid_api_key"),
    ("MAILGUN_API_KEY", "MAILGUN_API_KEY", "mailgun_api_key"),
    ("OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key"),
    ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY", "anthropic_api_key"),
    ("HUGGINGFACE_TOKEN", "HF_TOKEN", "hf_token"),
    ("NPM_TOKEN", "NPM_TOKEN", "npm_token"),
    ("PYPI_TOKEN", "PYPI_API_TOKEN", "pypi_token"),
    ("DISCORD_TOKEN", "DISCORD_BOT_TOKEN", "discord_token"),
    ("TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN", "telegram_bot_token"),
    ("DOCKERHUB_TOKEN", "DOCKERHUB_TOKEN", "dockerhub_token"),
    ("SHOPIFY_TOKEN", "SHOPIFY_ACCESS_TOKEN", "shopify_access_token"),
    ("JWT", "ACCESS_TOKEN", "access_token"),
]

# Contexts any token can appear in; {N} is the variable name, {n} the identifier, {X} the value slot.
GENERIC_CONTEXTS: list[tuple[str, str]] = [
    ("env", "# @@sentence@@\n{N}={X}\nLOG_LEVEL=info\nPORT=@@num@@\n"),
    ("env", 'APP_ENV=production\n{N}="{X}"\n'),
    ("yaml", "env:\n  - name: {N}\n    value: {X}\n  - name: LOG_LEVEL\n    value: debug\n"),
    ("yaml", "{n}: {X}\ntimeout: 30\nretries: 3\n"),
    ("json", '{"{n}": "{X}", "region": "eu-west-1", "debug": false}'),
    ("shell", "export {N}={X}\n./deploy.sh --env prod"),
    ("shell", "docker run --rm -e {N}={X} -p 8080:8080 ghcr.io/acme/app:1.4.2"),
    ("python", 'import os\n\nos.environ["{N}"] = "{X}"\nclient = make_client()'),
    ("python", '{n} = "{X}"  # @@sentence@@'),
    ("js", "const {n} = '{X}';\nmodule.exports = { {n} };"),
    ("log", "@@ts@@ DEBUG config loaded {N}={X} workers=4"),
    ("prose", "@@intro@@ {X}"),
    ("prose", "@@sentence@@ {N} is {X} — @@sentence@@"),
]

SPECIFIC_CONTEXTS: list[tuple[str, str]] = [
    ("ini", "[default]\naws_access_key_id = @@AWS_ACCESS_KEY_ID@@\naws_secret_access_key = @@AWS_SECRET_ACCESS_KEY@@\nregion = eu-central-1\n"),  # noqa: E501
    ("shell", "aws configure set aws_secret_access_key @@AWS_SECRET_ACCESS_KEY@@"),
    ("shell", "AWS_ACCESS_KEY_ID=@@AWS_ACCESS_KEY_ID@@ AWS_SECRET_ACCESS_KEY=@@AWS_SECRET_ACCESS_KEY@@ aws s3 ls s3://@@word@@-backups"),
    ("json", '{\n  "AccessKey": {\n    "UserName": "ci-@@word@@",\n    "AccessKeyId": "@@AWS_ACCESS_KEY_ID:sts@@",\n    "Status": "Active",\n    "SecretAccessKey": "@@AWS_SECRET_ACCESS_KEY@@",\n    "CreateDate": "@@ts@@"\n  }\n}'),  # noqa: E501
    ("yaml", "Credentials:\n  AccessKeyId: @@AWS_ACCESS_KEY_ID@@\n  SecretAccessKey: @@AWS_SECRET_ACCESS_KEY@@\n"),
    ("json", '{"AWS_SECRET_ACCESS_KEY": "@@AWS_SECRET_ACCESS_KEY@@", "AWS_DEFAULT_REGION": "us-east-1"}'),
    ("python", 's3 = boto3.client(\n    "s3",\n    aws_access_key_id="@@AWS_ACCESS_KEY_ID@@",\n    aws_secret_access_key="@@AWS_SECRET_ACCESS_KEY@@",\n)'),  # noqa: E501
    ("json", '{\n  "type": "service_account",\n  "project_id": "@@project@@",\n  "private_key_id": "@@hex40@@",\n  "private_key": "@@PRIVATE_KEY:json@@\\n",\n  "client_email": "deployer@@@project@@.iam.gserviceaccount.com",\n  "client_id": "1@@num@@@@num@@",\n  "token_uri": "https://oauth2.googleapis.com/token"\n}'),  # noqa: E501
    ("shell", 'curl "https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=@@GOOGLE_API_KEY@@"'),
    ("html", '<script src="https://maps.googleapis.com/maps/api/js?key=@@GOOGLE_API_KEY@@&callback=initMap" async></script>'),  # noqa: E501
    ("env", "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=@@word@@store;AccountKey=@@AZURE_STORAGE_KEY@@;EndpointSuffix=core.windows.net\n"),  # noqa: E501
    ("json", '{"ConnectionStrings": {"Storage": "DefaultEndpointsProtocol=https;AccountName=@@word@@data;AccountKey=@@AZURE_STORAGE_KEY@@;EndpointSuffix=core.windows.net"}}'),  # noqa: E501
    ("python", 'blob = BlobServiceClient.from_connection_string(\n    "DefaultEndpointsProtocol=https;AccountName=@@word@@;AccountKey=@@AZURE_STORAGE_KEY@@"\n)'),  # noqa: E501
    ("shell", "git clone https://x-access-token:@@GITHUB_TOKEN@@@github.com/@@user@@/@@word@@.git"),
    ("shell", 'curl -H "Authorization: token @@GITHUB_TOKEN@@" https://api.github.com/user/repos'),
    ("shell", "echo @@GITHUB_TOKEN:github_pat_@@ | gh auth login --with-token"),
    ("yaml", "steps:\n  - uses: actions/checkout@v4\n    with:\n      token: @@GITHUB_TOKEN@@\n"),
    ("shell", 'curl --header "PRIVATE-TOKEN: @@GITLAB_TOKEN@@" "https://gitlab.com/api/v4/projects?owned=true"'),
    ("python", 'gl = gitlab.Gitlab("https://gitlab.@@domain@@", private_token="@@GITLAB_TOKEN@@")'),
    ("python", 'client = WebClient(token="@@SLACK_TOKEN@@")\nclient.chat_postMessage(channel="#deploys", text="done")'),
    ("shell", "curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"Build passed\"}' @@SLACK_WEBHOOK@@"),  # noqa: E501
    ("yaml", "notifications:\n  slack:\n    webhook_url: @@SLACK_WEBHOOK@@\n    channel: '#alerts'\n"),
    ("python", "bot.run('@@DISCORD_TOKEN@@')"),
    ("env", "DISCORD_WEBHOOK=@@DISCORD_TOKEN:webhook@@\n"),
    ("shell", 'curl -H "Content-Type: application/json" -d \'{"content": "deploy ok"}\' @@DISCORD_TOKEN:webhook@@'),
    ("shell", "curl -s https://api.telegram.org/bot@@TELEGRAM_BOT_TOKEN@@/sendMessage -d chat_id=@@num@@ -d text=hi"),
    ("python", "app = ApplicationBuilder().token(\"@@TELEGRAM_BOT_TOKEN@@\").build()"),
    ("python", 'import stripe\n\nstripe.api_key = "@@STRIPE_KEY@@"'),
    ("shell", "curl https://api.stripe.com/v1/charges -u @@STRIPE_KEY@@: -d amount=2000 -d currency=eur"),
    ("env", "TWILIO_ACCOUNT_SID=@@sid@@\nTWILIO_API_KEY=@@TWILIO_API_KEY@@\n"),
    ("python", 'client = Client("@@TWILIO_API_KEY@@", api_secret, "@@sid@@")'),
    ("python", 'sg = SendGridAPIClient("@@SENDGRID_API_KEY@@")'),
    ("shell", 'curl -s --user "api:@@MAILGUN_API_KEY@@" https://api.mailgun.net/v3/mg.@@domain@@/messages'),
    ("python", 'client = OpenAI(api_key="@@OPENAI_API_KEY@@")'),
    ("shell", 'curl https://api.openai.com/v1/chat/completions -H "Authorization: Bearer @@OPENAI_API_KEY@@"'),
    ("python", 'client = anthropic.Anthropic(api_key="@@ANTHROPIC_API_KEY@@")'),
    ("shell", 'curl https://api.anthropic.com/v1/messages -H "x-api-key: @@ANTHROPIC_API_KEY@@" -H "anthropic-version: 2023-06-01"'),  # noqa: E501
    ("shell", "huggingface-cli login --token @@HUGGINGFACE_TOKEN@@"),
    ("python", 'from huggingface_hub import login\n\nlogin(token="@@HUGGINGFACE_TOKEN@@")'),
    ("ini", "//registry.npmjs.org/:_authToken=@@NPM_TOKEN@@\n"),
    ("ini", "[pypi]\nusername = __token__\npassword = @@PYPI_TOKEN@@\n"),
    ("shell", "twine upload -u __token__ -p @@PYPI_TOKEN@@ dist/*"),
    ("shell", "echo @@DOCKERHUB_TOKEN@@ | docker login -u @@user@@ --password-stdin"),
    ("shell", "docker login -u @@user@@ -p @@DOCKERHUB_TOKEN@@"),
    ("python", 'headers = {"X-Shopify-Access-Token": "@@SHOPIFY_TOKEN@@", "Content-Type": "application/json"}'),
    ("pem", "@@PRIVATE_KEY@@\n"),
    ("shell", "cat > ~/.ssh/id_deploy <<'EOF'\n@@PRIVATE_KEY@@\nEOF\nchmod 600 ~/.ssh/id_deploy"),
    ("yaml", "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nstringData:\n  tls.key: |\n    @@PRIVATE_KEY:indent4@@\n"),  # noqa: E501
    ("prose", "@@intro@@\n\n@@PRIVATE_KEY@@\n\n@@sentence@@"),
    ("python", 'DEPLOY_KEY = """@@PRIVATE_KEY@@\n"""'),
    ("yaml", "deploy:\n  host: @@host@@\n  ssh_key: |\n    @@PRIVATE_KEY:indent4@@\n"),
    ("env", 'JWT_PRIVATE_KEY="@@PRIVATE_KEY:json@@\\n"\n'),
    ("http", "GET /api/v1/me HTTP/1.1\nHost: api.@@domain@@\nAuthorization: Bearer @@JWT@@\nAccept: application/json"),
    ("http", "Cookie: session=@@JWT@@; theme=dark; lang=en"),
    ("json", '{"access_token": "@@JWT@@", "token_type": "Bearer", "expires_in": 3600}'),
    ("log", '@@ts@@ INFO  auth: issued token for user @@user@@: @@JWT@@'),
]  # fmt: skip

ASSIGNMENT_CONTEXTS: list[tuple[str, str]] = [
    ("env", "DB_HOST=@@host@@\nDB_USER=@@user@@\nDB_PASSWORD=@@PASSWORD:plain@@\n"),
    ("env", "password=@@PASSWORD:plain@@\n"),
    ("yaml", "database:\n  host: @@host@@\n  user: @@user@@\n  password: '@@PASSWORD@@'\n"),
    ("yaml", "PASSWORD: @@PASSWORD:plain@@\n"),
    ("json", '{"username": "@@user@@", "password": "@@PASSWORD@@", "remember": true}'),
    ("python", "secret_token = '@@GENERIC_SECRET@@'"),
    ("python", 'DATABASES = {"default": {"USER": "@@user@@", "PASSWORD": "@@PASSWORD@@", "HOST": "@@host@@"}}'),
    ("python", "SECRET_KEY = '@@GENERIC_SECRET@@'"),
    ("json", '{"api_key": "@@GENERIC_SECRET@@", "endpoint": "https://api.@@domain@@/v2"}'),
    ("yaml", "oauth:\n  client_id: @@word@@-web\n  client_secret: @@GENERIC_SECRET@@\n"),
    ("env", "API_KEY=@@GENERIC_SECRET@@\nAPI_URL=https://api.@@domain@@\n"),
    ("shell", "curl -H 'X-API-Key: @@GENERIC_SECRET@@' https://api.@@domain@@/v1/items"),
    ("js", 'const config = { apiSecret: "@@GENERIC_SECRET@@", timeout: 5000 };'),
    ("log", "@@ts@@ WARN  retrying login user=@@user@@ password=@@PASSWORD:plain@@ attempt=2"),
    ("shell", "mysql -h @@host@@ -u @@user@@ -p'@@PASSWORD@@' @@db@@"),
    ("ini", "[client]\nuser = @@user@@\npasswd = @@PASSWORD:plain@@\n"),
    ("prose", "@@sentence@@ The admin password is @@PASSWORD:plain@@ until we set up SSO."),
    ("env", "DATABASE_URL=postgres://@@user@@:@@PASSWORD:url@@@@@host@@:5432/@@db@@\n"),
    ("env", "DATABASE_URL=postgresql://@@user@@:@@PASSWORD:url@@@@@host@@/@@db@@?sslmode=require\n"),
    ("python", 'engine = create_engine("mysql+pymysql://@@user@@:@@PASSWORD:url@@@@@host@@:3306/@@db@@")'),
    ("env", "MONGO_URI=mongodb+srv://@@user@@:@@PASSWORD:url@@@cluster0.@@word@@.mongodb.net/@@db@@?retryWrites=true&w=majority\n"),
    ("yaml", "cache:\n  url: redis://:@@PASSWORD:url@@@redis.internal:6379/0\n"),
    ("env", "CELERY_BROKER_URL=amqp://@@user@@:@@PASSWORD:url@@@rabbitmq:5672/@@db@@\n"),
    ("log", "@@ts@@ ERROR could not connect to mysql://@@user@@:@@PASSWORD:url@@@@@host@@:3306/@@db@@: timeout"),
    ("json", '{"redis": "rediss://default:@@PASSWORD:url@@@cache.@@domain@@:6380"}'),
]  # fmt: skip

PLACEHOLDER_VALUES: list[tuple[str, str]] = [
    ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
    ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("OPENAI_API_KEY", "sk-xxxxxxxxxxxxxxxxxxxxxxxx"),
    ("GITHUB_TOKEN", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("API_KEY", "<your-api-key>"),
    ("API_KEY", "YOUR_API_KEY"),
    ("OPENAI_API_KEY", "${OPENAI_API_KEY}"),
    ("API_KEY", "$API_KEY"),
    ("TOKEN", "{{ secrets.TOKEN }}"),
    ("PASSWORD", "changeme"),
    ("PASSWORD", "********"),
    ("PASSWORD", "<password>"),
    ("STRIPE_SECRET_KEY", "sk_live_XXXXXXXXXXXXXXXXXXXXXXXX"),
    ("SLACK_BOT_TOKEN", "xoxb-your-bot-token"),
    ("HF_TOKEN", "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("DB_PASSWORD", "${DB_PASSWORD}"),
    ("SECRET_KEY", "<replace-me>"),
    ("GITLAB_TOKEN", "glpat-xxxxxxxxxxxxxxxxxxxx"),
    ("API_KEY", "your-api-key-here"),
    ("ANTHROPIC_API_KEY", "sk-ant-api03-..."),
    ("NPM_TOKEN", "${NPM_TOKEN}"),
    ("PASSWORD", "{{ vault_db_password }}"),
    ("CLIENT_SECRET", "REPLACE_ME"),
    ("PASSWORD", ""),
]

PLACEHOLDER_CONTEXTS: list[tuple[str, str]] = [
    ("env", "# @@sentence@@\n{N}={V}\nLOG_LEVEL=info\n"),
    ("yaml", '{n}: "{V}"\ntimeout: 30\n'),
    ("json", '{"{n}": "{V}", "debug": true}'),
    ("shell", "export {N}={V}"),
    ("python", '{n} = "{V}"  # @@sentence@@'),
    ("prose", "@@sentence@@ Set {N} to {V} in your .env file."),
]

PLACEHOLDER_SNIPPETS: list[tuple[str, str]] = [
    ("python", 'api_key = os.environ["API_KEY"]\npassword = os.getenv("DB_PASSWORD")'),
    ("js", "const token = process.env.GITHUB_TOKEN;\nconst apiKey = process.env.OPENAI_API_KEY ?? '';"),
    ("env", "DATABASE_URL=postgres://user:password@localhost:5432/mydb\n"),
    ("env", "DATABASE_URL=postgres://app@db/x\n"),
    ("env", "DATABASE_URL=postgres://${DB_USER}:${DB_PASSWORD}@db:5432/app\n"),
    ("yaml", "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db-credentials\n        key: password\n"),  # noqa: E501
    ("yaml", "steps:\n  - run: ./publish.sh\n    env:\n      NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\n"),
    ("prose", "Replace <your-api-key> with the key from your dashboard; it starts with sk- and is shown only once."),
    ("prose", "Example credentials from the AWS docs: AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY."),  # noqa: E501
    ("yaml", "password: ********\nusername: @@user@@\n"),
    ("env", "password=<password>\n"),
    ("shell", 'curl -H "Authorization: Bearer $API_KEY" https://api.@@domain@@/v1/models'),
    ("python", 'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])'),
    ("shell", "mysql -h localhost -u root -p"),
    ("env", "REDIS_URL=redis://localhost:6379/0\n"),
]  # fmt: skip

LOOKALIKE_SNIPPETS: list[tuple[str, str]] = [
    ("log", "@@ts@@ INFO  request_id=@@uuid@@ trace_id=@@uuid@@ status=200"),
    ("log", "commit @@hex40@@\nMerge: @@hex7@@ @@hex7@@\n\n    Fix flaky test"),
    ("log", "Digest: sha256:@@hex64@@\nStatus: Downloaded newer image for postgres:16"),
    ("json", '{"name": "left-pad", "version": "1.3.0", "integrity": "sha512-@@b64_64@@", "resolved": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz"}'),
    ("json", '{"settings": "@@b64_settings@@", "encoding": "base64"}'),
    ("js", "const stripe = Stripe('pk_live_@@alnum24@@');"),
    ("env", "TWILIO_ACCOUNT_SID=@@sid@@\nTWILIO_PHONE_NUMBER_SID=PN@@hex32@@\n"),
    ("prose", "@@sentence@@ Never paste your API key or password into a chat; rotate the token if it leaks."),
    ("python", 'password_reset_url = f"https://@@domain@@/reset?user={user_id}"\npassword_min_length = 12'),
    ("json", '{"token_type": "Bearer", "expires_in": 3600, "scope": "read write"}'),
    ("python", 'response = client.messages.create(model="claude-3-5-sonnet", max_tokens=1024, messages=messages)'),
    ("prose", "Assigned task-@@num@@ to @@user@@; the desk-lamp order (sku desk-lamp-@@num@@) ships Monday."),
    ("pem", "-----BEGIN PUBLIC KEY-----\n@@b64_pubkey@@\n-----END PUBLIC KEY-----"),
    ("pem", "-----BEGIN CERTIFICATE-----\n@@b64_cert@@\n-----END CERTIFICATE-----"),
    ("ini", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI@@b64_ssh@@ @@user@@@@@word@@"),
    ("yaml", "image: ghcr.io/acme/api@sha256:@@hex64@@\nreplicas: 3\n"),
    ("python", "token = get_token()\napi_key = None\nif not password:\n    raise ValueError('password is required')"),
    ("json", '{"client_id": "@@num@@-@@alnum_lower32@@.apps.googleusercontent.com", "redirect_uri": "https://@@domain@@/callback"}'),
    ("yaml", "secret_name: @@word@@-tls\nsecretName: @@word@@-credentials\ntokenTTL: 15m\n"),
    ("html", "<form method=\"post\">{% csrf_token %}<input type=\"password\" name=\"password\" autocomplete=\"current-password\"></form>"),  # noqa: E501
    ("log", "@@ts@@ INFO  user @@user@@ changed their password; all sessions revoked (tokens=3)"),
    ("env", "AWS_REGION=eu-west-1\nAWS_DEFAULT_OUTPUT=json\nAWS_PROFILE=@@word@@\n"),
    ("shell", "git checkout @@hex7@@ && git cherry-pick @@hex40@@"),
    ("json", '{"etag": "\\"@@hex32@@\\"", "last_modified": "@@ts@@", "size": @@num@@}'),
    ("prose", "@@sentence@@ The keynote skipped the sk-ii demo; ask-me-anything starts at five."),
    ("data", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAA@@b64_png@@"),
    ("python", "SESSION_COOKIE_SECURE = True\nPASSWORD_HASHERS = ['django.contrib.auth.hashers.Argon2PasswordHasher']"),
    ("log", "@@ts@@ DEBUG slack team=T@@upper9@@ channel=C@@upper9@@ user=U@@upper9@@ ts=1712345678.123456"),
]  # fmt: skip


def secrets_cases() -> list[Case]:
    writer = SecretsWriter(SEED)
    rng = writer.rng
    templates: list[tuple[str, str]] = []
    for kind, env_name, ident in TOKEN_KINDS:
        slot = f"@@{kind}@@"
        for style, context in GENERIC_CONTEXTS:
            templates.append((style, context.replace("{N}", env_name).replace("{n}", ident).replace("{X}", slot)))
    rng.shuffle(templates)
    specific = SPECIFIC_CONTEXTS + ASSIGNMENT_CONTEXTS
    # Every specific context twice and assignments a third time, the rest from the generic contexts.
    chosen = specific * 2 + ASSIGNMENT_CONTEXTS
    chosen += templates[: SECRETS_POSITIVES - len(chosen)]
    rng.shuffle(chosen)
    cases = []
    for index, (style, template) in enumerate(chosen):
        writer.locale = LOCALES[index % len(LOCALES)]
        cases.append(writer.case(f"secrets-{index:04d}", style, template))

    placeholders: list[tuple[str, str]] = []
    for env_name, value in PLACEHOLDER_VALUES:
        for style, context in PLACEHOLDER_CONTEXTS:
            if not value and style == "prose":
                continue
            text = context.replace("{N}", env_name).replace("{n}", env_name.lower()).replace("{V}", value)
            placeholders.append((style, text))
    rng.shuffle(placeholders)
    placeholders = PLACEHOLDER_SNIPPETS + placeholders[: SECRETS_PLACEHOLDERS - len(PLACEHOLDER_SNIPPETS)]
    for index, (style, template) in enumerate(placeholders):
        writer.locale = LOCALES[index % len(LOCALES)]
        case = writer.case(f"secrets-placeholder-{index:04d}", style, template)
        cases.append(case)
    for index in range(SECRETS_LOOKALIKES):
        writer.locale = LOCALES[index % len(LOCALES)]
        style, template = LOOKALIKE_SNIPPETS[index % len(LOOKALIKE_SNIPPETS)]
        cases.append(writer.case(f"secrets-negative-{index:04d}", style, template))
    for case in cases:
        if "-placeholder-" in case["id"] or "-negative-" in case["id"]:
            if case["spans"]:
                raise AssertionError(f"{case['id']} has spans")
        elif not case["spans"]:
            raise AssertionError(f"{case['id']} has no spans")
    return cases


# ------------------------------------------------------------------------ output


def dumps(cases: Iterable[Case]) -> str:
    return "".join(json.dumps(case, ensure_ascii=False) + "\n" for case in cases)


def write() -> None:
    for path, cases in ((PII_PATH, pii_cases()), (SECRETS_PATH, secrets_cases())):
        path.write_text(dumps(cases), encoding="utf-8", newline="\n")
        print(f"wrote {len(cases)} cases to {path}", file=sys.stderr)


if __name__ == "__main__":
    write()
