"""Per-example scores: exact match, token F1 and answer-in-passage retrieval recall.

Normalisation is exactly the SQuAD v1.1 evaluation script's `normalize_answer`, so numbers are comparable
with the paper and with other KILT-style reports:

1. lowercase (`str.lower`, which is Unicode-aware: "ÉCOLE" -> "école");
2. delete every character in `string.punctuation` -- the 32 ASCII punctuation marks and nothing else;
3. replace the whole words "a", "an", "the" by a space;
4. split on any whitespace (Unicode-aware: a no-break space separates words) and re-join with one space.

Deliberately *not* done (SQuAD does not do it either, and the golden tests pin it):

* no Unicode normalisation and no accent stripping: "Café" -> "café", "naïve" -> "naïve", and a
  decomposed "Cafe" + U+0301 does NOT equal the composed "Café" (task data is expected to be NFC);
* non-ASCII punctuation is kept: curly quotes and apostrophes (‘ ’ “ ”) and the en dash (–) survive, so
  "Don’t" -> "don’t" while "Don't" -> "dont", and "1914–1918" -> "1914–1918" while "1914-1918" ->
  "19141918". An article next to a curly quote is still removed ("“The Matrix”" -> "“ matrix”").
"""
from __future__ import annotations

import os
import re
import string
from collections import Counter
from typing import Sequence

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 answer normalisation (see the module docstring for the exact, pinned behaviour).

    Why: EM, F1 and recall must all compare answers the same way, and the same way as the paper.
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _check_golds(golds: Sequence[str]) -> None:
    if isinstance(golds, str):
        raise TypeError("golds must be a list of answer strings, not a single string")
    if len(golds) == 0:
        raise ValueError("golds is empty: every example needs at least one accepted answer")


def exact_match(pred: str, golds: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold (alias), else 0.0.

    A gold that normalises to "" (e.g. "The") matches only a prediction that also normalises to "".
    Raises ValueError on an empty gold list: callers validate examples earlier, so this is a bug.
    """
    _check_golds(golds)
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(g) for g in golds))


def _f1_one(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        # SQuAD v2 rule: two empty answers agree, an empty one never overlaps a non-empty one.
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(pred: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 (bag of normalised whitespace tokens, with multiplicity), max over golds.

    Empty prediction vs a non-empty gold -> 0.0; both empty after normalisation -> 1.0 (the SQuAD v2
    convention, consistent with `exact_match`). Raises ValueError on an empty gold list.
    """
    _check_golds(golds)
    p = normalize_answer(pred).split()
    return max(_f1_one(p, normalize_answer(g).split()) for g in golds)


def recall_at_k(golds: Sequence[str], passages_text: Sequence[str], k: int) -> float:
    """1.0 if any gold is a substring of any of the top-k passages, both normalised; else 0.0.

    This answer-in-passage substring test on normalised text is the paper's retrieval-recall definition.
    `passages_text` is ranked, each entry the passage's title and text already joined by the caller
    (so a gold found only in the title counts). Matching is on characters, not whole words: "art" is
    found in "party". Golds that normalise to "" are ignored (they would match everything); if none
    is left the result is 0.0. Fewer than k passages is fine. Raises ValueError for k < 1 or no golds.
    """
    _check_golds(golds)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    needles = _needles(golds)
    return 1.0 if any(_found(needles, text) for text in list(passages_text)[:k]) else 0.0


def _needles(golds: Sequence[str]) -> list[str]:
    return [n for n in (normalize_answer(g) for g in golds) if n]


def _found(needles: list[str], text: str) -> bool:
    hay = normalize_answer(text)
    return any(n in hay for n in needles)


def contains_answer(golds: Sequence[str], text: str) -> bool:
    """Whether one passage text holds a gold answer by recall@k's test (normalised substring; golds that
    normalise to "" ignored). Training uses it to pick answer-bearing passages."""
    return _found(_needles(golds), text)


def score_example(prediction: str, golds: Sequence[str], passages_text: Sequence[str] | None,
                  k: int, recall: bool) -> dict:
    """All scores of one example: {"em", "f1", "recall"}, the per-example record the report pools.

    recall is None when it does not apply: the task has no meaningful recall (`recall=False`, e.g.
    FEVER's True/False answers) or the system retrieved nothing (`passages_text is None`, closed-book).
    """
    return {
        "em": exact_match(prediction, golds),
        "f1": f1(prediction, golds),
        "recall": recall_at_k(golds, passages_text, k) if recall and passages_text is not None else None,
    }


def evaluate_module_path() -> str:
    """Absolute path of the local `evaluate` metric folder, for `evaluate.load(path)` (works offline).

    The module computes mean exact_match and f1 with these very functions (it imports them).
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics_module")
