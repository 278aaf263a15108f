"""secrets_detection: provider formats, labelled values, placeholders, options, linear time."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from mcp_plugin_mw import GlobalContext, PluginConfig, PluginManager, ToolPreInvokePayload
from mcp_plugin_mw.plugins.secrets import TYPES, SecretsDetectionPlugin, find_secrets, is_placeholder

SECRETS = "mcp_plugin_mw.plugins.secrets.SecretsDetectionPlugin"
B62 = "Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A7bC9dE1fG3hJ5kL7mN9pQ1rS3tU5vW7xY9z1A3bC5dE7fG9hJ1kL3"
HEX = "0f3a9c8e7d6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"


def make(**config: Any) -> SecretsDetectionPlugin:
    return SecretsDetectionPlugin(PluginConfig(name="s", kind=SECRETS, config=config))


def redact(text: str, **config: Any) -> str:
    return make(**config).filter_text(text, {})


def _jwt() -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'sub': '42'})}.{B62[:43]}"


# (type, token): each alone in a sentence is redacted whole.
TOKENS = [
    ("AWS_ACCESS_KEY_ID", "AKIA2E0A8F3B244C9986"),
    ("AWS_ACCESS_KEY_ID", "ASIAY34FZKBOKMUTVV7A"),
    ("GITHUB_TOKEN", "ghp_" + B62[:36]),
    ("GITHUB_TOKEN", "gho_" + B62[1:37]),
    ("GITHUB_TOKEN", "ghs_" + B62[2:38]),
    ("GITHUB_TOKEN", "github_pat_11ABCDEFG0" + B62[:60]),
    ("GITLAB_TOKEN", "glpat-" + B62[:20]),
    ("GITLAB_TOKEN", "glrt-" + B62[:20]),
    ("GITLAB_TOKEN", "GR1348941" + B62[:20]),
    ("ATLASSIAN_TOKEN", "ATATT3xFfGF0" + B62[:80]),
    ("SLACK_TOKEN", "xoxb-123456789012-1234567890123-" + B62[:24]),
    ("SLACK_TOKEN", "xoxp-123456789012-1234567890123-" + B62[:24]),
    ("SLACK_TOKEN", "xapp-1-A012345678-1234567890-" + HEX[:16]),
    ("SLACK_WEBHOOK", "https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/" + B62[:24]),
    ("DISCORD_TOKEN", "MTA4NzY1NDMyMTA5ODc2NTQzMg.GhIjKl." + B62[:38]),
    ("DISCORD_WEBHOOK", "https://discord.com/api/webhooks/123456789012345678/" + B62[:68]),
    ("TELEGRAM_BOT_TOKEN", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"),
    ("STRIPE_KEY", "sk_live_" + B62[:24]),
    ("STRIPE_KEY", "rk_test_" + B62[:24]),
    ("SQUARE_TOKEN", "EAAA" + B62[:60]),
    ("SQUARE_TOKEN", "sq0csp-" + B62[:43]),
    ("GOOGLE_API_KEY", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("GOOGLE_OAUTH", "GOCSPX-" + B62[:28]),
    ("OPENAI_API_KEY", "sk-proj-" + B62[:80]),
    ("OPENAI_API_KEY", "sk-svcacct-" + B62[:60]),
    ("OPENAI_API_KEY", "sk-" + B62[:48]),
    ("ANTHROPIC_API_KEY", "sk-ant-api03-" + B62[:80] + "-AA"),
    ("ANTHROPIC_API_KEY", "sk-ant-admin01-" + B62[:80]),
    ("HUGGINGFACE_TOKEN", "hf_" + B62[:34]),
    ("GROQ_API_KEY", "gsk_" + B62[:52]),
    ("NPM_TOKEN", "npm_" + B62[:36]),
    ("PYPI_TOKEN", "pypi-AgEIcHlwaS5vcmc" + B62[:60]),
    ("DOCKERHUB_TOKEN", "dckr_pat_" + B62[:27]),
    ("RUBYGEMS_TOKEN", "rubygems_" + HEX[:48]),
    ("SENDGRID_API_KEY", "SG." + B62[:22] + "." + B62[1:44]),
    ("MAILGUN_API_KEY", "key-" + HEX[:32]),
    ("TWILIO_API_KEY", "SK" + HEX[:32]),
    ("SHOPIFY_TOKEN", "shpat_" + HEX[:32]),
    ("SHOPIFY_TOKEN", "shpss_" + HEX[:32]),
    ("DIGITALOCEAN_TOKEN", "dop_v1_" + HEX[:64]),
    ("PRIVATE_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"),
    ("PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"),
    ("JWT", _jwt()),
]


class TestTokens:
    @pytest.mark.parametrize(("kind", "token"), TOKENS)
    def test_redacted_whole(self, kind: str, token: str) -> None:
        assert redact(f"use {token} now") == f"use [REDACTED:{kind}] now"

    def test_every_type_has_a_switch(self) -> None:
        for kind, _ in TOKENS:
            assert kind in TYPES
        for kind in TYPES:
            if kind != "HIGH_ENTROPY":
                # Each switch exists and turning it off is accepted.
                make(detect={kind.lower(): False})

    def test_gcp_service_account_json(self) -> None:
        key = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n"
        text = json.dumps({"type": "service_account", "private_key_id": "1"})[:-1] + f', "private_key": "{key}"}}'
        assert redact(text).endswith('"private_key": "[REDACTED:PRIVATE_KEY]\\n"}')

    def test_azure_connection_string_keeps_the_rest(self) -> None:
        key = (B62 + B62)[:86] + "=="
        text = f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={key};EndpointSuffix=core.windows.net"
        assert redact(text) == (
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=[REDACTED:AZURE_STORAGE_KEY];"
            "EndpointSuffix=core.windows.net"
        )

    def test_boundaries(self) -> None:
        assert find_secrets("XAKIA2E0A8F3B244C9986") == []
        assert find_secrets("ghp_short") == []
        assert find_secrets("pk_live_" + B62[:24]) == []  # publishable
        assert find_secrets("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----") == []

    def test_non_ascii_text_keeps_offsets(self) -> None:
        text = f"clé é {'ghp_' + B62[:36]} ünd password=pässwört99"
        assert redact(text) == "clé é [REDACTED:GITHUB_TOKEN] ünd password=[REDACTED:PASSWORD]"


class TestLabelled:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("password=Sup3rS3cr3t!", "password=[REDACTED:PASSWORD]"),
            ("PASSWORD: hunter22", "PASSWORD: [REDACTED:PASSWORD]"),
            ("DB_PASSWORD=Tr0ub4dor&3", "DB_PASSWORD=[REDACTED:PASSWORD]"),
            ('{"password": "Pa55w0rd99"}', '{"password": "[REDACTED:PASSWORD]"}'),
            ("--password Hx7kq2Lz9q", "--password [REDACTED:PASSWORD]"),
            ("mysql -u app -p'Hx7kq2Lz9q' db", "mysql -u app -p'[REDACTED:PASSWORD]' db"),
            ("The admin password is Potlood2300# for now.", "The admin password is [REDACTED:PASSWORD] for now."),
            ('"api_key": "a8f5f167f44f4964e6c998dee827110c"', '"api_key": "[REDACTED:GENERIC_SECRET]"'),
            ("secret_token = 'Zx9qL2mN8vB4cT6y'", "secret_token = '[REDACTED:GENERIC_SECRET]'"),
            ('os.environ["API_TOKEN"] = "Zx9qL2mN8vB4cT6y"', 'os.environ["API_TOKEN"] = "[REDACTED:GENERIC_SECRET]"'),
            ("Authorization: Bearer Zx9qL2mN8vB4cT6yH1jK", "Authorization: Bearer [REDACTED:GENERIC_SECRET]"),
            ("Authorization: Basic dXNlcjpQYTU1dzByZDk5", "Authorization: Basic [REDACTED:PASSWORD]"),
        ],
    )
    def test_only_the_value_is_redacted(self, text: str, expected: str) -> None:
        assert redact(text) == expected

    @pytest.mark.parametrize(
        "label",
        [
            "aws_secret_access_key = ",
            '"SecretAccessKey": "',
            "AWS_SECRET_ACCESS_KEY=",
            "aws configure set aws_secret_access_key ",
        ],
    )
    def test_aws_secret_under_any_label(self, label: str) -> None:
        value = "q8Xk2LmP9vR4tY7wZ1aB3cD5eF6gH8jK0lN2oP4r"
        close = '"' if label.endswith('"') else ""
        assert redact(label + value + close) == label + "[REDACTED:AWS_SECRET_ACCESS_KEY]" + close
        assert find_secrets(value + " alone") == []

    def test_labelled_provider_token_keeps_its_type(self) -> None:
        token = "sk-proj-" + B62[:80]
        assert redact(f"OPENAI_API_KEY={token}") == "OPENAI_API_KEY=[REDACTED:OPENAI_API_KEY]"

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("postgres://app:s3cr3tPa55@db:5432/x", "postgres://app:[REDACTED:PASSWORD]@db:5432/x"),
            ("mysql://root:Hx7kq2Lz9q@10.0.0.5/app", "mysql://root:[REDACTED:PASSWORD]@10.0.0.5/app"),
            (
                "mongodb+srv://user:Pa55w0rd99@cluster0.mongodb.net/db",
                "mongodb+srv://user:[REDACTED:PASSWORD]@cluster0.mongodb.net/db",
            ),
            ("redis://:fo0b4red1@cache:6379", "redis://:[REDACTED:PASSWORD]@cache:6379"),
            ("amqp://guest:Gu3st!2024x@mq/", "amqp://guest:[REDACTED:PASSWORD]@mq/"),
            ("https://bot:Zx9qL2mN8v@git.example.org/r.git", "https://bot:[REDACTED:PASSWORD]@git.example.org/r.git"),
        ],
    )
    def test_url_password_only(self, url: str, expected: str) -> None:
        assert redact(url) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "token_type: bearer",
            "max_tokens = 100000",
            "password_policy: strict-mode",
            "secret_name = prod-db-credentials",
            "password: str",
            "the secret is out and the token was passed",
            "f(api_secret, 'AC0123456789abcdef0123456789abcdef')",
            "postgres://app:pass@db/x",
            "http://host:8080/path@x",
        ],
    )
    def test_not_secrets(self, text: str) -> None:
        assert find_secrets(text) == []


class TestPlaceholders:
    @pytest.mark.parametrize(
        "text",
        [
            "AKIAIOSFODNN7EXAMPLE",
            'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "sk-proj-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "ANTHROPIC_API_KEY=sk-ant-api03-...",
            "password=changeme",
            "password=********",
            "password=${DB_PASSWORD}",
            "password=$DB_PASSWORD",
            "password: {{ vault_db_password }}",
            "password=%(db_password)s",
            "api_key=<your-api-key>",
            "api_key: your_api_key_here",
            "token: process.env.TOKEN",
            "password = os.environ['DB_PASSWORD']",
            "secret = os.getenv('SECRET')",
            "password=password",
            "SECRET_KEY=secret",
            "token=token",
            "api_key=REDACTED",
            "api_key=dummy-key-123456",
            "password=sample123456",
        ],
    )
    def test_never_flagged(self, text: str) -> None:
        assert find_secrets(text) == []

    def test_is_placeholder(self) -> None:
        assert is_placeholder("xxxx")
        assert is_placeholder("0000000000")
        assert not is_placeholder("ghp_" + B62[:36])


class TestOptions:
    def test_allow_list(self) -> None:
        token = "ghp_" + B62[:36]
        plugin = make(allow_list=[token, "Sup3rS3cr3t!"])
        assert plugin.filter_text(f"{token} password=Sup3rS3cr3t!", {}) == f"{token} password=Sup3rS3cr3t!"
        assert plugin.filter_text("AKIA2E0A8F3B244C9986", {}) == "[REDACTED:AWS_ACCESS_KEY_ID]"

    def test_entropy_gate(self) -> None:
        assert find_secrets("api_key=aabbcc1122") == []  # 2.3 bits a character, under 3.0
        assert redact("api_key=aabbcc1122", assignments={"min_entropy": 2.0}) == "api_key=[REDACTED:GENERIC_SECRET]"
        assert find_secrets("api_key=Zx9qL2m") == []  # 7 characters, under 8
        assert find_secrets("password=sunshine") == []  # a plain word
        assert redact("password=sunshine", assignments={"entropy_gate": False}) == "password=[REDACTED:PASSWORD]"
        assert find_secrets("password=aaaaa1") == []  # low entropy
        assert redact("password=hunter2") == "password=[REDACTED:PASSWORD]"
        assert find_secrets("password=abc1") == []  # too short
        assert redact("password=abc1", assignments={"password_min_length": 4}) == "password=[REDACTED:PASSWORD]"

    def test_switches_off(self) -> None:
        token = "sk-proj-" + B62[:80]
        plugin = make(detect={"openai_api_key": False, "password": False, "private_key": False})
        assert plugin.filter_text(f"key {token}", {}) == f"key {token}"
        assert plugin.filter_text("password=Sup3rS3cr3t!", {}) == "password=Sup3rS3cr3t!"
        assert plugin.filter_text("-----BEGIN RSA PRIVATE KEY-----\nMII", {}).startswith("-----BEGIN")
        assert plugin.filter_text("AKIA2E0A8F3B244C9986", {}) == "[REDACTED:AWS_ACCESS_KEY_ID]"
        assert plugin.filter_text("api_key=a8f5f167f44f4964e6c998dee827110c", {}).endswith("[REDACTED:GENERIC_SECRET]")
        off = make(detect={"generic_secret": False, "aws_secret_access_key": False})
        assert off.filter_text("api_key=a8f5f167f44f4964e6c998dee827110c", {}).endswith("827110c")
        assert off.filter_text("password=Sup3rS3cr3t!", {}) == "password=[REDACTED:PASSWORD]"

    @pytest.mark.parametrize(
        ("config", "field"),
        [
            ({"detect": {"openai": False}}, r"config\.detect\.openai: Extra inputs are not permitted"),
            ({"assignments": {"min_entropy": 9}}, r"config\.assignments\.min_entropy: "),
            ({"allow_list": "x"}, r"config\.allow_list: "),
            ({"action": "warn"}, r"config\.action: "),
            ({"placeholders": False}, r"config\.placeholders: Extra inputs"),
        ],
    )
    def test_config_errors_name_the_field(self, config: dict[str, Any], field: str) -> None:
        with pytest.raises(ValueError, match=field):
            make(**config)

    def test_block_names_types_never_values(self) -> None:
        plugin = make(action="block")
        token = "ghp_" + B62[:36]
        args = {"a": f"token {token}", "b": ["AKIA2E0A8F3B244C9986", "password=Sup3rS3cr3t!"]}
        result = plugin.tool_pre_invoke(ToolPreInvokePayload(name="t", args=args), None)  # type: ignore[arg-type]
        assert result is not None
        assert result.violation is not None
        assert result.violation.code == "SECRETS_DETECTED"
        assert result.violation.details["types"] == ["AWS_ACCESS_KEY_ID", "GITHUB_TOKEN", "PASSWORD"]
        shown = repr(result.violation)
        assert "AKIA" not in shown
        assert token not in shown
        assert "Sup3r" not in shown


def test_through_the_manager() -> None:
    config = {"plugins": [{"name": "secrets", "kind": "secrets_detection", "hooks": ["tool_pre_invoke"]}]}
    token = "sk-ant-api03-" + B62[:80]
    with PluginManager(config) as manager:
        payload = ToolPreInvokePayload(name="t", args={"q": f"key {token}", "n": {"db": "postgres://a:Hx7kq2Lz9q@h/d"}})
        result = manager.invoke_sync("tool_pre_invoke", payload, GlobalContext(request_id="1"))
        assert result.modified_payload.args == {
            "q": "key [REDACTED:ANTHROPIC_API_KEY]",
            "n": {"db": "postgres://a:[REDACTED:PASSWORD]@h/d"},
        }
        clean = ToolPreInvokePayload(name="t", args={"q": "nothing to see: a=b, see https://example.org"})
        assert manager.invoke_sync("tool_pre_invoke", clean, GlobalContext(request_id="2")).modified_payload is None


@pytest.mark.parametrize(
    "hostile",
    [
        "ghp_" * 50_000,
        "a" * 200_000 + "!",
        "-" * 200_000,
        "password=" * 20_000,
        "password" + " " * 200_000,
        "=" * 200_000,
        "." * 200_000,
        "A" * 200_000,
        "1" * 200_000 + ":AA",
        "://" + ":" * 200_000,
        "-----BEGIN RSA PRIVATE KEY-----" * 5_000,
        "eyJ" + "a" * 100_000 + "." * 50_000,
        "x" * 10 + "." + "M" * 100_000,
        "api_key" + "_" * 100_000,
    ],
)
def test_linear_on_hostile_input(hostile: str) -> None:
    """Every pattern is bounded: 200 KB of hostile text takes well under a second."""
    plugin = make(high_entropy={"enabled": True})
    start = time.perf_counter()
    plugin.filter_text(hostile, {})
    assert time.perf_counter() - start < 2.0
