"""The content plugins: pii_filter, secrets_detection, deny_list, regex_replace.

Hook methods are called directly and through a :class:`~mcp_plugin_mw.PluginManager`
built from a dict configuration with class paths, as users load them. The PII
detector is scored against the labelled corpus in ``tests/data/pii_corpus.jsonl``.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_plugin_mw import (
    ConfigError,
    GlobalContext,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PluginConfig,
    PluginContext,
    PluginManager,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from mcp_plugin_mw.models import Category, Outcome
from mcp_plugin_mw.plugins import deny_list, regex_replace
from mcp_plugin_mw.plugins._base import map_http_body, map_json, transform_payload
from mcp_plugin_mw.plugins.deny_list import DenyListPlugin, TermMatcher, fold
from mcp_plugin_mw.plugins.pii import TYPES as PII_TYPES
from mcp_plugin_mw.plugins.pii import PIIFilterPlugin, find_pii
from mcp_plugin_mw.plugins.regex_replace import RegexReplacePlugin, compile_guarded
from mcp_plugin_mw.plugins.secrets import SecretsDetectionPlugin, find_secrets, shannon_entropy

CORPUS = Path(__file__).parent / "data" / "pii_corpus.jsonl"

PII = "mcp_plugin_mw.plugins.pii.PIIFilterPlugin"
SECRETS = "mcp_plugin_mw.plugins.secrets.SecretsDetectionPlugin"
DENY = "mcp_plugin_mw.plugins.deny_list.DenyListPlugin"
REGEX = "mcp_plugin_mw.plugins.regex_replace.RegexReplacePlugin"


def make(cls: type[Any], name: str = "p", **config: Any) -> Any:
    return cls(PluginConfig(name=name, kind=f"{cls.__module__}.{cls.__name__}", config=config))


def ctx() -> PluginContext:
    return PluginContext(GlobalContext(request_id="r1"))


def upper(text: str) -> str:
    return text.upper() if "secret" in text else text


# --------------------------------------------------------------------------
# The walker
# --------------------------------------------------------------------------


class TestWalker:
    def test_unchanged_payload_is_the_same_object(self) -> None:
        payload = ToolPreInvokePayload(name="t", args={"a": ["x", {"b": "y"}], "n": 1})
        assert transform_payload(payload, upper) is payload

    def test_only_the_path_to_a_change_is_copied(self) -> None:
        untouched = {"deep": ["x"]}
        args = {"keep": untouched, "change": {"inner": ["a secret", "plain"]}, "n": 3}
        payload = ToolPreInvokePayload(name="t", args=args)
        changed = transform_payload(payload, upper)
        assert changed is not payload
        assert changed.args["change"]["inner"] == ["A SECRET", "plain"]
        assert changed.args["keep"] is untouched
        assert args["change"]["inner"] == ["a secret", "plain"]  # the original is intact

    def test_map_json_leaves_keys_and_scalars(self) -> None:
        value = {"secret": 1, "b": True, "c": None, "d": 1.5}
        assert map_json(value, upper) is value

    def test_tool_result_content_items(self) -> None:
        image = {"type": "image", "data": "secret-base64", "mimeType": "image/png"}
        blob = {"type": "resource", "resource": {"uri": "file:///a", "blob": "secret"}}
        result = {
            "content": [
                {"type": "text", "text": "a secret"},
                image,
                {"type": "resource", "resource": {"uri": "file:///secret", "text": "the secret"}},
                blob,
                {"type": "audio", "data": "secret"},
            ],
            "structuredContent": {"x": ["secret"]},
            "isError": False,
            "_meta": {"note": "secret"},
        }
        changed = transform_payload(ToolPostInvokePayload(name="t", result=result), upper).result
        assert changed["content"][0]["text"] == "A SECRET"
        assert changed["content"][1] is image
        assert changed["content"][2]["resource"] == {"uri": "file:///secret", "text": "THE SECRET"}
        assert changed["content"][3] is blob
        assert changed["content"][4]["data"] == "secret"
        assert changed["structuredContent"] == {"x": ["SECRET"]}
        assert changed["_meta"] == {"note": "secret"}

    def test_non_mcp_tool_result_is_walked_as_json(self) -> None:
        payload = ToolPostInvokePayload(name="t", result={"rows": ["secret"]})
        assert transform_payload(payload, upper).result == {"rows": ["SECRET"]}

    def test_prompts(self) -> None:
        pre = PromptPrehookPayload(prompt_id="p", args={"q": "secret"})
        assert transform_payload(pre, upper).args == {"q": "SECRET"}
        result = {
            "description": "secret prompt",
            "messages": [
                {"role": "user", "content": {"type": "text", "text": "tell the secret"}},
                {"role": "user", "content": {"type": "image", "data": "secret"}},
            ],
        }
        changed = transform_payload(PromptPosthookPayload(prompt_id="p", result=result), upper).result
        assert changed["description"] == "SECRET PROMPT"
        assert changed["messages"][0]["content"]["text"] == "TELL THE SECRET"
        assert changed["messages"][1] is result["messages"][1]

    def test_resources(self) -> None:
        content = {"contents": [{"uri": "u", "text": "secret"}, {"uri": "v", "blob": "secret"}]}
        changed = transform_payload(ResourcePostFetchPayload(uri="u", content=content), upper).content
        assert changed["contents"] == [{"uri": "u", "text": "SECRET"}, {"uri": "v", "blob": "secret"}]
        pre = ResourcePreFetchPayload(uri="file:///secret")
        assert transform_payload(pre, upper) is pre
        assert transform_payload(pre, upper, uri=True).uri == "FILE:///SECRET"

    def test_http_json_body(self) -> None:
        body = b'{"a": ["secret", 1]}'
        headers = [("content-type", "application/json; charset=utf-8")]
        payload = HttpPreRequestPayload(method="POST", path="/", headers=headers, body=body)
        changed = transform_payload(payload, upper)
        assert orjson.loads(changed.body) == {"a": ["SECRET", 1]}
        same = HttpPreRequestPayload(method="POST", path="/", headers=headers, body=b'{"a": "plain"}')
        assert transform_payload(same, upper) is same

    @pytest.mark.parametrize(
        ("headers", "body", "expected"),
        [
            ([("content-type", "application/vnd.api+json")], b'["secret"]', b'["SECRET"]'),
            ([], b' {"k": "secret"}', b'{"k":"SECRET"}'),
            (
                [("content-type", "text/plain; charset=latin-1")],
                "secret é".encode("latin-1"),
                "SECRET É".encode("latin-1"),
            ),
            ([("content-type", "application/json")], b"not json secret", b"NOT JSON SECRET"),
            ([], b"no type secret", b"no type secret"),
            ([("content-type", "application/octet-stream")], b"secret", b"secret"),
            ([("content-type", "text/plain"), ("content-encoding", "gzip")], gzip.compress(b"secret"), None),
            ([("content-type", "text/plain")], b"\xff\xfe secret", b"\xff\xfe secret"),
        ],
    )
    def test_http_bodies(self, headers: list[tuple[str, str]], body: bytes, expected: bytes | None) -> None:
        result = map_http_body(body, headers, upper)
        assert result == (body if expected is None else expected)
        if expected == body or expected is None:
            assert result is body

    def test_http_response_body(self) -> None:
        payload = HttpPostRequestPayload(
            method="GET", path="/", status_code=200, headers=[("content-type", "text/html")], body=b"<p>secret</p>"
        )
        assert transform_payload(payload, upper).body == b"<P>SECRET</P>"


# --------------------------------------------------------------------------
# Configuration errors name the field
# --------------------------------------------------------------------------


class TestConfigErrors:
    def test_pii_bad_values(self) -> None:
        with pytest.raises(ValueError, match=r"config\.strategy: ") as caught:
            make(PIIFilterPlugin, strategy="scramble", detect={"emails": True})
        assert "config.detect.emails: Extra inputs are not permitted" in str(caught.value)

    def test_pii_custom_pattern_refused(self) -> None:
        with pytest.raises(ValueError, match=r"config\.custom_patterns\[1\]\.pattern: "):
            make(PIIFilterPlugin, custom_patterns=[{"name": "A", "pattern": "x+"}, {"name": "B", "pattern": r"(a)\1"}])
        with pytest.raises(ValueError, match=r"config\.custom_patterns: .*taken: EMAIL"):
            make(PIIFilterPlugin, custom_patterns=[{"name": "email", "pattern": "x"}])

    def test_regex_rule_refused_naming_its_index(self) -> None:
        rules = [{"search": "ok", "replace": "fine"}, {"search": r"(a)\1", "replace": ""}]
        with pytest.raises(ValueError, match=r"config\.rules\[1\]\.search: "):
            make(RegexReplacePlugin, rules=rules)
        with pytest.raises(ValueError, match=r"config\.rules\[0\]\.replace: the pattern has no group 2"):
            make(RegexReplacePlugin, rules=[{"search": "(a)", "replace": r"\2"}])
        with pytest.raises(ValueError, match=r"config\.rules: "):
            make(RegexReplacePlugin, rules=[])

    def test_deny_list_needs_terms(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"config\.terms: no terms"):
            make(DenyListPlugin)
        with pytest.raises(ValueError, match=r"config\.terms: .*item 1 is empty"):
            make(DenyListPlugin, terms=["a", "  "])
        with pytest.raises(ValueError, match=r"config\.terms_file: cannot use"):
            make(DenyListPlugin, terms_file=str(tmp_path / "missing.txt"))

    def test_secrets_bad_threshold(self) -> None:
        with pytest.raises(ValueError, match=r"config\.high_entropy\.threshold: "):
            make(SecretsDetectionPlugin, high_entropy={"threshold": 9})

    def test_manager_reports_the_field(self) -> None:
        config = {"plugins": [{"name": "pii", "kind": PII, "config": {"mask": "nope"}}]}
        with pytest.raises(ConfigError, match=r"plugins\[0\] \(pii\).*config\.mask: Input should be"):
            PluginManager(config)


# --------------------------------------------------------------------------
# PII
# --------------------------------------------------------------------------


def _corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_pii_corpus_precision_and_recall() -> None:
    cases = _corpus()
    assert len(cases) >= 200
    assert sum(1 for case in cases if not case["expected"]) >= 50  # plenty of hard negatives
    true_positive: Counter[str] = Counter()
    false_positive: Counter[str] = Counter()
    false_negative: Counter[str] = Counter()
    for case in cases:
        text = case["text"]
        expected = Counter((item["type"], item["value"]) for item in case["expected"])
        found = Counter((kind, text[start:end]) for kind, start, end in find_pii(text))
        for key in expected | found:
            hits = min(expected[key], found[key])
            true_positive[key[0]] += hits
            false_positive[key[0]] += found[key] - hits
            false_negative[key[0]] += expected[key] - hits

    def score(tp: int, fp: int, fn: int) -> tuple[float, float]:
        return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)

    rows = []
    for kind in PII_TYPES:
        precision, recall = score(true_positive[kind], false_positive[kind], false_negative[kind])
        rows.append((kind, true_positive[kind], false_positive[kind], false_negative[kind], precision, recall))
    total = [sum(counter.values()) for counter in (true_positive, false_positive, false_negative)]
    overall = score(*total)
    print(f"\nPII corpus: {len(cases)} cases")
    print(f"{'type':<12} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>8}")
    for kind, tp, fp, fn, precision, recall in rows:
        print(f"{kind:<12} {tp:>4} {fp:>4} {fn:>4} {precision:>10.3f} {recall:>8.3f}")
    print(f"{'overall':<12} {total[0]:>4} {total[1]:>4} {total[2]:>4} {overall[0]:>10.3f} {overall[1]:>8.3f}")
    for kind, tp, _, _, precision, recall in rows:
        assert tp >= 5, kind
        assert precision >= 0.98, kind
        assert recall >= 0.98, kind
    assert min(overall) >= 0.98


class TestPII:
    TEXT = "Mail alice@example.com, call (415) 555-0100, SSN 078-05-1120, card 4111 1111 1111 1111."

    def test_redact(self) -> None:
        plugin = make(PIIFilterPlugin)
        result = plugin.tool_pre_invoke(ToolPreInvokePayload(name="t", args={"note": self.TEXT}), ctx())
        assert result is not None
        assert result.modified_payload.args["note"] == (
            "Mail [REDACTED:EMAIL], call [REDACTED:PHONE], SSN [REDACTED:SSN], card [REDACTED:CREDIT_CARD]."
        )
        assert result.metadata == {"p": {"found": {"EMAIL": 1, "PHONE": 1, "SSN": 1, "CREDIT_CARD": 1}}}

    def test_partial(self) -> None:
        plugin = make(PIIFilterPlugin, strategy="partial")
        assert plugin.filter_text(self.TEXT, {}) == (
            "Mail a***@example.com, call (***) ***-0100, SSN ***-**-1120, card **** **** **** 1111."
        )

    def test_hash_is_stable_and_salted(self) -> None:
        plain = make(PIIFilterPlugin, strategy="hash")
        first = plain.filter_text("to alice@example.com", {})
        assert first == plain.filter_text("to alice@example.com", {})
        assert first.startswith("to [HASH:EMAIL:")
        assert len(first) == len("to [HASH:EMAIL:12345678]")
        salted = make(PIIFilterPlugin, strategy="hash", hash_salt="pepper")
        assert salted.filter_text("to alice@example.com", {}) != first

    def test_block_names_types_not_values(self) -> None:
        plugin = make(PIIFilterPlugin, mask="block")
        payload = ToolPostInvokePayload(name="t", result={"content": [{"type": "text", "text": self.TEXT}]})
        result = plugin.tool_post_invoke(payload, ctx())
        assert result is not None
        assert not result.continue_processing
        violation = result.violation
        assert violation is not None
        assert violation.code == "PII_DETECTED"
        assert violation.details["types"] == ["CREDIT_CARD", "EMAIL", "PHONE", "SSN"]
        assert "alice" not in repr(violation)
        assert "0100" not in repr(violation)

    def test_block_checks_resource_uris_masking_leaves_them(self) -> None:
        payload = ResourcePreFetchPayload(uri="people://search?email=alice@example.com")
        assert make(PIIFilterPlugin).resource_pre_fetch(payload, ctx()) is None
        blocked = make(PIIFilterPlugin, strategy="block").resource_pre_fetch(payload, ctx())
        assert blocked is not None
        assert blocked.violation is not None

    def test_nothing_found_returns_none(self) -> None:
        plugin = make(PIIFilterPlugin)
        payload = ToolPreInvokePayload(name="t", args={"q": "weather in Paris on 2024-01-15"})
        assert plugin.tool_pre_invoke(payload, ctx()) is None

    def test_allow_list_and_switches(self) -> None:
        plugin = make(PIIFilterPlugin, allow_list=["support@example.com"], detect={"phone": False})
        text = "support@example.com or bob@example.com, 415-555-0100"
        assert plugin.filter_text(text, {}) == "support@example.com or [REDACTED:EMAIL], 415-555-0100"

    def test_custom_patterns(self) -> None:
        plugin = make(
            PIIFilterPlugin,
            custom_patterns=[
                {"name": "employee_id", "pattern": "EMP-[0-9]{6}"},
                {"name": "badge", "pattern": "B[0-9]{4}", "replacement": "<badge>"},
            ],
        )
        assert plugin.filter_text("EMP-123456 with B1234 at 192.0.2.1", {}) == (
            "[REDACTED:EMPLOYEE_ID] with <badge> at [REDACTED:IP_ADDRESS]"
        )

    def test_http_json_body(self) -> None:
        plugin = make(PIIFilterPlugin)
        payload = HttpPostRequestPayload(
            method="GET",
            path="/users/1",
            status_code=200,
            headers=[("content-type", "application/json")],
            body=b'{"email": "alice@example.com", "id": 1}',
        )
        result = plugin.http_post_request(payload, ctx())
        assert result is not None
        assert orjson.loads(result.modified_payload.body) == {"email": "[REDACTED:EMAIL]", "id": 1}

    @pytest.mark.parametrize(
        "text",
        [
            "version 1.2.3.4",
            "released 2024-01-15 and 12/25/2024",
            "https://example.com/user@name",
            "card 4111 1111 1111 1112",
            "std::vector and 12:30:45",
        ],
    )
    def test_hard_negatives(self, text: str) -> None:
        assert find_pii(text) == []

    def test_fast_path_skips_text_without_digits_or_at(self) -> None:
        assert find_pii("plain words only: no personal data here" * 100) == []


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------


def _jwt(header: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part({'sub': '1234567890'})}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


SECRETS_SAMPLES = [
    ("AWS_ACCESS_KEY_ID", "AKIA2E0A8F3B244C9986"),
    ("AWS_ACCESS_KEY_ID", "ASIAY34FZKBOKMUTVV7A"),
    ("GITHUB_TOKEN", "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8"),
    ("GITHUB_TOKEN", "github_pat_11ABCDEFG0123456789_" + "abcdefghij" * 5),
    ("SLACK_TOKEN", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("SLACK_TOKEN", "xapp-1-A012345678-1234567890-abcdef0123456789"),
    ("SLACK_WEBHOOK", "https://hooks.slack.com/services/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"),
    ("STRIPE_KEY", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    ("STRIPE_KEY", "rk_live_" + "51H7xYZabcdefghij0123"),
    ("STRIPE_KEY", "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    ("GOOGLE_API_KEY", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("PRIVATE_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"),
    ("JWT", _jwt({"alg": "HS256", "typ": "JWT"})),
]


class TestSecrets:
    @pytest.mark.parametrize(("kind", "secret"), SECRETS_SAMPLES)
    def test_each_type_is_redacted(self, kind: str, secret: str) -> None:
        plugin = make(SecretsDetectionPlugin)
        assert plugin.filter_text(f"use {secret} now", {}) == f"use [REDACTED:{kind}] now"

    def test_labelled_aws_secret_keeps_the_label(self) -> None:
        text = 'aws_secret_access_key = "q8Vd2kLx0Zp7RtN3bW5yHc1Mf9Gj4Ks6Ue8Ao2Ti"'
        assert make(SecretsDetectionPlugin).filter_text(text, {}) == (
            'aws_secret_access_key = "[REDACTED:AWS_SECRET_ACCESS_KEY]"'
        )
        assert find_secrets("q8Vd2kLx0Zp7RtN3bW5yHc1Mf9Gj4Ks6Ue8Ao2Ti alone") == []

    @pytest.mark.parametrize(
        "text",
        [
            "pk_live_4eC39HqLyjWDarjtT1zdp7dc is publishable",
            "ghp_short",
            "eyJub3RhbGciOjF9.eyJzdWIiOiIxIn0.signature_here",  # header has no alg
            "eyJhbGciOi.not.base64json",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
            "XAKIA2E0A8F3B244C9986",
            "the word skeleton_key and taskbar",
        ],
    )
    def test_negatives(self, text: str) -> None:
        assert find_secrets(text) == []

    def test_truncated_private_key_is_redacted_to_the_end(self) -> None:
        plugin = make(SecretsDetectionPlugin)
        assert plugin.filter_text("key: -----BEGIN RSA PRIVATE KEY-----\nMIIEow", {}) == "key: [REDACTED:PRIVATE_KEY]"

    def test_block(self) -> None:
        plugin = make(SecretsDetectionPlugin, action="block")
        args = {"a": "token ghp_" + "x1" * 18, "b": ["AKIA2E0A8F3B244C9986"]}
        result = plugin.tool_pre_invoke(ToolPreInvokePayload(name="t", args=args), ctx())
        assert result is not None
        assert result.violation is not None
        assert result.violation.code == "SECRETS_DETECTED"
        assert result.violation.details["types"] == ["AWS_ACCESS_KEY_ID", "GITHUB_TOKEN"]
        assert "AKIA" not in repr(result.violation)

    def test_switches_and_high_entropy(self) -> None:
        token = "Zx9qL2mN8vB4cT6yH1jK3pW5sD7fG0aRe"
        assert make(SecretsDetectionPlugin).filter_text(f"id {token}", {}) == f"id {token}"
        entropy = make(SecretsDetectionPlugin, high_entropy={"enabled": True}, detect={"jwt": False})
        assert entropy.filter_text(f"id {token}", {}) == "id [REDACTED:HIGH_ENTROPY]"
        assert entropy.filter_text("id internationalization_and_localization_words", {}).startswith("id inter")
        assert shannon_entropy("aaaa") == 0.0
        assert shannon_entropy("abcd") == 2.0


# --------------------------------------------------------------------------
# Deny list
# --------------------------------------------------------------------------


class TestDenyList:
    def test_block_names_the_rule_not_the_text(self) -> None:
        plugin = make(DenyListPlugin, terms=["project falcon", "internal only"], rule_name="confidential")
        payload = PromptPrehookPayload(prompt_id="p", args={"q": "Tell me about PROJECT Falcon"})
        result = plugin.prompt_pre_fetch(payload, ctx())
        assert result is not None
        assert result.violation is not None
        assert result.violation.code == "DENY_LIST"
        assert result.violation.details == {"rule": "confidential", "term_ids": [0]}
        assert "falcon" not in repr(result.violation).lower()

    def test_redact_whole_word(self) -> None:
        plugin = make(DenyListPlugin, terms=["ass", "new york", "new york city"], action="redact", replacement="***")
        assert plugin.filter_text("A class assignment in New York City, ass.", {}) == (
            "A class assignment in ***, ***."
        )
        substring = make(DenyListPlugin, terms=["ass"], whole_word=False, action="redact", replacement="#")
        assert substring.filter_text("class", {}) == "cl#"

    def test_case_sensitive(self) -> None:
        plugin = make(DenyListPlugin, terms=["Secret"], case_sensitive=True, action="redact")
        assert plugin.filter_text("secret Secret", {}) == "secret [REDACTED]"

    def test_terms_file(self, tmp_path: Path) -> None:
        path = tmp_path / "deny.txt"
        path.write_text("# comment\n\nfoo bar\n  baz  \n", encoding="utf-8")
        plugin = make(DenyListPlugin, terms=["qux"], terms_file=str(path))
        result = plugin.tool_pre_invoke(ToolPreInvokePayload(name="t", args={"x": "baz and FOO BAR"}), ctx())
        assert result is not None
        assert result.violation is not None
        assert result.violation.details["term_ids"] == [1, 2]

    def test_many_terms(self) -> None:
        terms = [f"term{index:05d}" for index in range(20_000)]
        plugin = make(DenyListPlugin, terms=terms, action="redact", replacement="X")
        assert plugin.filter_text("a term12345 b term1234 c", {}) == "a X b term1234 c"

    @pytest.mark.skipif(not deny_list.HAVE_AHOCORASICK, reason="ahocorasick-rs not installed")
    def test_overlaps_prefer_whole_words(self) -> None:
        for engine in ("ahocorasick", "regex"):
            matcher = TermMatcher(["bad", "bad word", "word"], engine=engine)
            assert matcher.find("bad words") == [(0, 0, 3)]
            assert matcher.find("bad word") == [(1, 0, 8)]

    def test_fold_keeps_offsets(self) -> None:
        assert len(fold("İstanbul ÀB")) == len("İstanbul ÀB")
        assert fold("ÀB") == "àb"


_ALPHABET = st.sampled_from(list("abAB _-.İé1"))


@pytest.mark.skipif(not deny_list.HAVE_AHOCORASICK, reason="ahocorasick-rs not installed")
@settings(max_examples=300, deadline=None)
@given(
    terms=st.lists(st.text(_ALPHABET, min_size=1, max_size=5).filter(str.strip), min_size=1, max_size=8),
    text=st.text(_ALPHABET, max_size=60),
    whole_word=st.booleans(),
    case_sensitive=st.booleans(),
)
def test_deny_list_engines_agree(terms: list[str], text: str, whole_word: bool, case_sensitive: bool) -> None:
    options = {"whole_word": whole_word, "case_sensitive": case_sensitive}
    automaton = TermMatcher(terms, engine="ahocorasick", **options)
    regex = TermMatcher(terms, engine="regex", **options)
    assert automaton.find(text) == regex.find(text)


def _reference(terms: list[str], text: str, whole_word: bool, case_sensitive: bool) -> list[tuple[int, int, int]]:
    """Every occurrence of every term, filtered, then leftmost-longest: slow and obviously right."""
    norm = (lambda value: value) if case_sensitive else fold
    haystack = norm(text)
    ids: dict[str, int] = {}
    for index, term in enumerate(terms):
        ids.setdefault(norm(term), index)

    def is_word(char: str) -> bool:
        return char.isalnum() or char == "_"

    occurrences = []
    for needle, term_id in ids.items():
        for start in range(len(haystack) - len(needle) + 1):
            end = start + len(needle)
            if haystack[start:end] != needle:
                continue
            if whole_word and (
                (start > 0 and is_word(haystack[start - 1])) or (end < len(haystack) and is_word(haystack[end]))
            ):
                continue
            occurrences.append((term_id, start, end))
    occurrences.sort(key=lambda match: (match[1], match[1] - match[2]))
    kept, last = [], -1
    for match in occurrences:
        if match[1] >= last:
            kept.append(match)
            last = match[2]
    return kept


@settings(max_examples=300, deadline=None)
@given(
    terms=st.lists(st.text(_ALPHABET, min_size=1, max_size=5).filter(str.strip), min_size=1, max_size=8),
    text=st.text(_ALPHABET, max_size=60),
    whole_word=st.booleans(),
    case_sensitive=st.booleans(),
)
def test_deny_list_engines_match_the_reference(
    terms: list[str], text: str, whole_word: bool, case_sensitive: bool
) -> None:
    expected = _reference(terms, text, whole_word, case_sensitive)
    engines = ["regex", "ahocorasick"] if deny_list.HAVE_AHOCORASICK else ["regex"]
    for engine in engines:
        matcher = TermMatcher(terms, engine=engine, whole_word=whole_word, case_sensitive=case_sensitive)
        assert matcher.find(text) == expected, engine


# --------------------------------------------------------------------------
# Regex replace
# --------------------------------------------------------------------------


class TestRegexReplace:
    def test_rules_apply_in_order(self) -> None:
        plugin = make(
            RegexReplacePlugin, rules=[{"search": "crap", "replace": "crud"}, {"search": "crud", "replace": "yikes"}]
        )
        result = plugin.tool_pre_invoke(ToolPreInvokePayload(name="t", args={"q": "oh crap"}), ctx())
        assert result is not None
        assert result.modified_payload.args == {"q": "oh yikes"}
        assert result.metadata == {"p": {"found": {"rules[0]": 1, "rules[1]": 1}}}

    def test_templates(self) -> None:
        rules = [{"search": r"(?P<user>\w+)@internal\.example", "replace": r"\g<user>@example.com\\\1"}]
        plugin = make(RegexReplacePlugin, rules=rules)
        assert plugin.filter_text("mail bob@internal.example", {}) == "mail bob@example.com\\bob"

    def test_rewrites_resource_uris(self) -> None:
        plugin = make(RegexReplacePlugin, rules=[{"search": "^file:///old/", "replace": "file:///new/"}])
        result = plugin.resource_pre_fetch(ResourcePreFetchPayload(uri="file:///old/a.txt"), ctx())
        assert result is not None
        assert result.modified_payload.uri == "file:///new/a.txt"

    def test_no_match_is_none(self) -> None:
        plugin = make(RegexReplacePlugin, rules=[{"search": "x+", "replace": "y"}])
        assert plugin.tool_pre_invoke(ToolPreInvokePayload(name="t", args={"q": "abc"}), ctx()) is None

    @pytest.mark.skipif(not regex_replace.HAVE_RE2, reason="google-re2 not installed")
    def test_catastrophic_pattern_runs_linear_on_re2(self) -> None:
        plugin = make(RegexReplacePlugin, rules=[{"search": "(a+)+$", "replace": "!"}])
        assert plugin.filter_text("a" * 50_000 + "b", {}) == "a" * 50_000 + "b"
        assert plugin.filter_text("aaa", {}) == "!"

    @pytest.mark.skipif(not regex_replace.HAVE_RE2, reason="google-re2 not installed")
    def test_re2_refusal_and_allow_backtracking(self) -> None:
        with pytest.raises(ValueError, match="RE2 cannot compile"):
            compile_guarded(r"foo(?=bar)")
        plugin = make(RegexReplacePlugin, rules=[{"search": r"foo(?=bar)", "replace": "F"}], allow_backtracking=True)
        assert plugin.filter_text("foobar foo", {}) == "Fbar foo"

    def test_backreference_refused_unless_allowed(self) -> None:
        with pytest.raises(ValueError, match=r"config\.rules\[0\]\.search: RE2 cannot compile"):
            make(RegexReplacePlugin, rules=[{"search": r"(a)\1", "replace": "b"}])
        allowed = make(RegexReplacePlugin, rules=[{"search": r"(a)\1", "replace": "b"}], allow_backtracking=True)
        assert allowed.filter_text("aa", {}) == "b"


# --------------------------------------------------------------------------
# Through the manager
# --------------------------------------------------------------------------


def test_manager_chains_content_plugins() -> None:
    config = {
        "plugins": [
            {"name": "secrets", "kind": SECRETS, "priority": 10},
            {"name": "pii", "kind": PII, "priority": 20, "config": {"strategy": "partial"}},
            {
                "name": "tidy",
                "kind": REGEX,
                "priority": 30,
                "config": {"rules": [{"search": "crap", "replace": "crud"}]},
            },
            {"name": "deny", "kind": DENY, "priority": 40, "config": {"terms": ["falcon"]}},
        ]
    }
    with PluginManager(config) as manager:
        assert all(plugin.plugin_config.category is Category.CONTENT for plugin in manager.plugins)
        payload = ToolPreInvokePayload(name="t", args={"q": "crap, call 415-555-0100 with AKIA2E0A8F3B244C9986"})
        result = manager.invoke_sync("tool_pre_invoke", payload, GlobalContext(request_id="1"))
        assert result.continue_processing
        assert result.modified_payload.args == {"q": "crud, call ***-***-0100 with [REDACTED:AWS_ACCESS_KEY_ID]"}
        outcomes = {record.plugin: record.outcome for record in result.records}
        assert outcomes == {
            "secrets": Outcome.MODIFIED,
            "pii": Outcome.MODIFIED,
            "tidy": Outcome.MODIFIED,
            "deny": Outcome.PASSED,
        }

        clean = ToolPostInvokePayload(name="t", result={"content": [{"type": "text", "text": "all fine"}]})
        result = manager.invoke_sync("tool_post_invoke", clean, GlobalContext(request_id="2"))
        assert result.modified_payload is None
        assert {record.outcome for record in result.records} == {Outcome.PASSED}

        blocked = PromptPrehookPayload(prompt_id="p", args={"q": "operation Falcon"})
        result = manager.invoke_sync("prompt_pre_fetch", blocked, GlobalContext(request_id="3"))
        assert not result.continue_processing
        assert result.violation is not None
        assert result.violation.code == "DENY_LIST"
        assert result.violation.plugin_name == "deny"


async def test_manager_async_http_hook() -> None:
    config = {"plugins": [{"name": "pii", "kind": PII, "hooks": ["http_pre_request"], "config": {"strategy": "block"}}]}
    async with PluginManager(config) as manager:
        payload = HttpPreRequestPayload(
            method="POST",
            path="/signup",
            headers=[("content-type", "application/json")],
            body=b'{"ssn": "078-05-1120"}',
        )
        result = await manager.invoke("http_pre_request", payload, GlobalContext(request_id="1"))
        assert result.violation is not None
        assert result.violation.code == "PII_DETECTED"
        assert result.violation.details["types"] == ["SSN"]


_PII_ALPHABET = st.sampled_from(list("0123456789 .-+()@:/x_aZAB#\n") + ["GB82 WEST 1234 5698 7654 32", "(415) 555-2671"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PII_ALPHABET, max_size=60).map("".join))
def test_pii_ascii_and_unicode_scans_agree(text: str) -> None:
    """ASCII text takes the lead-by-lead scan, other text one regex: both find the same spans."""
    from mcp_plugin_mw.plugins.pii import Detector

    detector = Detector()
    ascii_spans = detector.find(text)
    # A non-ASCII character after a space changes no span but the path taken.
    unicode_spans = detector.find(text + " \u00e9")
    assert ascii_spans == unicode_spans
