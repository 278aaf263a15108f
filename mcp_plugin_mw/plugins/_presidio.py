"""
Presidio engine
===============

``pii_filter`` with ``engine: presidio`` adds the entities of Microsoft
Presidio's analyzer (``pip install 'mcp-plugin-mw[presidio]'``) to those of
its own detector: :class:`PresidioFinder` builds one
:class:`presidio_analyzer.AnalyzerEngine` per plugin, holding only the
recognizers of the configured entities, and reports what it finds as
``(entity, start, end)`` spans.

Nothing is downloaded, ever: Presidio's own spaCy engine fetches a missing
model, so the pipeline is loaded here (``spacy.load``, which only reads what
is installed) and handed to it. With no ``model``, the pipeline is
``spacy.blank(language)``: a tokenizer with no NER, enough for Presidio's
rule-based recognizers (regular expressions, most checked by a checksum, and
the context words that raise their scores; phone numbers). A model adds its
NER entities (``PERSON``, ``LOCATION``, ``NRP``, ``ORGANIZATION``,
``DATE_TIME``).

Importing this module imports Presidio and spaCy (seconds): ``pii_filter``
does so only for ``engine: presidio``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import spacy
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, PatternRecognizer, RecognizerRegistry
from presidio_analyzer import predefined_recognizers as _predefined
from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import PhoneRecognizer, SpacyRecognizer
from spacy.language import Language
from spacy.tokens import Doc

from ._base import config_error

__all__ = ["NER_ENTITIES", "PresidioFinder", "rule_entities"]

# spaCy labels as Presidio names them (Presidio's conf/default.yaml);
# ORGANIZATION is kept, unlike there: only the entities asked for are reported.
_LABELS = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
# Labels of the English models that name no personal data; ignored so that
# Presidio does not warn of each one it meets.
_IGNORED = ("CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART")

NER_ENTITIES: frozenset[str] = frozenset(_LABELS.values())
"""The entities a spaCy model's NER finds."""

_LEMMA_FALLBACK = "mcp_plugin_mw_lemma_fallback"


@Language.component(_LEMMA_FALLBACK)
def _lemma_fallback(doc: Doc) -> Doc:
    # Presidio raises a pattern match's score when a context word ("driver",
    # "passport") is among the lemmas before it; a blank pipeline has no
    # lemmatizer, so its lemmas are empty and no context would ever count.
    for token in doc:
        if not token.lemma_:
            token.lemma_ = token.lower_
    return doc


class _LoadedSpacy(SpacyNlpEngine):
    """Presidio's spaCy engine over a pipeline already loaded (its own ``load`` downloads a missing model)."""

    def __init__(self, language: str, nlp: Language) -> None:
        super().__init__(
            models=[{"lang_code": language, "model_name": nlp.meta.get("name") or "blank"}],
            ner_model_configuration=NerModelConfiguration(
                model_to_presidio_entity_mapping=_LABELS, labels_to_ignore=_IGNORED
            ),
        )
        self._pipeline = nlp
        self._language = language

    def load(self) -> None:
        """Hand Presidio the pipeline given."""
        # Presidio leaves ``nlp`` unannotated, so its type is that of its first value, None.
        self.nlp = {self._language: self._pipeline}  # type: ignore[assignment]


# Presidio's recognizers that need no model: regular expressions (most with
# a checksum) and phonenumbers. The others run a model or call a service.
_RULE_BASES = (PatternRecognizer, PhoneRecognizer)


@cache
def _rule_recognizers() -> dict[str, type[Any]]:
    """Presidio's predefined rule-based recognizers by entity."""
    found: dict[str, type[Any]] = {}
    for name in _predefined.__all__:
        cls: Any = getattr(_predefined, name)
        if not _is_rule_recognizer(cls):
            continue
        try:
            recognizer = cls(supported_language="en")
        except TypeError:  # a signature of its own: not one we can build generically
            continue
        for entity in recognizer.get_supported_entities():
            found.setdefault(entity, cls)
    return found


def _is_rule_recognizer(cls: object) -> bool:
    # A plain bool, not a narrowing check: the classes' own signatures vary.
    return inspect.isclass(cls) and issubclass(cls, _RULE_BASES)


def rule_entities() -> list[str]:
    """The entities Presidio's rule-based recognizers find (no model needed), sorted."""
    return sorted(_rule_recognizers())


class PresidioFinder:
    """Finds ``entities`` with Presidio's analyzer, built once (that takes a while).

    :param entities: Presidio entity names.
    :param explicit: whether ``entities`` were configured, not the defaults:
        then an NER entity without a ``model`` is an error, where the
        defaults' NER entities are only left out.
    :raises ValueError: ``config.presidio.<field>: <problem>`` for an unknown
        entity, an unknown language or a model that is not installed.
    """

    def __init__(
        self,
        entities: Sequence[str],
        *,
        language: str = "en",
        model: str | None = None,
        score_threshold: float = 0.5,
        explicit: bool = True,
    ) -> None:
        rules = _rule_recognizers()
        unknown = [entity for entity in entities if entity not in rules and entity not in NER_ENTITIES]
        if unknown:
            raise config_error([("presidio.entities", _unknown_entities(unknown, [*rules, *NER_ENTITIES]))])
        wanted = list(dict.fromkeys(entities))
        needing = [entity for entity in wanted if entity in NER_ENTITIES and entity not in rules]
        if model is None and needing:
            if explicit:
                problem = f"needs a spaCy model with NER (set presidio.model): {', '.join(needing)}"
                raise config_error([("presidio.entities", problem)])
            wanted = [entity for entity in wanted if entity not in needing]
        nlp = _pipeline(language, model)
        recognizers: list[EntityRecognizer] = [
            rules[entity](supported_language=language) for entity in wanted if entity in rules
        ]
        ner = [entity for entity in wanted if entity in NER_ENTITIES] if model is not None else []
        if ner:
            recognizers.append(SpacyRecognizer(supported_language=language, supported_entities=ner))
        self.entities = wanted
        self._threshold = score_threshold
        self._language = language
        self._analyzer = AnalyzerEngine(
            registry=RecognizerRegistry(recognizers=recognizers, supported_languages=[language]),
            nlp_engine=_LoadedSpacy(language, nlp),
            supported_languages=[language],
        )

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """Presidio's findings in ``text`` as ``(entity, start, end)``, best score first among equal starts."""
        if not text or text.isspace():
            return []
        results = self._analyzer.analyze(
            text, language=self._language, entities=self.entities, score_threshold=self._threshold
        )
        results.sort(key=lambda result: (result.start, -result.score))
        return [(result.entity_type, result.start, result.end) for result in results]


def _pipeline(language: str, model: str | None) -> Language:
    if model is None:
        try:
            nlp = spacy.blank(language)
        except ImportError:
            raise config_error([("presidio.language", f"spaCy has no language {language!r}")]) from None
    else:
        try:
            nlp = spacy.load(model)
        except (OSError, ImportError, ValueError) as exc:
            message = f"cannot load the spaCy model {model!r} (install it: python -m spacy download {model}): {exc}"
            raise config_error([("presidio.model", message)]) from None
        if nlp.lang != language:
            raise config_error([("presidio.language", f"{language!r}, but the model {model!r} is for {nlp.lang!r}")])
    nlp.add_pipe(_LEMMA_FALLBACK, last=True)
    return nlp


def _unknown_entities(unknown: Iterable[str], known: Sequence[str]) -> str:
    hints = []
    for entity in unknown:
        close = difflib.get_close_matches(entity, known, n=1)
        hints.append(f"{entity} (did you mean {close[0]}?)" if close else entity)
    return f"no Presidio recognizer (rule-based, or spaCy NER) finds {', '.join(hints)}"
