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
        detect: {jwt: false, generic_secret: false}
        allow_list: ["sk_test_4eC39HqLyjWDarjtT1zdp7dc"]
        assignments: {entropy_gate: true, min_length: 8, min_entropy: 3.0}
        high_entropy: {enabled: true, min_length: 32, threshold: 4.5}

Types, each switched by ``detect.<type in lower case>`` (all on by default).
Where a type is *labelled*, only the value is redacted and the label stays
(``DB_PASSWORD=[REDACTED:PASSWORD]``):

=========================== ===================================================
``AWS_ACCESS_KEY_ID``       ``AKIA``/``ASIA``/``A3T.`` (and the other IAM
                            prefixes) and 16 upper-case letters or digits
``AWS_SECRET_ACCESS_KEY``   40 base64 characters, labelled: ``aws_secret_access_key``,
                            ``SecretAccessKey``, ``secret_key``, ``aws_secret``...
                            (``=``, ``:``, ``=>`` or, after ``aws configure set``
                            style labels, a space)
``GITHUB_TOKEN``            ``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_`` and
                            ``github_pat_`` tokens
``GITLAB_TOKEN``            ``glpat-``, ``gldt-``, ``glrt-``, ``glptt-``, ``glcbt-``,
                            ``gloas-``, ``glsoat-``, ``glffct-``, ``glft-``,
                            ``glimt-``, ``glagent-``, ``glwt-`` tokens and
                            ``GR1348941`` runner registration tokens
``ATLASSIAN_TOKEN``         Atlassian and Bitbucket ``ATATT3``/``ATCTT3`` tokens
``SLACK_TOKEN``             ``xoxb-``, ``xoxp-``, ``xoxa-``, ``xoxr-``, ``xoxs-``,
                            ``xoxo-``, ``xoxe-``, ``xoxe.xox?-`` and ``xapp-``
``SLACK_WEBHOOK``           ``https://hooks.slack.com/services/...`` URLs
``DISCORD_TOKEN``           bot tokens: base64 user id, ``.``, 6, ``.``, 27-40
                            URL-safe characters
``DISCORD_WEBHOOK``         ``https://discord.com/api/webhooks/<id>/<token>``
``TELEGRAM_BOT_TOKEN``      ``<8-10 digits>:AA`` and 33 URL-safe characters
``STRIPE_KEY``              ``sk_``/``rk_`` ``live``/``test``/``prod`` keys and
                            ``whsec_`` webhook secrets (publishable ``pk_`` keys
                            are not secret)
``SQUARE_TOKEN``            ``EAAA...`` access tokens, ``sq0atp-``, ``sq0csp-``
``GOOGLE_API_KEY``          ``AIza`` and 35 URL-safe characters
``GOOGLE_OAUTH``            ``GOCSPX-`` client secrets and ``ya29.`` access tokens
``AZURE_STORAGE_KEY``       the ``AccountKey=`` / ``SharedAccessKey=`` value of a
                            connection string
``OPENAI_API_KEY``          ``sk-proj-``, ``sk-svcacct-``, ``sk-admin-`` and
                            legacy ``sk-`` keys (32 letters or digits and more)
``ANTHROPIC_API_KEY``       ``sk-ant-api03-``, ``sk-ant-admin01-``, ``sk-ant-oat01-``...
``OPENROUTER_API_KEY``      ``sk-or-v1-`` and 64 hex digits
``HUGGINGFACE_TOKEN``       ``hf_`` and ``api_org_`` tokens
``GROQ_API_KEY``            ``gsk_`` and 52 letters or digits
``XAI_API_KEY``             ``xai-`` and 80 letters or digits
``PERPLEXITY_API_KEY``      ``pplx-`` and 48 letters or digits
``REPLICATE_API_TOKEN``     ``r8_`` and 37 letters or digits
``NPM_TOKEN``               ``npm_`` and 36 letters or digits
``PYPI_TOKEN``              ``pypi-AgEIcHlwaS5vcmc...`` (and test.pypi.org) tokens
``DOCKERHUB_TOKEN``         ``dckr_pat_`` / ``dckr_oat_`` tokens
``RUBYGEMS_TOKEN``          ``rubygems_`` and 48 hex digits
``SENDGRID_API_KEY``        ``SG.`` 22 ``.`` 43 URL-safe characters
``MAILGUN_API_KEY``         ``key-`` and 32 hex digits
``TWILIO_API_KEY``          ``SK`` and 32 hex digits
``SHOPIFY_TOKEN``           ``shpat_``, ``shpss_``, ``shpca_``, ``shppa_`` and 32 hex
``DIGITALOCEAN_TOKEN``      ``dop_v1_``, ``doo_v1_``, ``dor_v1_`` and 64 hex
``HASHICORP_TOKEN``         Vault ``hvs.``/``hvb.`` and Terraform ``.atlasv1.`` tokens
``DEVTOOLS_TOKEN``          Linear ``lin_api_``, Postman ``PMAK-``, Databricks
                            ``dapi``, Sentry ``sntrys_``/``sntryu_``, Grafana
                            ``glc_``/``glsa_``, New Relic ``NRAK-``, Supabase
                            ``sbp_``/``sb_secret_``, Doppler ``dp.pt.``, Pulumi
                            ``pul-``, Heroku ``HRKU-``, Notion ``ntn_``
``AGE_SECRET_KEY``          ``AGE-SECRET-KEY-1...``
``PRIVATE_KEY``             a PEM ``-----BEGIN ... PRIVATE KEY-----`` block (RSA,
                            EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK) up to its
                            ``END`` line, also inside a JSON string with ``\\n``
                            escapes (GCP service-account files); to the end of
                            the text when the block is cut short
``JWT``                     three base64url parts whose first decodes to a JSON
                            object with ``alg``
``PASSWORD``                labelled: the value of ``password``, ``passwd``,
                            ``pwd``, ``passphrase`` assignments (``password=``,
                            ``PASSWORD:``, ``"password": "..."``, ``--password
                            ...``, ``DB_PASSWORD=``...), the password of a URL
                            (``postgres://user:PASS@host``, any scheme) and the
                            credentials of ``Authorization: Basic ...``
``GENERIC_SECRET``          labelled: the value of ``secret``, ``token``,
                            ``api_key``/``apikey``, ``access_key``, ``auth_key``,
                            ``client_secret``, ``private_key``, ``credentials``
                            assignments, and ``Bearer`` tokens
=========================== ===================================================

A labelled value that is itself a provider token (``OPENAI_API_KEY=sk-...``)
is reported as the provider's type.

Placeholders are never reported: the AWS documentation's
``AKIAIOSFODNN7EXAMPLE`` and ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``;
values made of one repeated character (``xxxx``, ``****``, ``0000``) or with
a run of 6 of one character (``ghp_xxxxxx...``); values containing
``example``, ``your``, ``placeholder``, ``changeme``, ``redacted``, ``dummy``,
``sample``, ``fake``, ``replace_me``, ``insert_`` (any case); templates
(``<your-key>``, ``${VAR}``, ``$VAR``, ``{{ var }}``, ``{var}``, ``%(x)s``,
``%s``); references in code (``os.environ[...]``, ``os.getenv(...)``,
``process.env.X``, ``settings.API_KEY``); and the words ``password``,
``secret``, ``token``, ``null``, ``none``, ``true``... as values. The
documented placeholder rules do not apply to private keys, whose bodies
have long runs of ``A``. ``allow_list`` adds exact values never reported.

``assignments`` is the gate of the labelled ``PASSWORD`` and
``GENERIC_SECRET`` values (``entropy_gate: true`` by default): a value made
of plain words (letters only, each word in one case or capitalised, joined
by ``-``, ``_``, ``.`` or spaces: ``bearer``, ``prod-db-credentials``) is
not a secret; a ``GENERIC_SECRET`` needs at least ``min_length`` (8)
characters and ``min_entropy`` (3.0) bits of Shannon entropy per character
(``abcd1234`` has 3.0, ``a8f5f167f44f4964e6c998dee827110c`` 3.6), a
``PASSWORD`` at least ``password_min_length`` (6) and
``password_min_entropy`` (2.0; ``hunter2`` has 2.8, ``aaaaa1`` 0.65).

``high_entropy`` (off by default) also reports ``HIGH_ENTROPY``: runs of at
least ``min_length`` base64 or hex characters, with letters and digits, whose
Shannon entropy per character reaches ``threshold`` bits. Expect some false
positives (hashes, ids): that is why it is off.

``action: redact`` writes ``[REDACTED:OPENAI_API_KEY]`` in place of the
secret; ``action: block`` refuses the message with code ``SECRETS_DETECTED``,
naming the types found and never the values.

How it runs: one RE2 pass over the text (a DFA, linear, at about a byte a
nanosecond) finds every *trigger*, a short prefix that each type's matches
start with; then only at those positions the type's exact pattern (Python's
:mod:`re`, anchored, every repetition bounded) and its checks run. Clean
text costs the one pass.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from typing import Any, Literal

import orjson
import re2  # type: ignore[import-untyped, unused-ignore]
from pydantic import Field

from ..models import PluginConfig, PluginViolation
from ._base import Findings, TextFilterPlugin, counted, labels
from ._config import Settings, parse_config

__all__ = [
    "TYPES",
    "SecretsDetectionPlugin",
    "SecretsDetectionSettings",
    "find_secrets",
    "is_placeholder",
    "shannon_entropy",
]


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


class SecretsDetect(Settings):
    """Which types to look for."""

    aws_access_key_id: bool = True
    aws_secret_access_key: bool = True
    github_token: bool = True
    gitlab_token: bool = True
    atlassian_token: bool = True
    slack_token: bool = True
    slack_webhook: bool = True
    discord_token: bool = True
    discord_webhook: bool = True
    telegram_bot_token: bool = True
    stripe_key: bool = True
    square_token: bool = True
    google_api_key: bool = True
    google_oauth: bool = True
    azure_storage_key: bool = True
    openai_api_key: bool = True
    anthropic_api_key: bool = True
    openrouter_api_key: bool = True
    huggingface_token: bool = True
    groq_api_key: bool = True
    xai_api_key: bool = True
    perplexity_api_key: bool = True
    replicate_api_token: bool = True
    npm_token: bool = True
    pypi_token: bool = True
    dockerhub_token: bool = True
    rubygems_token: bool = True
    sendgrid_api_key: bool = True
    mailgun_api_key: bool = True
    twilio_api_key: bool = True
    shopify_token: bool = True
    digitalocean_token: bool = True
    hashicorp_token: bool = True
    devtools_token: bool = True
    age_secret_key: bool = True
    private_key: bool = True
    jwt: bool = True
    password: bool = True
    generic_secret: bool = True


class Assignments(Settings):
    """The gate of labelled ``PASSWORD`` and ``GENERIC_SECRET`` values."""

    entropy_gate: bool = True
    min_length: int = Field(default=8, ge=1, le=256)
    min_entropy: float = Field(default=3.0, ge=0, le=8)
    password_min_length: int = Field(default=6, ge=1, le=256)
    password_min_entropy: float = Field(default=2.0, ge=0, le=8)


class HighEntropy(Settings):
    """Settings of the optional high-entropy check."""

    enabled: bool = False
    min_length: int = Field(default=32, ge=8)
    threshold: float = Field(default=4.5, gt=0, le=8)


class SecretsDetectionSettings(Settings):
    """``config:`` of :class:`SecretsDetectionPlugin`."""

    action: Literal["redact", "block"] = "redact"
    detect: SecretsDetect = Field(default_factory=SecretsDetect)
    allow_list: list[str] = Field(default_factory=list)
    assignments: Assignments = Field(default_factory=Assignments)
    high_entropy: HighEntropy = Field(default_factory=HighEntropy)


# --------------------------------------------------------------------------
# Placeholders
# --------------------------------------------------------------------------

_DOCUMENTED = frozenset({"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
# Lower-cased: placeholder words, template openers, and runs of the usual
# fillers (a run of 6 of one character is in no random token of 20+).
_PLACEHOLDER = re.compile(
    r"example|your|placeholder|change[_-]?me|redacted|dummy|sample|fake|replace[_-]?me|insert[_-]|"
    r"\$\{|\{\{|%\(|\$\(|<[^<>]*>|\.\.\.|…|xxxxxx|000000|\*\*\*\*\*\*|######|______|••••••"
)
_RUN = re.compile(r"(.)\1{5}")
_WORD_VALUES = frozenset(
    [
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "secrets",
        "token",
        "tokens",
        "key",
        "apikey",
        "api_key",
        "value",
        "string",
        "str",
        "none",
        "null",
        "nil",
        "true",
        "false",
        "undefined",
        "empty",
        "required",
        "optional",
        "hidden",
        "masked",
        "default",
        "bearer",
        "basic",
    ]
)
# ``$VAR``, ``%s``, ``{var}``: a template; unquoted ``process.env.X``,
# ``settings.KEY``, ``os.environ[...]``, ``getenv(...)``: a reference in code.
_TEMPLATE = re.compile(r"\$\w+|%\w|\{[^{}]*\}")
_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")


def is_placeholder(value: str) -> bool:
    """Whether ``value`` is a documented or obvious placeholder (see the module docstring)."""
    if not value or value.count(value[0]) == len(value):
        return True
    return _PLACEHOLDER.search(value.lower()) is not None


def _reference(value: str, bare: bool) -> bool:
    """Whether a labelled ``value`` is a word, a template or (``bare``: unquoted) code."""
    if value.lower() in _WORD_VALUES or _TEMPLATE.fullmatch(value) is not None:
        return True
    return bare and ("(" in value or "[" in value or _DOTTED.fullmatch(value) is not None)


_PLAIN_WORDS = re.compile(r"(?:[a-z]+|[A-Z][a-z]*|[A-Z]+)(?:[-_. ](?:[a-z]+|[A-Z][a-z]*|[A-Z]+))*")


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s character distribution."""
    length = len(text)
    return -sum(count / length * math.log2(count / length) for count in Counter(text).values())


# --------------------------------------------------------------------------
# Tokens: passes led by a character that prose rarely has
# --------------------------------------------------------------------------

Finding = tuple[str, int, int]

_E = r"(?![A-Za-z0-9_-])"  # a token ends where no token character follows
_E62 = r"(?![A-Za-z0-9])"

_PASSWORD_WORDS = r"pass(?:word|wd|phrase)?|pwd"
_SECRET_WORDS = (
    r"secret|token|api[_.-]?key|apikey|access[_.-]?key|auth[_.-]?key|private[_.-]?key|credentials?|"
    r"client[_.-]?secret"
)
_LABEL_WORDS = f"{_PASSWORD_WORDS}|{_SECRET_WORDS}"

# (type, before, lead, after, check): a token is ``before`` (fixed width,
# checked by a lookbehind; None: walked back in Python), then the character
# ``lead``, then ``after``. Each lead gets one pass of :mod:`re` that searches
# for that literal character (a tight C loop) and tries the branches only
# where it is; ``_``, ``-`` and upper-case letters are rare in prose, and a
# pass runs at all only if its lead is in the text (a memchr).
_TOKENS: tuple[tuple[str, str | None, str, str, str], ...] = (
    # "_"
    ("GITHUB_TOKEN", "gh[pousr]", "_", r"[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])", "token"),
    ("GITHUB_TOKEN", "github", "_", r"pat_[A-Za-z0-9_]{22,242}(?![A-Za-z0-9_])", "token"),
    ("STRIPE_KEY", "[rs]k", "_", rf"(?:live|test|prod)_[A-Za-z0-9]{{16,247}}{_E62}", "token"),
    ("STRIPE_KEY", "whsec", "_", rf"[A-Za-z0-9]{{32,128}}{_E62}", "token"),
    ("HUGGINGFACE_TOKEN", "hf", "_", rf"[A-Za-z0-9]{{30,40}}{_E}", "token"),
    ("HUGGINGFACE_TOKEN", "api", "_", rf"org_[A-Za-z0-9]{{30,40}}{_E}", "token"),
    ("GROQ_API_KEY", "gsk", "_", rf"[A-Za-z0-9]{{52}}{_E}", "token"),
    ("REPLICATE_API_TOKEN", "r8", "_", rf"[A-Za-z0-9]{{37}}{_E}", "token"),
    ("NPM_TOKEN", "npm", "_", rf"[A-Za-z0-9]{{36}}{_E}", "token"),
    ("DOCKERHUB_TOKEN", "dckr", "_", rf"(?:pat|oat)_[A-Za-z0-9_-]{{20,64}}{_E}", "token"),
    ("RUBYGEMS_TOKEN", "rubygems", "_", rf"[a-f0-9]{{48}}{_E}", "token"),
    ("SHOPIFY_TOKEN", "shp(?:at|ss|ca|pa)", "_", rf"[a-fA-F0-9]{{32}}{_E}", "token"),
    ("DIGITALOCEAN_TOKEN", "do[por]", "_", rf"v1_[a-f0-9]{{64}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "lin", "_", rf"api_[A-Za-z0-9]{{40}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "sntry[su]", "_", rf"[A-Za-z0-9+/=_-]{{50,300}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "glc", "_", r"[A-Za-z0-9+/]{32,400}={0,2}(?![A-Za-z0-9+/=_-])", "token"),
    ("DEVTOOLS_TOKEN", "glsa", "_", rf"[A-Za-z0-9]{{32}}_[A-Fa-f0-9]{{8}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "sbp", "_", rf"[a-f0-9]{{40}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "sb", "_", rf"secret_[A-Za-z0-9_-]{{31,64}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "ntn", "_", rf"[0-9]{{11}}[A-Za-z0-9]{{35}}{_E}", "token"),
    (
        "AWS_SECRET_ACCESS_KEY",
        "[Aa][Ww][Ss]",
        "_",
        r"(?i:secret_(?:access_)?key)[\"']?[ \t]{1,4}(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        "value",
    ),
    # "-"
    ("GENERIC_SECRET", "-", "-", rf"(?:[A-Za-z0-9]+-)?(?i:{_LABEL_WORDS})[A-Za-z0-9-]{{0,20}}[ =]", "flag"),
    ("PASSWORD", "[ \t]", "-", r"p(?:'(?P<value>[^'\n]{1,256})'|\"(?P<dvalue>[^\"\n]{1,256})\")", "pflag"),
    ("PRIVATE_KEY", "", "-", r"----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----", "pem"),
    ("ANTHROPIC_API_KEY", "sk", "-", rf"ant-[a-z]{{3,5}}[0-9]{{2}}-[A-Za-z0-9_-]{{20,250}}{_E}", "token"),
    ("OPENROUTER_API_KEY", "sk", "-", rf"or-v1-[0-9a-f]{{64}}{_E}", "token"),
    (
        "OPENAI_API_KEY",
        "sk",
        "-",
        rf"(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{{20,250}}|[A-Za-z0-9]{{32,250}}){_E}",
        "token",
    ),
    ("GITLAB_TOKEN", "gl(?:pat|ptt|cbt|oas|imt)", "-", rf"[A-Za-z0-9_.-]{{20,300}}{_E}", "token"),
    ("GITLAB_TOKEN", "gl(?:dt|rt|ft|wt)", "-", rf"[A-Za-z0-9_.-]{{20,300}}{_E}", "token"),
    ("GITLAB_TOKEN", "gl(?:soat|ffct)", "-", rf"[A-Za-z0-9_.-]{{20,300}}{_E}", "token"),
    ("GITLAB_TOKEN", "glagent", "-", rf"[A-Za-z0-9_.-]{{20,300}}{_E}", "token"),
    ("SLACK_TOKEN", "xox[abposre]", "-", r"[A-Za-z0-9-]{10,250}", "token"),
    ("SLACK_TOKEN", r"xoxe\.xox[bp]", "-", r"[A-Za-z0-9-]{10,250}", "token"),
    ("SLACK_TOKEN", "xapp", "-", r"[0-9]-[A-Za-z0-9-]{10,250}", "token"),
    ("PYPI_TOKEN", "pypi", "-", rf"Ag[A-Za-z0-9_-]{{50,1000}}{_E}", "token"),
    ("MAILGUN_API_KEY", "key", "-", rf"[0-9a-f]{{32}}{_E}", "token"),
    ("PERPLEXITY_API_KEY", "pplx", "-", rf"[A-Za-z0-9]{{48}}{_E}", "token"),
    ("XAI_API_KEY", "xai", "-", rf"[A-Za-z0-9]{{80}}{_E}", "token"),
    ("SQUARE_TOKEN", "sq0atp", "-", rf"[A-Za-z0-9_-]{{22}}{_E}", "token"),
    ("SQUARE_TOKEN", "sq0csp", "-", rf"[A-Za-z0-9_-]{{43}}{_E}", "token"),
    ("GOOGLE_OAUTH", "GOCSPX", "-", rf"[A-Za-z0-9_-]{{28}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "PMAK", "-", rf"[a-f0-9]{{24}}-[a-f0-9]{{34}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "NRAK", "-", rf"[A-Z0-9]{{27}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "pul", "-", rf"[a-f0-9]{{40}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "HRKU", "-", rf"[A-Za-z0-9_-]{{58,64}}{_E}", "token"),
    # "A": upper case, rare in prose
    (
        "AWS_ACCESS_KEY_ID",
        "",
        "A",
        rf"(?:3T[A-Z0-9]|KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA)[A-Z0-9]{{16}}{_E62}",
        "token",
    ),
    ("GOOGLE_API_KEY", "", "A", rf"Iza[0-9A-Za-z_-]{{35}}{_E}", "token"),
    ("ATLASSIAN_TOKEN", "", "A", r"T(?:ATT|CTT)3[A-Za-z0-9_=-]{60,300}(?![A-Za-z0-9_=-])", "token"),
    ("AGE_SECRET_KEY", "", "A", rf"GE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{{58}}{_E}", "token"),
    ("SQUARE_TOKEN", "E", "A", rf"AA[A-Za-z0-9_-]{{60}}{_E}", "token"),
    # "J": the third character of a JWT
    (
        "JWT",
        "ey",
        "J",
        r"[A-Za-z0-9_-]{4,8000}\.[A-Za-z0-9_-]{2,16000}\.[A-Za-z0-9_-]{0,8000}(?![A-Za-z0-9_.-])",
        "jwt",
    ),
    # ".": Discord's base64 user id is 24-28 characters, walked back in Python
    ("SENDGRID_API_KEY", "SG", ".", rf"[A-Za-z0-9_-]{{22}}\.[A-Za-z0-9_-]{{43}}{_E}", "token"),
    ("GOOGLE_OAUTH", "ya29", ".", rf"[A-Za-z0-9_-]{{30,2000}}{_E}", "token"),
    ("HASHICORP_TOKEN", "hv[sb]", ".", rf"[A-Za-z0-9_-]{{90,500}}{_E}", "token"),
    ("DEVTOOLS_TOKEN", "dp", ".", rf"pt\.[A-Za-z0-9]{{43}}{_E}", "token"),
    # Literal or lookahead first, long lookbehinds after: most dots fail at once.
    ("HASHICORP_TOKEN", None, ".", rf"atlasv1\.(?<=[a-z0-9]{{14}}\.atlasv1\.)[a-z0-9_=-]{{60,70}}{_E}", "atlas"),
    (
        "DISCORD_TOKEN",
        None,
        ".",
        rf"(?=[A-Za-z0-9_-]{{6}}\.)(?<=[A-Za-z0-9_-]{{23}}\.)[A-Za-z0-9_-]{{6}}\.[A-Za-z0-9_-]{{27,40}}{_E}",
        "discord",
    ),
    # "=": an Azure storage account key is 86 base64 characters and "==", under any label
    ("AZURE_STORAGE_KEY", "[A-Za-z0-9+/]{86}=", "=", r"(?![A-Za-z0-9+/=])", "token"),
    # ":": URLs and Telegram's bot id (8-10 digits, walked back)
    (
        "SLACK_WEBHOOK",
        "https",
        ":",
        r"//hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,300}",
        "token",
    ),
    (
        "DISCORD_WEBHOOK",
        "https",
        ":",
        r"//(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,80}",
        "token",
    ),
    ("TELEGRAM_BOT_TOKEN", None, ":", rf"(?<=[0-9]{{8}}:)AA[A-Za-z0-9_-]{{33}}{_E}", "telegram"),
    ("PASSWORD", "", ":", r"//[^\s:/?#@\"'<>]{0,128}:(?P<value>[^\s/?#@\"'<>]{1,256})@(?=[A-Za-z0-9\[])", "url"),
    # "K", "R": rare upper-case second characters
    ("TWILIO_API_KEY", "S", "K", rf"[0-9a-fA-F]{{32}}{_E}", "token"),
    ("GITLAB_TOKEN", "G", "R", rf"1348941[A-Za-z0-9_-]{{20,64}}{_E}", "token"),
)

# Before a token: not a token character (the lookbehinds cannot see that far
# cheaply; it is checked in Python at the token's start).
_BEFORE_OK = frozenset("".join(chr(code) for code in range(128) if not (chr(code).isalnum() or chr(code) in "_-")))


# --------------------------------------------------------------------------
# Labelled values: one RE2 pass over their triggers
# --------------------------------------------------------------------------

# After the keyword: the rest of the name (``_hash``, ``Key``), an optional
# closing quote, then ``=``, ``:``, ``:=``, ``=>`` or ``,`` (as in
# ``("password", "...")``), or, after a ``--flag``, a space.
# ``os.environ["X"] = ``: a closing ``]`` too. ``, `` only after a quoted
# label (``("password", "...")``, not ``f(api_secret, sid)``). ``is`` in
# prose (``the admin password is ...``). A Kubernetes env entry's label and
# value are on two lines (``name: X`` / ``value: ...``).
_SEPARATOR = (
    r"[\"']?\]?[ \t]{0,4}(?::=|=>|[:=])[ \t]{0,4}|[\"'],[ \t]{0,4}|[ \t]{1,4}(?:is|was)[ \t]{1,4}"
    r"|[\"']?[ \t]*\r?\n[ \t]*value[ \t]*:[ \t]*"
)
_ASSIGN_TRIGGER = (
    rf"(?i:(?:{_LABEL_WORDS})[A-Za-z0-9_.-]{{0,30}}(?:{_SEPARATOR})"
    rf"|--(?:[a-z0-9]+-)?(?:{_LABEL_WORDS})[a-z0-9-]{{0,20}}[ =])"
)
_ASSIGN = (
    rf"(?P<flag>--(?:[A-Za-z0-9]+-)?)?(?P<keyword>(?i:{_LABEL_WORDS}))(?P<tail>[A-Za-z0-9_.-]{{0,30}})"
    rf"(?(flag)[ =]|(?:{_SEPARATOR}))"
    r"(?:\"(?P<dq>[^\"\n\\]{1,512})\"|'(?P<sq>[^'\n]{1,512})'"
    r"|(?P<bare>(?:[^\s\"',;&)}\]<>`]|&(?![A-Za-z_][A-Za-z0-9_]{0,30}=)){1,512}))"
)
_AWS_SECRET_LABEL = r"aws[_.-]?secret[_.-]?(?:access[_.-]?)?key"
# A 40-character labelled value is an AWS secret key when its label names one:
# ``aws_secret_access_key``, ``SecretAccessKey``, ``secret_key``, ``AWS_SECRET``.
_AWS_LABEL = re.compile(r"(?i)aws.?secret|secret.?(?:access.?)?key")
_AWS_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")

# (type, RE2 trigger, re pattern matched at the trigger's start, check)
_LABELLED: tuple[tuple[str, str, str, str], ...] = (
    (
        "AWS_SECRET_ACCESS_KEY",  # ``aws configure set aws_secret_access_key ...``
        rf"(?i:{_AWS_SECRET_LABEL})[\"']?[ \t]{{1,4}}[A-Za-z0-9/+]{{40}}",
        rf"(?i:{_AWS_SECRET_LABEL})[\"']?[ \t]{{1,4}}(?P<value>[A-Za-z0-9/+]{{40}})(?![A-Za-z0-9/+=])",
        "token",
    ),
    (
        "AZURE_STORAGE_KEY",
        r"(?i:AccountKey|SharedAccessKey)=",
        r"(?i:AccountKey|SharedAccessKey)=(?P<value>[A-Za-z0-9+/]{40,100}={0,2})(?![A-Za-z0-9+/=])",
        "token",
    ),
    (
        "PASSWORD",
        r"(?i:\bbasic[ \t]{1,4})[A-Za-z0-9+/]{8}",
        r"(?i:basic)[ \t]{1,4}(?P<value>[A-Za-z0-9+/]{8,1000}={0,2})(?![A-Za-z0-9+/=])",
        "basic",
    ),
    (
        "GENERIC_SECRET",
        r"(?i:\bbearer[ \t]{1,4})[A-Za-z0-9._~+/-]{8}",
        r"(?i:bearer)[ \t]{1,4}(?P<value>[A-Za-z0-9._~+/-]{8,4000}={0,2})(?![A-Za-z0-9._~+/=-])",
        "assign",
    ),
    ("GENERIC_SECRET", _ASSIGN_TRIGGER, _ASSIGN, "assign"),  # or PASSWORD, or AWS_SECRET_ACCESS_KEY
)
# Over 8 KB, the RE2 pass runs only if the text has one of these (a memchr
# each: a search for a longer string costs as much as the pass). The forms
# without them, ``--password x``, ``-p'x'`` and ``aws_secret_access_key KEY``,
# are branches of the ``-`` and ``_`` passes; ``Bearer x``, ``("password",
# "x")`` and ``the password is x`` need a ``:`` or ``=`` somewhere in such a
# long text.
_LABELLED_GATES = ("=", ":")
_ALWAYS = 8192
"""Texts up to this long get the RE2 pass whatever they have (it costs microseconds)."""

_ASSIGNED = frozenset({"PASSWORD", "GENERIC_SECRET", "AWS_SECRET_ACCESS_KEY"})

TYPES: tuple[str, ...] = (
    *dict.fromkeys([*(token[0] for token in _TOKENS), *(rule[0] for rule in _LABELLED), "PASSWORD"]),
    "HIGH_ENTROPY",
)
"""Every type this plugin can report."""

_SWITCHES = {kind: kind.lower() for kind in TYPES if kind != "HIGH_ENTROPY"}

_HIGH_ENTROPY = r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{{{min},}}={{0,2}}(?![A-Za-z0-9+/_=-])"
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----")


def _jwt_ok(value: str) -> bool:
    header = value.partition(".")[0]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def _width(pattern: str) -> int:
    """The fixed width of ``pattern`` (a lookbehind's)."""
    low, high = re._parser.parse(pattern).getwidth()  # type: ignore[attr-defined]
    assert low == high, pattern
    return int(low)


def _label_start(text: str, index: int) -> int:
    """Where the identifier ending just before ``index`` starts (``DB_`` of ``DB_PASSWORD``)."""
    start = index
    limit = max(0, index - 64)
    while start > limit and (text[start - 1].isalnum() or text[start - 1] in "_.-"):
        start -= 1
    return start


def _walk_back(text: str, index: int, chars: str, most: int) -> int:
    """How far before ``index`` a run of ``chars`` goes, up to ``most`` (more: -1)."""
    start = index
    while start > 0 and text[start - 1] in chars:
        start -= 1
        if index - start > most:
            return -1
    return start


_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

# Names that describe a secret rather than hold one: ``token_type``,
# ``max_tokens``, ``password_policy``, ``secret_name``...
_DESCRIBING = frozenset(
    [
        "name",
        "names",
        "type",
        "types",
        "id",
        "ids",
        "count",
        "counts",
        "len",
        "length",
        "size",
        "url",
        "uri",
        "urls",
        "file",
        "files",
        "path",
        "dir",
        "arn",
        "ref",
        "refs",
        "policy",
        "policies",
        "hint",
        "field",
        "label",
        "expiry",
        "expires",
        "expiration",
        "expired",
        "ttl",
        "max",
        "min",
        "limit",
        "limits",
        "prefix",
        "format",
        "endpoint",
        "mode",
        "enabled",
        "disabled",
        "required",
        "header",
        "param",
        "params",
        "usage",
        "used",
        "input",
        "output",
        "total",
        "env",
        "var",
        "vars",
        "reset",
        "rotation",
        "manager",
        "store",
        "provider",
        "version",
        "regex",
        "pattern",
        "validation",
        "strength",
        "tokens",
        "tokenizer",
        "location",
        "source",
        "kind",
        "method",
        "algorithm",
        "scheme",
        "hash",
        "hashed",
        "salt",
        "iterations",
        "rounds",
        "timeout",
        "lifetime",
        "age",
        "keyword",
        "keywords",
        "placeholder",
        "description",
        "title",
    ]
)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")


def _describes(label: str) -> bool:
    """Whether a label names something about a secret (``token_type``), not a secret."""
    return any(word.lower() in _DESCRIBING for word in _WORDS.findall(label))


# --------------------------------------------------------------------------
# The finder
# --------------------------------------------------------------------------


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False
    return options


_Branch = tuple[str, int, str]  # type, characters before the lead (-1: walked back), check


class _Finder:
    """The enabled types: a :mod:`re` pass per lead character, one RE2 pass for labelled values."""

    def __init__(
        self,
        kinds: set[str],
        entropy: HighEntropy,
        assignments: Assignments | None = None,
        allow_list: frozenset[str] = frozenset(),
    ) -> None:
        self.kinds = kinds
        self.allow = allow_list
        self.gate = assignments or Assignments()
        self.passes: list[tuple[str, re.Pattern[str], dict[str, _Branch]]] = []
        leads: dict[str, list[tuple[str, str | None, str, str, str]]] = {}
        for token in _TOKENS:
            if token[0] in kinds or (token[4] == "flag" and kinds & _ASSIGNED):
                leads.setdefault(token[2], []).append(token)
        for lead, tokens in leads.items():
            branches: dict[str, _Branch] = {}
            parts = []
            for index, (kind, before, _, after, check) in enumerate(tokens):
                name = f"t{index}"
                behind = "" if before is None else f"(?<={before}{re.escape(lead)})"
                parts.append(f"(?P<{name}>{behind}{after})")
                width = -1 if before is None else _width(before)
                branches[name] = (kind, width, check)
            pattern = re.compile(f"{re.escape(lead)}(?:{'|'.join(parts)})", re.DOTALL)
            self.passes.append((lead, pattern, branches))
        self.assign = re.compile(_ASSIGN) if kinds & _ASSIGNED else None
        self.labelled: list[tuple[str, re.Pattern[str], str]] = []
        triggers = []
        for kind, trigger, pattern_text, check in _LABELLED:
            if kind in kinds or (check == "assign" and kinds & _ASSIGNED):
                self.labelled.append((kind, re.compile(pattern_text), check))
                triggers.append(f"({trigger})")
        # Capture groups tell which rule's trigger matched; RE2 reports them
        # all in one call per match.
        self.trigger = re2.compile("|".join(triggers).encode(), _re2_options()) if triggers else None
        self._match = getattr(getattr(self.trigger, "_regexp", None), "Match", None)
        self.entropy = re.compile(_HIGH_ENTROPY.format(min=entropy.min_length)) if entropy.enabled else None
        self.threshold = entropy.threshold

    def find(self, text: str) -> list[Finding]:
        """The secrets in ``text``: ``(type, start, end)``, in order, not overlapping."""
        found: list[Finding] = []
        allow = self.allow
        # A text often repeats a token (a log, a config echoed back): vet each
        # distinct value once per call.
        rejected: dict[str, bool] = {}
        for gate, pattern, branches in self.passes:
            if gate not in text:
                continue
            for match in pattern.finditer(text):
                kind, width, check = branches[match.lastgroup]  # type: ignore[index]
                lead, end = match.span()
                start = lead - width
                if check == "token":
                    if start and text[start - 1] not in _BEFORE_OK:
                        continue
                    value = text[start:end]
                    bad = rejected.get(value)
                    if bad is None:
                        bad = rejected[value] = is_placeholder(value) or value in allow
                    if not bad:
                        found.append((kind, start, end))
                    continue
                if check == "value":
                    start, end = match.span("value")
                    value = text[start:end]
                    if not (is_placeholder(value) or value in allow):
                        found.append((kind, start, end))
                    continue
                if check == "pflag":  # mysql -p'...'
                    start, end = match.span("value" if match.group("value") is not None else "dvalue")
                    finding = self._assigned("PASSWORD", text, start, end, "")
                    if finding is not None:
                        found.append(finding)
                    continue
                if check == "flag":
                    assign = self.assign
                    flagged = None if assign is None else assign.match(text, start)
                    finding = None if flagged is None else self._labelled(kind, "assign", text, flagged)
                    if finding is not None:
                        found.append(finding)
                    continue
                if width < 0:
                    start = self._walk(text, lead, check)
                    if start < 0:
                        continue
                elif start and text[start - 1] not in _BEFORE_OK and check != "url":
                    continue
                if check == "pem":
                    closing = _PEM_END.search(text, end)
                    end = len(text) if closing is None else closing.end()
                    if text[start:end] in allow:
                        continue
                elif check == "jwt":
                    value = text[start:end]
                    if not _jwt_ok(value) or value in allow:
                        continue
                elif check == "url":
                    start, end = match.span("value")
                    if self._assigned("PASSWORD", text, start, end, "") is None:
                        continue
                elif is_placeholder(text[start:end]) or text[start:end] in allow:  # discord, telegram
                    continue
                found.append((kind, start, end))
        if self.trigger is not None and (len(text) <= _ALWAYS or any(gate in text for gate in _LABELLED_GATES)):
            self._find_labelled(text, found)
        if self.entropy is not None:
            for match in self.entropy.finditer(text):
                value = match.group()
                if self._entropic(value) and value not in allow:
                    found.append(("HIGH_ENTROPY", match.start(), match.end()))
        if len(found) > 1:
            found = _resolve(found)
        return found

    @staticmethod
    def _walk(text: str, lead: int, check: str) -> int:
        if check == "atlas":
            start = lead - 14
            return start if start == 0 or (start > 0 and text[start - 1] in _BEFORE_OK) else -1
        if check == "discord":
            start = _walk_back(text, lead, _TOKEN_CHARS, 28)
            return start if start >= 0 and lead - start >= 23 and text[start] in "MNO" else -1
        # Telegram; also in its API URLs, ``https://api.telegram.org/bot<token>/``.
        start = _walk_back(text, lead, "0123456789", 10)
        if start < 0 or not (start == 0 or text[start - 1] in _BEFORE_OK or text[start - 3 : start] == "bot"):
            return -1
        return start

    def _find_labelled(self, text: str, found: list[Finding]) -> None:
        # RE2 reads UTF-8; ASCII with "?" for every other character keeps one
        # byte per character, so offsets are the text's.
        data = text.encode() if text.isascii() else text.encode("ascii", "replace")
        rules = self.labelled
        spans_at = self._spans_at
        position, end = 0, len(data)
        while position < end:
            spans = spans_at(data, position, end)
            if spans is None:
                return
            start, stop = spans[0]
            position = stop if stop > start else start + 1
            for index in range(1, len(spans)):
                if spans[index][0] >= 0:
                    kind, pattern, check = rules[index - 1]
                    match = pattern.match(text, spans[index][0])
                    finding = None if match is None else self._labelled(kind, check, text, match)
                    if finding is not None:
                        found.append(finding)
                        # No trigger inside a value found: ``password=`` * 10_000
                        # is vetted once per value, not once per copy.
                        position = max(position, finding[2])
                    break

    def _spans_at(self, data: bytes, position: int, end: int) -> Any:
        """The spans of the first trigger match from ``position`` (None: no more)."""
        match = self._match
        if match is None:  # pragma: no cover - another google-re2 layout
            found = self.trigger.search(data, position, end)  # type: ignore[union-attr]
            return None if found is None else [found.span(index) for index in range(len(self.labelled) + 1)]
        # google-re2's finditer makes a match object per match in Python; the
        # compiled RE2 object's Match() is one C call.
        spans = match(re2._Anchor.UNANCHORED, data, position, end)
        return None if spans[0][0] < 0 else spans

    def _labelled(self, kind: str, check: str, text: str, match: re.Match[str]) -> Finding | None:
        if check == "token":
            start, end = match.span("value")
            value = text[start:end]
            return None if is_placeholder(value) or value in self.allow else (kind, start, end)
        if check == "basic":
            start, end = match.span("value")
            try:
                decoded = base64.b64decode(text[start:end], validate=True).decode()
            except (binascii.Error, ValueError):
                return None
            user, colon, password = decoded.partition(":")
            if not colon or not password.isprintable() or not user.isprintable():
                return None
            return self._assigned("PASSWORD", text, start, end, "", password)
        groups = match.groupdict()
        if "keyword" not in groups:  # Bearer
            start, end = match.span("value")
            return self._assigned("GENERIC_SECRET", text, start, end, "")
        keyword = groups["keyword"].lower()
        label = text[_label_start(text, match.start("keyword")) : match.end("tail")]
        kind = "PASSWORD" if keyword.startswith(("pass", "pwd")) else "GENERIC_SECRET"
        bare = groups["bare"] is not None
        start, end = match.span("bare" if bare else "dq" if groups["dq"] is not None else "sq")
        if kind == "GENERIC_SECRET" and _AWS_LABEL.search(label) and _AWS_VALUE.fullmatch(text, start, end):
            kind = "AWS_SECRET_ACCESS_KEY"
        return self._assigned(kind, text, start, end, label, bare=bare)

    def _assigned(
        self,
        kind: str,
        text: str,
        start: int,
        end: int,
        label: str,
        password: str | None = None,
        *,
        bare: bool = False,
    ) -> Finding | None:
        """Vet a labelled value: placeholders, then names that describe, then the gate.

        A provider token in the value is found by its own pass too; the
        longer finding wins (the token's type, when they are the same).
        """
        if kind not in self.kinds:
            return None
        value = text[start:end].strip() if password is None else password
        if value in self.allow or is_placeholder(value) or _RUN.search(value) or _reference(value, bare):
            return None
        if label and _describes(label):
            return None
        if kind == "AWS_SECRET_ACCESS_KEY":
            return kind, start, end
        gate = self.gate
        if gate.entropy_gate:
            if _PLAIN_WORDS.fullmatch(value):
                return None
            if kind == "PASSWORD":
                if len(value) < gate.password_min_length or shannon_entropy(value) < gate.password_min_entropy:
                    return None
            elif len(value) < gate.min_length or shannon_entropy(value) < gate.min_entropy:
                return None
        return kind, start, end

    def _entropic(self, value: str) -> bool:
        return (
            any(char.isdigit() for char in value)
            and any(char.isalpha() for char in value)
            and shannon_entropy(value.rstrip("=")) >= self.threshold
        )


def _resolve(found: list[Finding]) -> list[Finding]:
    """Keep the earliest, then the longest, of overlapping findings (the first found on a tie)."""
    found.sort(key=lambda span: (span[1], span[1] - span[2]))
    kept: list[Finding] = []
    last = -1
    for span in found:
        if span[1] >= last:
            kept.append(span)
            last = span[2]
    return kept


_DEFAULT_FINDER = _Finder(set(_SWITCHES), HighEntropy())


def find_secrets(text: str) -> list[tuple[str, int, int]]:
    """The secrets of the default types in ``text``: ``(type, start, end)``, in order."""
    return _DEFAULT_FINDER.find(text)


class SecretsDetectionPlugin(TextFilterPlugin):
    """Redacts or blocks credentials; see the module docstring for the types."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = settings = parse_config(SecretsDetectionSettings, self.config)
        self.blocks = settings.action == "block"
        enabled = {kind for kind, switch in _SWITCHES.items() if getattr(settings.detect, switch)}
        default = not settings.high_entropy.enabled and not settings.allow_list
        if enabled == set(_SWITCHES) and default and settings.assignments == Assignments():
            self._finder = _DEFAULT_FINDER
        else:
            self._finder = _Finder(enabled, settings.high_entropy, settings.assignments, frozenset(settings.allow_list))

    def filter_text(self, text: str, found: Findings) -> str:
        """Redact the secrets in ``text`` (or only count them, when blocking)."""
        # The shortest secret and its label (``pwd=abcdef``) are 10 characters.
        if len(text) < 10:
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
