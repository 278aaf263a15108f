"""How well the PII and secrets detectors do on the labelled corpora in ``tests/data``.

The corpora (``pii_eval.jsonl``, ``secrets_eval.jsonl``) are written by
``tests/data/make_detection_corpus.py``, whose docstring gives the labelling
rules; ``test_corpus_matches_generator`` keeps the files and the script in step.

Scoring is span-level. A predicted span is a true positive when it overlaps a
gold span not matched yet by at least half the length of the LONGER of the two
(``overlap / max(len(gold), len(predicted)) >= 0.5``): a prediction that covers
only a fragment of a value does not count, and neither does one that swallows
the value together with much of its surroundings (a label, the rest of a
line), since masking either would be wrong. Matching is greedy and one-to-one,
best overlap first. Per-type PII scores match predictions against gold spans
of the same type; type-agnostic scores (all of the secrets scores, since the
secrets labels are being renamed) ignore the type. Unmatched predictions are
false positives, unmatched gold spans misses.

The detectors run as users configure them, with default settings: the
``pii_filter`` plugin's ``find`` and ``mcp_plugin_mw.plugins.secrets.find_secrets``.
Run with ``-s`` to see the tables; a failing test lists up to 30 misses and 30
false positives with the text around them.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mcp_plugin_mw import PluginConfig
from mcp_plugin_mw.plugins import secrets as secrets_plugin
from mcp_plugin_mw.plugins.pii import PIIFilterPlugin

DATA = Path(__file__).resolve().parent / "data"
GENERATOR = DATA / "make_detection_corpus.py"
PII_FILE = DATA / "pii_eval.jsonl"
SECRETS_FILE = DATA / "secrets_eval.jsonl"

PII_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IP_ADDRESS", "IBAN", "SSN")
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "nl_NL", "es_ES")
MIN_OVERLAP = 0.5
PII_F1_TARGET = 0.97
SECRETS_PRECISION_TARGET = 0.95
SECRETS_RECALL_TARGET = 0.95
MAX_EXAMPLES = 30

Span = tuple[str, int, int]
Case = dict[str, Any]
Predict = Callable[[str], Sequence[Span]]


# ----------------------------------------------------------------- corpora


def read_jsonl(path: Path) -> list[Case]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@cache
def pii_corpus() -> tuple[Case, ...]:
    return tuple(read_jsonl(PII_FILE))


@cache
def secrets_corpus() -> tuple[Case, ...]:
    return tuple(read_jsonl(SECRETS_FILE))


@cache
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_detection_corpus", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gold(case: Case) -> list[Span]:
    return [(span["type"], span["start"], span["end"]) for span in case["spans"]]


def is_placeholder(case: Case) -> bool:
    return "-placeholder-" in case["id"]


# ----------------------------------------------------------------- detectors


@cache
def pii_plugin() -> PIIFilterPlugin:
    return PIIFilterPlugin(PluginConfig(name="pii_filter", kind="mcp_plugin_mw.plugins.pii.PIIFilterPlugin"))


def find_pii(text: str) -> list[Span]:
    return [(kind, start, end) for kind, start, end in pii_plugin().find(text)]


def find_secrets(text: str) -> list[Span]:
    return [(kind, start, end) for kind, start, end in secrets_plugin.find_secrets(text)]


@cache
def predictions(corpus: str) -> tuple[list[Span], ...]:
    cases, predict = (pii_corpus(), find_pii) if corpus == "pii" else (secrets_corpus(), find_secrets)
    return tuple(list(predict(case["text"])) for case in cases)


# ----------------------------------------------------------------- scoring


def overlap_ratio(a: Span, b: Span) -> float:
    shared = min(a[2], b[2]) - max(a[1], b[1])
    if shared <= 0:
        return 0.0
    return shared / max(a[2] - a[1], b[2] - b[1])


def match(
    truth: Sequence[Span], found: Sequence[Span], typed: bool
) -> tuple[list[tuple[int, int]], set[int], set[int]]:
    """Greedy one-to-one matching: (pairs of gold and predicted indexes, missed gold, false predictions)."""
    candidates = []
    for g, want in enumerate(truth):
        for p, got in enumerate(found):
            if typed and want[0] != got[0]:
                continue
            ratio = overlap_ratio(want, got)
            if ratio >= MIN_OVERLAP:
                candidates.append((-ratio, g, p))
    candidates.sort()
    pairs: list[tuple[int, int]] = []
    used_gold: set[int] = set()
    used_found: set[int] = set()
    for _, g, p in candidates:
        if g not in used_gold and p not in used_found:
            pairs.append((g, p))
            used_gold.add(g)
            used_found.add(p)
    return pairs, set(range(len(truth))) - used_gold, set(range(len(found))) - used_found


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn


@dataclass
class Example:
    case_id: str
    kind: str
    span: Span
    snippet: str


def snippet(text: str, start: int, end: int, width: int = 40) -> str:
    left = text[max(0, start - width) : start]
    right = text[end : end + width]
    shown = f"{left}[[{text[start:end]}]]{right}"
    return shown.replace("\n", "\\n")


@dataclass
class Report:
    tallies: dict[str, Tally]
    missed: list[Example]
    false: list[Example]


def score(
    cases: Sequence[Case], found: Sequence[Sequence[Span]], group: Callable[[Case, Span], Iterable[str]], typed: bool
) -> Report:
    """Tallies per group; each gold or predicted span counts in every group ``group(case, span)`` names."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    missed: list[Example] = []
    false: list[Example] = []
    for case, predicted in zip(cases, found, strict=True):
        truth = gold(case)
        pairs, lost, extra = match(truth, predicted, typed)
        for g, _ in pairs:
            for name in group(case, truth[g]):
                tallies[name].tp += 1
        for g in sorted(lost):
            for name in group(case, truth[g]):
                tallies[name].fn += 1
            missed.append(Example(case["id"], "missed", truth[g], snippet(case["text"], *truth[g][1:])))
        for p in sorted(extra):
            for name in group(case, predicted[p]):
                tallies[name].fp += 1
            false.append(Example(case["id"], "false positive", predicted[p], snippet(case["text"], *predicted[p][1:])))
    return Report(dict(tallies), missed, false)


def table(title: str, tallies: dict[str, Tally], order: Sequence[str] = ()) -> str:
    names = [name for name in order if name in tallies] + sorted(set(tallies) - set(order))
    width = max([len(title), *(len(name) for name in names)])
    lines = [f"{title:<{width}}  precision  recall      f1  support   tp   fp   fn"]
    for name in names:
        t = tallies[name]
        lines.append(
            f"{name:<{width}}  {t.precision:9.3f}  {t.recall:6.3f}  {t.f1:6.3f}  {t.support:7d}"
            f"  {t.tp:3d}  {t.fp:3d}  {t.fn:3d}"
        )
    return "\n".join(lines)


def examples(report: Report) -> str:
    lines = [f"missed ({len(report.missed)}, first {MAX_EXAMPLES}):"]
    lines += [f"  {e.case_id} {e.span[0]}: {e.snippet}" for e in report.missed[:MAX_EXAMPLES]]
    lines.append(f"false positives ({len(report.false)}, first {MAX_EXAMPLES}):")
    lines += [f"  {e.case_id} {e.span[0]}: {e.snippet}" for e in report.false[:MAX_EXAMPLES]]
    return "\n".join(lines)


# ----------------------------------------------------------------- tests


def test_corpus_matches_generator() -> None:
    """The committed files are exactly what the script writes (rerun it after changing it)."""
    module = generator()
    assert module.dumps(module.pii_cases()) == PII_FILE.read_text(encoding="utf-8"), (
        "tests/data/pii_eval.jsonl differs from the generator; run python tests/data/make_detection_corpus.py"
    )
    assert module.dumps(module.secrets_cases()) == SECRETS_FILE.read_text(encoding="utf-8"), (
        "tests/data/secrets_eval.jsonl differs from the generator; run python tests/data/make_detection_corpus.py"
    )


def test_corpus_sizes() -> None:
    pii = pii_corpus()
    positives = [case for case in pii if case["spans"]]
    negatives = [case for case in pii if not case["spans"]]
    assert len(positives) >= 1000
    assert len(negatives) >= 400
    per_locale = Counter(case["locale"] for case in positives)
    assert set(LOCALES) <= set(per_locale)
    assert min(per_locale.values()) == max(per_locale.values()), per_locale
    assert set(Counter(case["locale"] for case in negatives)) >= set(LOCALES)
    types = Counter(span["type"] for case in positives for span in case["spans"])
    assert set(types) == set(PII_TYPES), types
    assert {case["style"] for case in positives} >= {"prose", "json", "log", "csv"}

    secrets = secrets_corpus()
    positives = [case for case in secrets if case["spans"]]
    negatives = [case for case in secrets if not case["spans"]]
    placeholders = [case for case in negatives if is_placeholder(case)]
    assert len(positives) >= 400
    assert len(negatives) >= 200
    assert len(placeholders) >= 100
    assert all(is_placeholder(case) or "-negative-" in case["id"] for case in negatives)
    texts = "\n".join(case["text"] for case in placeholders)
    for documented in (
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "<your-api-key>",
        "YOUR_API_KEY",
        "${OPENAI_API_KEY}",
        "$API_KEY",
        "{{ secrets.TOKEN }}",
        "postgres://user:password@localhost",
        'os.environ["API_KEY"]',
    ):
        assert documented in texts, documented

    for case in (*pii, *secrets):
        previous = 0
        for span in case["spans"]:
            assert previous <= span["start"] < span["end"] <= len(case["text"]), case["id"]
            previous = span["end"]


def test_pii_accuracy() -> None:
    cases, found = pii_corpus(), predictions("pii")
    by_type = score(cases, found, lambda case, span: [span[0]], typed=True)
    overall = score(cases, found, lambda case, span: ["all types"], typed=False)
    by_locale = score(cases, found, lambda case, span: [case["locale"]], typed=False)
    by_style = score(cases, found, lambda case, span: [case["style"]], typed=False)
    negatives = [case["id"] for case, spans in zip(cases, found, strict=True) if not case["spans"] and spans]
    text = "\n\n".join(
        [
            table("PII per type", by_type.tallies, PII_TYPES),
            table("PII, any type", overall.tallies),
            table("PII per locale", by_locale.tallies, LOCALES),
            table("PII per style", by_style.tallies, ("prose", "json", "log", "csv", "code")),
            f"hard negatives flagged: {len(negatives)} of {sum(1 for case in cases if not case['spans'])}",
        ]
    )
    print("\n" + text)
    failures = [
        f"{kind} F1 {by_type.tallies.get(kind, Tally()).f1:.3f} < {PII_F1_TARGET}"
        for kind in PII_TYPES
        if by_type.tallies.get(kind, Tally(fn=1)).f1 < PII_F1_TARGET
    ]
    if overall.tallies["all types"].f1 < PII_F1_TARGET:
        failures.append(f"type-agnostic F1 {overall.tallies['all types'].f1:.3f} < {PII_F1_TARGET}")
    if failures:
        pytest.fail("\n".join([*failures, "", text, "", examples(by_type)]), pytrace=False)


def secrets_reports() -> tuple[Report, dict[str, Tally], list[Example]]:
    cases, found = secrets_corpus(), predictions("secrets")
    overall = score(cases, found, lambda case, span: ["all"], typed=False)
    per_category: dict[str, Tally] = defaultdict(Tally)
    for case, predicted in zip(cases, found, strict=True):
        truth = gold(case)
        pairs, lost, _ = match(truth, predicted, typed=False)
        for g, _ in pairs:
            per_category[truth[g][0]].tp += 1
        for g in lost:
            per_category[truth[g][0]].fn += 1
    flagged = [
        Example(case["id"], "placeholder flagged", span, snippet(case["text"], span[1], span[2]))
        for case, predicted in zip(cases, found, strict=True)
        if is_placeholder(case)
        for span in predicted
    ]
    return overall, dict(per_category), flagged


def secrets_text(overall: Report, per_category: dict[str, Tally], flagged: list[Example]) -> str:
    recall = ["category               recall  support  missed"]
    for name in sorted(per_category):
        t = per_category[name]
        recall.append(f"{name:<21}  {t.recall:6.3f}  {t.support:7d}  {t.fn:6d}")
    placeholders = sum(1 for case in secrets_corpus() if is_placeholder(case))
    lines = [f"placeholders flagged: {len(flagged)} spans in {len({e.case_id for e in flagged})} of {placeholders}"]
    lines += [f"  {e.case_id} {e.span[0]}: {e.snippet}" for e in flagged[:MAX_EXAMPLES]]
    return "\n\n".join([table("secrets, any type", overall.tallies), "\n".join(recall), "\n".join(lines)])


def test_secrets_accuracy() -> None:
    overall, per_category, flagged = secrets_reports()
    text = secrets_text(overall, per_category, flagged)
    print("\n" + text)
    tally = overall.tallies["all"]
    failures = []
    if tally.precision < SECRETS_PRECISION_TARGET:
        failures.append(f"precision {tally.precision:.3f} < {SECRETS_PRECISION_TARGET}")
    if tally.recall < SECRETS_RECALL_TARGET:
        failures.append(f"recall {tally.recall:.3f} < {SECRETS_RECALL_TARGET}")
    if failures:
        pytest.fail("\n".join([*failures, "", text, "", examples(overall)]), pytrace=False)


def test_secrets_placeholders_not_flagged() -> None:
    overall, per_category, flagged = secrets_reports()
    if flagged:
        pytest.fail(secrets_text(overall, per_category, flagged), pytrace=False)
