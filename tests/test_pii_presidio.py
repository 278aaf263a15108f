"""``pii_filter`` with ``engine: presidio``: Presidio's entities added to the built-in types.

Presidio's pattern recognizers run on a blank spaCy pipeline (no model, no
download); NER is tested on a small pipeline built here whose entity ruler
labels a name and a place, loaded from a path as a model would be. Without
presidio-analyzer (the ``presidio`` extra, also in ``test``) these tests skip,
except with ``CI=true``, where they fail: CI installs the test extra.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from mcp_plugin_mw import ConfigError, GlobalContext, PluginConfig, PluginManager, ToolPostInvokePayload
from mcp_plugin_mw.plugins.pii import DEFAULT_PRESIDIO_ENTITIES, PIIFilterPlugin

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
HAVE_PRESIDIO = importlib.util.find_spec("presidio_analyzer") is not None
needs_presidio = pytest.mark.skipif(
    not HAVE_PRESIDIO and not CI, reason="presidio-analyzer is not installed (pip install 'mcp-plugin-mw[presidio]')"
)

PII = "mcp_plugin_mw.plugins.pii.PIIFilterPlugin"

# Values Presidio's pattern recognizers report at the default threshold
# (checksums pass; the licence needs its context word) and the built-in
# detector does not.
LICENSE = "D1234567"
NHS = "4010232137"
FISCAL = "RSSMRA85T10A562S"
NIF = "12345678Z"
TEXT = (
    f"Driver license {LICENSE}, NHS number {NHS}, codice fiscale {FISCAL}, DNI {NIF}; "
    "write to ada@example.com or call 415-555-2671, SSN 123-45-6789."
)


def make(**config: Any) -> PIIFilterPlugin:
    return PIIFilterPlugin(PluginConfig(name="pii", kind=PII, config=config))


def post(text: str) -> ToolPostInvokePayload:
    return ToolPostInvokePayload(name="lookup", result={"content": [{"type": "text", "text": text}]})


def invoke(config: dict[str, Any], text: str) -> Any:
    plugins = {"plugins": [{"name": "pii", "kind": PII, "hooks": ["tool_post_invoke"], "config": config}]}
    with PluginManager(plugins) as manager:
        return manager.invoke_sync("tool_post_invoke", post(text), GlobalContext(request_id="1"))


def masked(result: Any) -> str:
    assert result.continue_processing
    assert result.modified_payload is not None
    text: str = result.modified_payload.result["content"][0]["text"]
    return text


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A spaCy pipeline on disk whose entity ruler labels one name and one place."""
    if not HAVE_PRESIDIO and not CI:
        pytest.skip("presidio-analyzer is not installed")
    import spacy

    nlp = spacy.blank("en")
    ruler: Any = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Ada Lovelace"}, {"label": "GPE", "pattern": "London"}])
    path = tmp_path_factory.mktemp("model") / "en_ruler"
    nlp.to_disk(path)
    return str(path)


# --------------------------------------------------------------------------
# Finding and masking
# --------------------------------------------------------------------------


@needs_presidio
def test_pattern_entities_masked_through_the_manager() -> None:
    text = masked(invoke({"engine": "presidio"}, TEXT))
    assert text == (
        "Driver license [REDACTED:US_DRIVER_LICENSE], NHS number [REDACTED:UK_NHS], "
        "codice fiscale [REDACTED:IT_FISCAL_CODE], DNI [REDACTED:ES_NIF]; "
        "write to [REDACTED:EMAIL] or call [REDACTED:PHONE], SSN [REDACTED:SSN]."
    )


@needs_presidio
def test_builtin_types_keep_their_names() -> None:
    plugin = make(engine="presidio", presidio={"entities": ["US_SSN", "EMAIL_ADDRESS", "PHONE_NUMBER", "UK_NHS"]})
    found: dict[str, int] = {}
    # Presidio's US_SSN, PHONE_NUMBER and UK_NHS match the same spans as the
    # built-in SSN and PHONE: the built-in ones are kept.
    out = plugin.filter_text("SSN 123-45-6789, phone 415-555-2671, NHS 943 476 5919", found)
    assert out == "SSN [REDACTED:SSN], phone [REDACTED:PHONE], NHS [REDACTED:PHONE]"
    assert found == {"SSN": 1, "PHONE": 2}


@needs_presidio
def test_context_words_count_without_a_model() -> None:
    # The licence's pattern alone scores 0.3, below the threshold; "license"
    # before it adds 0.35 (the blank pipeline's lemmas are its words).
    plugin = make(engine="presidio", presidio={"entities": ["US_DRIVER_LICENSE"]})
    assert plugin.find(f"ref {LICENSE}") == []
    assert plugin.find(f"license {LICENSE}") == [("US_DRIVER_LICENSE", 8, 16)]
    low = make(engine="presidio", presidio={"entities": ["US_DRIVER_LICENSE"], "score_threshold": 0.3})
    assert low.find(f"ref {LICENSE}") == [("US_DRIVER_LICENSE", 4, 12)]


@needs_presidio
@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("partial", "codice fiscale ************562S, mail a***@example.com"),
        ("hash", "codice fiscale [HASH:IT_FISCAL_CODE:"),
    ],
)
def test_strategies_apply_to_presidio_types(strategy: str, expected: str) -> None:
    config = {"engine": "presidio", "strategy": strategy}
    text = masked(invoke(config, f"codice fiscale {FISCAL}, mail ada@example.com"))
    assert text.startswith(expected)


@needs_presidio
def test_block_names_presidio_types() -> None:
    result = invoke({"engine": "presidio", "strategy": "block"}, TEXT)
    assert not result.continue_processing
    violation = result.violation
    assert violation.code == "PII_DETECTED"
    kinds = ["EMAIL", "ES_NIF", "IT_FISCAL_CODE", "PHONE", "SSN", "UK_NHS", "US_DRIVER_LICENSE"]
    assert violation.details["types"] == kinds
    assert FISCAL not in f"{violation.description} {violation.details}"


@needs_presidio
def test_allow_list_and_detect_apply() -> None:
    plugin = make(engine="presidio", allow_list=[FISCAL], detect={"email": False})
    found: dict[str, int] = {}
    out = plugin.filter_text(f"{FISCAL} and {NIF} from ada@example.com", found)
    assert out == f"{FISCAL} and [REDACTED:ES_NIF] from ada@example.com"
    assert found == {"ES_NIF": 1}


@needs_presidio
def test_only_the_configured_entities() -> None:
    plugin = make(engine="presidio", presidio={"entities": ["it_fiscal_code"]})
    assert plugin.find(f"{FISCAL} {NIF} license {LICENSE}") == [("IT_FISCAL_CODE", 0, 16)]


@needs_presidio
def test_ner_with_a_model(ner_model: str) -> None:
    plugin = make(engine="presidio", presidio={"model": ner_model})
    found: dict[str, int] = {}
    out = plugin.filter_text(f"Ada Lovelace lives in London, codice fiscale {FISCAL}.", found)
    assert out == "[REDACTED:PERSON] lives in [REDACTED:LOCATION], codice fiscale [REDACTED:IT_FISCAL_CODE]."
    assert found == {"PERSON": 1, "LOCATION": 1, "IT_FISCAL_CODE": 1}
    # PERSON and LOCATION are defaults: without a model they are left out.
    assert {"PERSON", "LOCATION"} <= set(DEFAULT_PRESIDIO_ENTITIES)
    assert make(engine="presidio").find("Ada Lovelace lives in London") == []


@needs_presidio
def test_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch, ner_model: str) -> None:
    import spacy.cli

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setattr(spacy.cli, "download", refuse)
    make(engine="presidio").find(TEXT)
    make(engine="presidio", presidio={"model": ner_model}).find(TEXT)
    with pytest.raises(ValueError, match=r"config\.presidio\.model: "):
        make(engine="presidio", presidio={"model": "en_core_web_lg_not_installed"})


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------


def test_bad_engine_value() -> None:
    with pytest.raises(ValueError, match=r"config\.engine: Input should be 'builtin' or 'presidio'"):
        make(engine="spacy")


def test_unknown_key_under_presidio() -> None:
    with pytest.raises(ValueError, match=r"config\.presidio\.threshold: Extra inputs are not permitted"):
        make(engine="presidio", presidio={"threshold": 0.4})
    with pytest.raises(ValueError, match=r"config\.presidio\.score_threshold: "):
        make(engine="presidio", presidio={"score_threshold": 2})


def test_presidio_section_needs_the_engine() -> None:
    with pytest.raises(ValueError, match=r"config\.presidio: read only with engine: presidio"):
        make(presidio={"entities": ["PERSON"]})


@needs_presidio
def test_model_not_installed_names_the_field() -> None:
    pii = {"engine": "presidio", "presidio": {"model": "xx_nope"}}
    config = {"plugins": [{"name": "pii", "kind": PII, "config": pii}]}
    with pytest.raises(ConfigError, match=r"plugins\[0\] \(pii\).*config\.presidio\.model: .*python -m spacy download"):
        PluginManager(config)


@needs_presidio
def test_bad_entities_and_language() -> None:
    hint = r"finds US_DRIVERS_LICENSE \(did you mean US_DRIVER_LICENSE\?\)"
    with pytest.raises(ValueError, match=r"config\.presidio\.entities: no Presidio recognizer .* " + hint):
        make(engine="presidio", presidio={"entities": ["US_DRIVERS_LICENSE"]})
    # Asked for by name, an NER entity without a model would find nothing.
    with pytest.raises(ValueError, match=r"config\.presidio\.entities: needs a spaCy model .*: PERSON"):
        make(engine="presidio", presidio={"entities": ["PERSON", "UK_NHS"]})
    with pytest.raises(ValueError, match=r"config\.presidio\.language: spaCy has no language 'zz'"):
        make(engine="presidio", presidio={"language": "zz"})


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )


def test_missing_presidio_is_a_config_error() -> None:
    proc = run_python(
        """
        import sys
        sys.modules["presidio_analyzer"] = None  # as if not installed
        from mcp_plugin_mw.models import PluginConfig
        from mcp_plugin_mw.plugins.pii import PIIFilterPlugin
        try:
            PIIFilterPlugin(PluginConfig(name="pii", kind="pii_filter", config={"engine": "presidio"}))
        except ValueError as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "config.engine: presidio needs the presidio-analyzer package: pip install 'mcp-plugin-mw[presidio]'"
    )


def test_builtin_engine_never_imports_presidio() -> None:
    proc = run_python(
        """
        import sys
        from mcp_plugin_mw import GlobalContext, PluginManager, ToolPostInvokePayload
        config = {"plugins": [{"name": "pii", "kind": "mcp_plugin_mw.plugins.pii.PIIFilterPlugin"}]}
        payload = ToolPostInvokePayload(name="t", result={"content": [{"type": "text", "text": "SSN 123-45-6789"}]})
        with PluginManager(config) as manager:
            result = manager.invoke_sync("tool_post_invoke", payload, GlobalContext(request_id="1"))
        assert result.modified_payload.result["content"][0]["text"] == "SSN [REDACTED:SSN]"
        heavy = ("presidio_analyzer", "spacy", "mcp_plugin_mw.plugins._presidio")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
