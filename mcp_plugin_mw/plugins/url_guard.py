"""
URL guard
=========

:class:`URLGuardPlugin` finds URLs in tool and prompt arguments and in
resource URIs (and, with ``scan_results: true``, in results) and refuses the
message when one points somewhere it must not: a scheme not allowed, an
internal address (server-side request forgery), a denied or unlisted domain,
a deceptive international name.

.. code-block:: yaml

    - name: urls
      kind: url_guard
      config:
        schemes: [http, https]            # default
        ssrf: true                        # default: internal addresses are refused
        allow_networks: ["10.20.0.0/16"]  # exempt from the SSRF check
        deny_domains: [evil.example]
        allow_domains: [example.com, docs.python.org]   # when given, only these
        mixed_script: block               # default
        scan_results: false               # default
        resolve_dns: false                # default

Settings (defaults in brackets):

* ``schemes`` (``[http, https]``): schemes a URL in arguments or results may
  have. ``resource_schemes`` (any): the same for ``resources/read`` URIs,
  which MCP servers name with schemes of their own (``file://``,
  ``res://``); give a list to restrict them. The host checks below apply to
  resource URIs that have a host all the same.
* ``ssrf`` (``true``): refuse hosts that are, or spell, an address of one of
  these classes (rule ``ssrf:<class>``): ``metadata`` (169.254.169.254,
  169.254.170.2, 100.100.100.200, fd00:ec2::254, and the names
  ``metadata.google.internal``, ``metadata``, ``instance-data``),
  ``loopback`` (127/8, ::1, ``localhost``, ``*.localhost``,
  ``localhost.localdomain``, ``ip6-localhost``, ``ip6-loopback``),
  ``private`` (10/8, 172.16/12, 192.168/16, fc00::/7), ``link_local``
  (169.254/16, fe80::/10), ``cgnat`` (100.64/10), ``unspecified`` (0/8, ::),
  ``multicast`` (224/4, ff00::/8) and ``reserved`` (every other address that
  is not globally reachable: 240/4, broadcast, documentation and benchmark
  ranges, site-local IPv6, ...). IPv6 addresses that carry an IPv4 one
  (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``, NAT64
  ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo) are
  judged by the IPv4 address too.
* ``allow_networks`` (``[]``): CIDRs exempt from the SSRF check (an internal
  API the tools may call); ``localhost`` is exempt only when both 127.0.0.1
  and ::1 are.
* ``deny_domains`` (``[]``) and ``allow_domains`` (none): a domain covers
  itself and its subdomains (``example.com`` covers ``api.example.com``, not
  ``badexample.com``; ``*.example.com`` and ``.example.com`` mean the same).
  When ``allow_domains`` is given every host must be covered by it; an IP
  address host must be listed as that address. Rules ``domain_deny``,
  ``domain_allow``.
* ``mixed_script`` (``block``): a host label mixing Latin, Greek, Cyrillic,
  Armenian or Cherokee letters (``xn--pple-43d.com``, "apple" with a Cyrillic ``a``), in
  Unicode or as punycode (``xn--...``), is refused (``idn:mixed_script``);
  ``allow`` lets it through. Punycode that does not decode is always refused
  (``idn:invalid``). A label written wholly in a look-alike script is not
  detected.
* ``allow_userinfo`` (``true``): ``false`` refuses URLs carrying a user name
  or password (``userinfo``).
* ``ports`` (any): ports allowed, e.g. ``[80, 443]`` (``port``); a URL
  without a port has its scheme's default.
* ``bare_hosts`` (``true``): a whole argument of the form ``host:port`` or
  ``host/path`` (no scheme) whose host is a dotted-quad or bracketed IP
  address or a loopback or metadata name (``127.0.0.1:6379``,
  ``169.254.169.254/latest``) is checked as an ``http`` URL's host: servers
  often prepend a scheme.
* ``scan_results`` (``false``): also scan tool results, rendered prompts and
  resource contents (the post hooks join the default hooks).
* ``resolve_dns`` (``false``): resolve every host name with
  :func:`socket.getaddrinfo` and apply the SSRF check to each address
  (``dns:<class>``); a name that does not resolve is refused
  (``dns:unresolved``) unless ``dns_failure: allow``. The plugin then runs
  in a worker thread (DNS lookups block).

Where URLs are found: every string argument (at any depth) that is a URL as
a whole (after the leading and trailing spaces and control characters
browsers strip, and with tabs and newlines removed, as they are), and every
``scheme://`` (or ``scheme:\\\\``) URL inside longer text. A whole string is a
URL when it starts with a scheme followed by ``//``, or with a scheme that
browsers and HTTP clients read without slashes (``http:host``, ``file:``,
``javascript:``, ``data:``, ...), or with ``//`` (relative to the page's
scheme).

How a URL is read: the same URL is split three ways, as the WHATWG URL
standard (browsers, and servers that follow it: a ``\\`` is a ``/`` in
``http`` URLs, any number of slashes may follow the scheme, the host ends at
``/ \\ ? #`` and comes after the last ``@``), as :func:`urllib.parse.urlsplit`
(``requests``, ``urllib3``, ``aiohttp`` read alike) and, when installed, as
``httpx.URL``. Each host found is normalised: percent-decoded, mapped as
IDNA does (full-width and circled characters, upper case, ideographic full
stops), its trailing dot dropped; one that ends in a number is an IPv4
address in every spelling C's ``inet_aton`` and the WHATWG parser accept
(``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``) and in the
all-decimal reading of its parts. (A plain ``scheme://host[:port]/...`` URL,
with an ASCII host and no backslash, ``@``, ``%``, space or control
character, is read once: the parsers cannot differ on it.) A URL is refused
when any reading's host is refused, when the readings find different hosts
or a host spells several addresses (``ambiguous``:
``http://evil.example\\@good.example``), or when its host has characters no
host may have (``invalid_host``).

A refusal is a violation with code ``URL_BLOCKED`` (HTTP 403) naming the
rule and the normalised host (``details: {rule, host}``), never the URL:
its path and query may carry tokens.

.. warning::

    The guard sees the URLs a client sends, not what the server does with
    them: it cannot see redirects the server follows (a public URL that
    answers ``302 Location: http://169.254.169.254/``), URLs the server
    builds or fetches on its own, or the addresses a name resolves to when
    the server looks it up. ``resolve_dns`` checks the addresses at the time
    of the check; a name whose DNS answer changes between that check and the
    server's own lookup (DNS rebinding) gets through. Block internal
    addresses at the network layer too (an egress proxy, a firewall, the
    metadata service's hop limit) and have the server's HTTP client refuse
    redirects to them.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import re
import socket
import unicodedata
import urllib.parse
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import field_validator

from ..models import (
    Category,
    HookType,
    PluginConfig,
    PluginContext,
    PluginResult,
    PluginViolation,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from ..plugin import Plugin
from ._base import transform_payload
from ._config import Settings, parse_config

try:
    import httpx
except ImportError:  # pragma: no cover - exercised where httpx is missing
    httpx = None  # type: ignore[assignment]

__all__ = ["URLGuardPlugin", "URLGuardSettings", "check_url"]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PRE_HOOKS = (HookType.TOOL_PRE_INVOKE, HookType.PROMPT_PRE_FETCH, HookType.RESOURCE_PRE_FETCH)
POST_HOOKS = (HookType.TOOL_POST_INVOKE, HookType.PROMPT_POST_FETCH, HookType.RESOURCE_POST_FETCH)

SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
"""Schemes the WHATWG standard parses specially (``\\`` is ``/``, slashes optional)."""

_SLASHLESS_SCHEMES = SPECIAL_SCHEMES | {"javascript", "vbscript", "data", "gopher", "dict", "jar", "netdoc"}
"""Schemes a whole string is a URL with even without ``//``."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


def _networks(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Checked in this order: the first class an address falls in names the rule.
_CLASSES: tuple[tuple[str, tuple[Network, ...]], ...] = (
    (
        "metadata",
        _networks("169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32", "fd00:ec2::254/128"),
    ),
    ("loopback", _networks("127.0.0.0/8", "::1/128")),
    ("unspecified", _networks("0.0.0.0/8", "::/128")),
    ("private", _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("link_local", _networks("169.254.0.0/16", "fe80::/10")),
    ("cgnat", _networks("100.64.0.0/10")),
    ("multicast", _networks("224.0.0.0/4", "ff00::/8")),
)

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"})
_LOOPBACK_ADDRESSES = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
_METADATA_ADDRESS = ipaddress.IPv4Address("169.254.169.254")

_NAT64 = _networks("64:ff9b::/96", "64:ff9b:1::/48")
_COMPATIBLE = ipaddress.IPv6Network("::/96")

_CONFUSABLE_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC", "ARMENIAN", "CHEROKEE")

# Characters no host may have, after percent-decoding (WHATWG's forbidden
# domain code points, C0 controls and DEL included).
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_WHATWG_STRIP = "".join(chr(c) for c in range(0x21))
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_AUTHORITY_END = re.compile(r"[/\\?#]")
_AUTHORITY_END_NON_SPECIAL = re.compile(r"[/?#]")
_PROSE_MARK = re.compile(r":[/\\][/\\]")
# scheme://host[:port][/?#rest] with a plain ASCII host, no backslash, "@",
# "%", space or control character before the path: every parser finds the
# same scheme, host and port in it.
_PLAIN_URL = re.compile(
    r"([A-Za-z][A-Za-z0-9+.\-]*)://([A-Za-z0-9.\-]+)(?::([0-9]{1,5}))?(?:[/?#][\x21-\x5b\x5d-\x7e]*)?"
)
_PROSE_END = re.compile(r"[\s<>\"'`]")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_TRAILING = ".,;:!?'\"*"
_BARE = re.compile(r"(\[[0-9A-Fa-f:.%]+\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9.\-]+)(:[0-9]*)?(/.*)?", re.DOTALL)

MAX_SCHEME = 32
"""A prose URL's scheme is read back at most this many characters from its ``://``."""


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def _domain(value: str) -> str:
    name = value.strip().lower().removeprefix("*.").lstrip(".").rstrip(".")
    host = canonical_host(name)
    if host.kind == "invalid" or not name:
        raise ValueError(f"{value!r} is not a domain or an IP address")
    return host.text


class URLGuardSettings(Settings):
    """``config:`` of :class:`URLGuardPlugin`."""

    schemes: tuple[str, ...] = ("http", "https")
    resource_schemes: tuple[str, ...] | None = None
    ssrf: bool = True
    allow_networks: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()
    allow_domains: tuple[str, ...] | None = None
    mixed_script: Literal["block", "allow"] = "block"
    allow_userinfo: bool = True
    ports: tuple[int, ...] | None = None
    bare_hosts: bool = True
    scan_results: bool = False
    resolve_dns: bool = False
    dns_failure: Literal["block", "allow"] = "block"

    @field_validator("schemes", "resource_schemes")
    @classmethod
    def _schemes(cls, schemes: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if schemes is None:
            return None
        for scheme in schemes:
            if not _SCHEME.fullmatch(scheme + ":"):
                raise ValueError(f"{scheme!r} is not a URL scheme")
        return tuple(scheme.lower() for scheme in schemes)

    @field_validator("allow_networks")
    @classmethod
    def _cidrs(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network: {exc}") from None
        return cidrs

    @field_validator("deny_domains", "allow_domains")
    @classmethod
    def _domains(cls, domains: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if domains is None else tuple(_domain(domain) for domain in domains)

    @field_validator("ports")
    @classmethod
    def _ports(cls, ports: tuple[int, ...] | None) -> tuple[int, ...] | None:
        for port in ports or ():
            if not 0 <= port <= 65535:
                raise ValueError(f"{port} is not a port")
        return ports


# --------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------


class Host(NamedTuple):
    """A normalised host: ``kind`` is ``ip``, ``name`` or ``invalid``.

    ``text`` is the address or the ASCII (punycode) name; ``addresses`` every
    address the spelling may mean (several when readings of a numeric host
    differ); ``unicode`` the name's labels as Unicode, for the script check.
    """

    kind: str
    text: str
    addresses: frozenset[IPAddress] = frozenset()
    unicode: str = ""
    problem: str = ""
    mixed_script: bool = False


def _ipv4_number(part: str) -> int | None:
    """One part of a WHATWG IPv4 host: decimal, ``0x`` hex or ``0`` octal."""
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
        if not digits:
            return 0
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits.isascii() or not digits.isalnum():
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4 or any(part == "" for part in parts):
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    values: list[int] = [number for number in numbers if number is not None]
    if any(value > 255 for value in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    address = values[-1]
    for index, value in enumerate(values[:-1]):
        address += value << (8 * (3 - index))
    return ipaddress.IPv4Address(address)


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isascii() and last.isdigit():
        return True
    return last[:2] in ("0x", "0X") and all(c in "0123456789abcdefABCDEF" for c in last[2:])


def _numeric_addresses(host: str) -> frozenset[IPAddress]:
    """Every IPv4 address a numeric host spells, to WHATWG, ``inet_aton`` and plain decimal readers."""
    found: set[IPAddress] = set()
    whatwg = _whatwg_ipv4(host)
    if whatwg is not None:
        found.add(whatwg)
    with contextlib.suppress(OSError, ValueError):
        found.add(ipaddress.IPv4Address(socket.inet_aton(host)))
    parts = host.rstrip(".").split(".")
    if len(parts) == 4 and all(part.isascii() and part.isdigit() and int(part) <= 255 for part in parts):
        # Readers that take 0177 for decimal 177.
        found.add(ipaddress.IPv4Address(".".join(str(int(part)) for part in parts)))
    return frozenset(found)


def _mixed_script(label: str) -> bool:
    scripts: set[str] = set()
    for char in label:
        if char.isascii() and not char.isalpha():
            continue
        try:
            name = unicodedata.name(char)
        except ValueError:
            continue
        script = next((s for s in _CONFUSABLE_SCRIPTS if name.startswith(s + " ")), None)
        if script is not None:
            scripts.add(script)
    return len(scripts) > 1


MAX_HOST = 300
"""Longer hosts are refused unread (DNS names end at 253): they would bloat the cache."""


def canonical_host(raw: str) -> Host:
    """Normalise a host as found in a URL (see the module docstring)."""
    if len(raw) > MAX_HOST:
        return Host("invalid", raw[:40] + "...", problem="too long")
    return _canonical_host(raw)


@functools.lru_cache(maxsize=4096)
def _canonical_host(raw: str) -> Host:
    try:
        text = urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return Host("invalid", raw, problem="percent-encoding that is not UTF-8")
    if text.startswith("[") and text.endswith("]"):
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            return Host("invalid", text, problem="not an IPv6 address")
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(text[1:-1].partition("%")[0])
        return Host("ip", str(address), frozenset({address}))
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text.translate(_DOTS)).casefold())
    if _FORBIDDEN_HOST.search(text):
        return Host("invalid", text, problem="a character no host may have")
    if not text.strip("."):
        return Host("invalid", text, problem="empty")
    if _ends_in_number(text):
        addresses = _numeric_addresses(text)
        if not addresses:
            return Host("invalid", text, problem="ends in a number but is no IPv4 address")
        first = min(addresses, key=str) if len(addresses) > 1 else next(iter(addresses))
        return Host("ip", str(first), addresses)
    name = text.rstrip(".")
    ascii_labels: list[str] = []
    unicode_labels: list[str] = []
    for label in name.split("."):
        if label.startswith("xn--"):
            try:
                decoded = label[4:].encode("ascii").decode("punycode")
                # UTS 46 refuses what does not round-trip or decodes to plain ASCII.
                valid = not decoded.isascii() and decoded.encode("punycode").decode("ascii") == label[4:]
            except (UnicodeError, ValueError):
                valid = False
            if not valid:
                return Host("name", name, problem="idn:invalid")
            ascii_labels.append(label)
            unicode_labels.append(decoded)
        elif label.isascii():
            ascii_labels.append(label)
            unicode_labels.append(label)
        else:
            try:
                ascii_labels.append(label.encode("idna").decode("ascii"))
            except UnicodeError:
                return Host("invalid", name, problem="not a valid international name")
            unicode_labels.append(label)
    mixed = any(not label.isascii() and _mixed_script(label) for label in unicode_labels)
    return Host("name", ".".join(ascii_labels), unicode=".".join(unicode_labels), mixed_script=mixed)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    last32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64) or (address in _COMPATIBLE and int(address) > 1):
        found.append(last32)
    return found


def address_class(address: IPAddress) -> str | None:
    """The SSRF class of ``address`` (``loopback``, ...), or None when it is globally reachable."""
    for name, networks in _CLASSES:
        if any(address.version == network.version and address in network for network in networks):
            return name
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            found = address_class(inner)
            if found is not None:
                return found
    if not address.is_global:
        return "reserved"
    return None


# --------------------------------------------------------------------------
# Reading URLs
# --------------------------------------------------------------------------


class Reading(NamedTuple):
    """How one parser splits a URL: scheme, host as written (None: no host), port text, userinfo."""

    scheme: str | None
    host: str | None
    port: str
    userinfo: bool


def _split_authority(authority: str) -> tuple[str, str, bool] | None:
    _, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        host, _, port = hostport.partition(":")
    if port and not port.isdigit():
        return None
    return host, port, bool(at)


def read_whatwg(url: str) -> Reading | None:
    """Split ``url`` as the WHATWG URL standard does; None when it would refuse it."""
    text = url.strip(_WHATWG_STRIP).translate(_TAB_NEWLINE)
    match = _SCHEME.match(text)
    scheme = match.group()[:-1].lower() if match else None
    rest = text[match.end() :] if match else text
    if scheme is None or scheme in SPECIAL_SCHEMES:
        if scheme is None and not rest.startswith(("//", "\\\\", "/\\", "\\/")):
            return None
        if scheme == "file":
            # file://host/path: exactly two slashes before the host, which may be empty.
            if rest[:1] not in ("/", "\\") or rest[1:2] not in ("/", "\\"):
                return Reading(scheme, None, "", False)
            after = rest[2:]
        else:
            after = rest.lstrip("/\\")
        end = _AUTHORITY_END.search(after)
    else:
        if not rest.startswith("//"):
            return Reading(scheme, None, "", False)
        after = rest[2:]
        end = _AUTHORITY_END_NON_SPECIAL.search(after)
    authority = after[: end.start()] if end else after
    split = _split_authority(authority)
    if split is None:
        return None
    host, port, userinfo = split
    if not host:
        return None if scheme in SPECIAL_SCHEMES - {"file"} or scheme is None else Reading(scheme, None, port, userinfo)
    return Reading(scheme, host, port, userinfo)


def read_urllib(url: str) -> Reading | None:
    """Split ``url`` as :func:`urllib.parse.urlsplit` does; None when it raises."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    split = _split_authority(parts.netloc) if parts.netloc else ("", "", False)
    if split is None:
        return None
    host, port, userinfo = split
    return Reading(parts.scheme or None, host or None, port, userinfo)


def read_httpx(url: str) -> Reading | None:
    """Split ``url`` as ``httpx.URL`` does; None when it raises or httpx is missing."""
    if httpx is None:
        return None
    try:
        parsed = httpx.URL(url)
        host = parsed.host
        port = parsed.port
    except Exception:  # httpx raises several types for bad URLs
        return None
    if host and ":" in host:
        host = f"[{host}]"
    return Reading(parsed.scheme or None, host or None, "" if port is None else str(port), bool(parsed.userinfo))


READERS: tuple[Callable[[str], Reading | None], ...] = (read_whatwg, read_urllib, read_httpx)


# --------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------


class Blocked(NamedTuple):
    """Why a URL is refused: the rule and the normalised host (if any)."""

    rule: str
    host: str | None


def _covered(name: str, domains: tuple[str, ...]) -> bool:
    return any(name == domain or name.endswith("." + domain) for domain in domains)


class Policy:
    """The compiled settings; :meth:`check` judges one URL."""

    def __init__(self, settings: URLGuardSettings) -> None:
        self.settings = settings
        self.schemes = frozenset(settings.schemes)
        self.resource_schemes = None if settings.resource_schemes is None else frozenset(settings.resource_schemes)
        self.allow_networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in settings.allow_networks)
        self.resolver: Callable[[str], list[IPAddress]] = _resolve

    def _ssrf(self, addresses: frozenset[IPAddress] | list[IPAddress], prefix: str) -> str | None:
        if not self.settings.ssrf:
            return None
        for address in sorted(addresses, key=str):
            if any(address.version == net.version and address in net for net in self.allow_networks):
                continue
            found = address_class(address)
            if found is not None:
                return f"{prefix}:{found}"
        return None

    def check_host(self, host: Host) -> str | None:
        """The rule ``host`` breaks, or None."""
        settings = self.settings
        if host.kind == "invalid":
            return "invalid_host"
        if host.kind == "ip":
            rule = self._ssrf(host.addresses, "ssrf")
            if rule is not None:
                return rule
            if len(host.addresses) > 1:
                return "ambiguous"
            if host.text in settings.deny_domains:
                return "domain_deny"
            if settings.allow_domains is not None and host.text not in settings.allow_domains:
                return "domain_allow"
            return None
        name = host.text
        if name in _METADATA_NAMES:
            rule = self._ssrf(frozenset({_METADATA_ADDRESS}), "ssrf")
            if rule is not None:
                return "ssrf:metadata"
        if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
            rule = self._ssrf(frozenset(_LOOPBACK_ADDRESSES), "ssrf")
            if rule is not None:
                return rule
        if host.problem:
            return host.problem
        if settings.mixed_script == "block" and host.mixed_script:
            return "idn:mixed_script"
        if _covered(name, settings.deny_domains):
            return "domain_deny"
        if settings.allow_domains is not None and not _covered(name, settings.allow_domains):
            return "domain_allow"
        if settings.resolve_dns and settings.ssrf:
            try:
                resolved = self.resolver(name)
            except OSError:
                resolved = []
            if not resolved:
                return "dns:unresolved" if settings.dns_failure == "block" else None
            return self._ssrf(resolved, "dns")
        return None

    def check(self, url: str, *, resource: bool = False, ssrf_only: bool = False) -> Blocked | None:
        """Judge one URL; ``ssrf_only`` checks a bare host's address class only."""
        plain = _PLAIN_URL.fullmatch(url)
        if plain is not None:
            # Nothing the parsers could read differently: one reading is all of them.
            scheme, host_text, port = plain.groups()
            readings = [Reading(scheme.lower(), host_text, port or "", False)]
        else:
            readings = [reading for reader in READERS if (reading := reader(url)) is not None]
        if not readings:
            return Blocked("invalid_url", None)
        first = readings[0]
        if not ssrf_only:
            allowed = self.resource_schemes if resource else self.schemes
            schemes = {reading.scheme for reading in readings if reading.scheme is not None}
            if allowed is not None and any(scheme not in allowed for scheme in schemes):
                return Blocked("scheme", None)
        hosts: dict[str | None, Host | None] = {}
        for reading in readings:
            hosts.setdefault(reading.host, None if reading.host is None else canonical_host(reading.host))
        for host in hosts.values():
            if host is None:
                continue
            if ssrf_only:
                rule = self._ssrf(host.addresses, "ssrf") if host.kind == "ip" else self._bare_name(host)
            else:
                rule = self.check_host(host)
            if rule is not None:
                return Blocked(rule, host.text)
        distinct = {None if host is None else host.text for host in hosts.values()}
        if len(distinct) > 1:
            return Blocked("ambiguous", next((name for name in distinct if name is not None), None))
        if ssrf_only:
            return None
        host = hosts.get(first.host)
        if not self.settings.allow_userinfo and any(reading.userinfo for reading in readings):
            return Blocked("userinfo", None if host is None else host.text)
        if self.settings.ports is not None and host is not None:
            ports = {reading.port for reading in readings}
            for port in ports:
                number = int(port) if port else _DEFAULT_PORTS.get(first.scheme or "")
                if number is not None and number not in self.settings.ports:
                    return Blocked("port", host.text)
        return None

    def _bare_name(self, host: Host) -> str | None:
        if host.text in _METADATA_NAMES:
            return self._ssrf(frozenset({_METADATA_ADDRESS}), "ssrf") and "ssrf:metadata"
        if host.text in _LOOPBACK_NAMES or host.text.endswith(".localhost"):
            return self._ssrf(frozenset(_LOOPBACK_ADDRESSES), "ssrf")
        return None

    # ------------------------------------------------------------------
    # Finding URLs in text
    # ------------------------------------------------------------------

    def check_text(self, text: str) -> Blocked | None:
        """Judge ``text`` as a whole URL, else every URL inside it."""
        kind = whole_url(text)
        if kind == "url":
            return self.check(text)
        if kind == "bare" and self.settings.bare_hosts:
            return self.check("http://" + text.strip(_WHATWG_STRIP), ssrf_only=True)
        for candidate in prose_urls(text):
            found = self.check(candidate)
            if found is not None:
                return found
        return None


def whole_url(text: str) -> str | None:
    """``url`` when ``text`` is a URL as a whole, ``bare`` for a bare ``host:port`` or ``host/path``."""
    stripped = text.strip(_WHATWG_STRIP)
    if len(stripped) != len(text) or "\t" in text or "\n" in text or "\r" in text:
        stripped = stripped.translate(_TAB_NEWLINE)
    match = _SCHEME.match(stripped)
    if match:
        rest = stripped[match.end() :]
        if rest[:1] in ("/", "\\") and rest[1:2] in ("/", "\\"):
            return "url"
        if match.group()[:-1].lower() in _SLASHLESS_SCHEMES:
            return "url"
    if stripped.startswith(("//", "\\\\")):
        return "url"
    bare = _BARE.fullmatch(stripped)
    if bare is None:
        return None
    host, port, path = bare.groups()
    named = host.lower().rstrip(".")
    if host.startswith("["):
        return "bare"
    if host[0].isdigit():
        # Only the dotted quad: "12:30" and "10.5/100" are times and fractions.
        parts = host.split(".")
        return "bare" if len(parts) == 4 and all(part.isdigit() for part in parts) else None
    if named in _LOOPBACK_NAMES or named in _METADATA_NAMES or named.endswith(".localhost"):
        return "bare" if port is not None or path is not None else None
    return None


def prose_urls(text: str) -> list[str]:
    """The ``scheme://`` URLs inside ``text``: from the scheme to a space, quote or angle bracket."""
    found: list[str] = []
    position = 0
    while True:
        mark = _PROSE_MARK.search(text, position)
        if mark is None:
            return found
        start = mark.start()
        limit = max(0, start - MAX_SCHEME)
        while start > limit and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < mark.start() and not text[start].isalpha():
            start += 1  # a scheme starts with a letter
        end_match = _PROSE_END.search(text, mark.end())
        end = end_match.start() if end_match else len(text)
        position = max(end, mark.end())
        if start == mark.start():
            continue  # "://" with no scheme before it
        candidate = _trim(text[start:end])
        found.append(candidate)


def _trim(url: str) -> str:
    """Drop the punctuation prose puts after a URL (a closing bracket only when unbalanced)."""
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
        elif last in ")]}":
            opening = "([{"[")]}".index(last)]
            if url.count(opening) < url.count(last):
                url = url[:-1]
            else:
                break
        else:
            break
    return url


def _resolve(name: str) -> list[IPAddress]:
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(name, None):
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
    return addresses


def check_url(url: str, config: dict[str, Any] | None = None) -> Blocked | None:
    """Judge one URL with ``url_guard``'s rules (``config`` as the plugin's); for tests and tools."""
    return Policy(parse_config(URLGuardSettings, config or {})).check(url)


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------


class _Stop(Exception):
    def __init__(self, blocked: Blocked) -> None:
        self.blocked = blocked


class URLGuardPlugin(Plugin):
    """Refuses URLs to disallowed schemes, internal addresses and domains; see the module docstring."""

    default_category: ClassVar[Category] = Category.AUTHORIZATION
    default_hooks: ClassVar[tuple[HookType, ...] | None] = PRE_HOOKS

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.settings = parse_config(URLGuardSettings, self.config)
        self.policy = Policy(self.settings)
        if self.settings.resolve_dns:
            # getaddrinfo blocks: run in a worker thread so the timeout holds.
            self.blocking = True  # type: ignore[misc]

    @property
    def hooks(self) -> list[HookType]:
        """The configured hooks; with ``scan_results``, the default ones include the post hooks."""
        hooks = super().hooks
        if self.settings.scan_results and set(hooks) == set(PRE_HOOKS):
            return [*PRE_HOOKS, *POST_HOOKS]
        return hooks

    def _scan(self, payload: Any) -> PluginResult | None:
        check_text = self.policy.check_text

        def inspect(text: str) -> str:
            found = check_text(text)
            if found is not None:
                raise _Stop(found)
            return text

        try:
            transform_payload(payload, inspect)
        except _Stop as stop:
            return self._refuse(stop.blocked)
        return None

    def _refuse(self, blocked: Blocked) -> PluginResult:
        where = f" to {blocked.host!r}" if blocked.host else ""
        return PluginResult(
            continue_processing=False,
            violation=PluginViolation(
                reason="URL blocked",
                description=f"a URL{where} is not allowed ({blocked.rule})",
                code="URL_BLOCKED",
                details={"rule": blocked.rule, "host": blocked.host},
                http_status_code=403,
            ),
        )

    def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> PluginResult | None:
        """Check the URLs in the tool's arguments."""
        return self._scan(payload)

    def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PluginResult | None:
        """Check the URLs in the prompt's arguments."""
        return self._scan(payload)

    def resource_pre_fetch(self, payload: ResourcePreFetchPayload, context: PluginContext) -> PluginResult | None:
        """Check the resource URI (``resource_schemes`` for its scheme)."""
        found = self.policy.check(payload.uri, resource=True)
        return None if found is None else self._refuse(found)

    def tool_post_invoke(self, payload: ToolPostInvokePayload, context: PluginContext) -> PluginResult | None:
        """Check the URLs in a tool result (``scan_results``)."""
        return self._scan(payload)

    def prompt_post_fetch(self, payload: PromptPosthookPayload, context: PluginContext) -> PluginResult | None:
        """Check the URLs in a rendered prompt (``scan_results``)."""
        return self._scan(payload)

    def resource_post_fetch(self, payload: ResourcePostFetchPayload, context: PluginContext) -> PluginResult | None:
        """Check the URLs in a resource's text (``scan_results``)."""
        return self._scan(payload)
