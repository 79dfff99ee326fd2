"""Golden tests for imprag_bench.harness.metrics: every expected value below was worked out by hand."""
import json
import os
import subprocess
import sys

import pytest

from imprag_bench.harness.metrics import (evaluate_module_path, exact_match, f1, normalize_answer, recall_at_k,
                             score_example)


@pytest.mark.parametrize("raw, expected", [
    ("The Eiffel Tower", "eiffel tower"),                # article + case
    ("a cat and an apple", "cat and apple"),             # every article
    ("  A   cat\tand\nan  apple ", "cat and apple"),     # whitespace collapsed
    ("theatre Anne analog", "theatre anne analog"),      # articles only as whole words
    ("U.S.A.", "usa"),                                   # ASCII punctuation deleted, not spaced
    ("rock-n-roll!", "rocknroll"),
    ("Don't", "dont"),
    ("The", ""),                                         # normalises to nothing
    ("a an the", ""),
    # Unicode: SQuAD-exact, no NFKD, no accent stripping, only ASCII punctuation removed
    ("Café", "café"),
    ("naïve", "naïve"),
    ("ÉCOLE", "école"),                                  # str.lower is Unicode-aware
    ("Cafe\u0301", "cafe\u0301"),                        # decomposed stays decomposed
    ("Don’t", "don’t"),                                  # curly apostrophe kept
    ("“Hello,” she said", "“hello” she said"),           # curly quotes kept, comma removed
    ("“The Matrix”", "“ matrix”"),                       # article next to a curly quote still removed
    ("1914–1918", "1914–1918"),                          # en dash kept
    ("1914-1918", "19141918"),                           # ASCII hyphen removed
    ("New\u00a0York", "new york"),                       # no-break space is whitespace
])
def test_normalize_answer_golden(raw, expected):
    assert normalize_answer(raw) == expected


def test_unicode_composition_is_not_normalised():
    # Pinned decision: no Unicode normalisation, so composed and decomposed "Café" differ.
    assert exact_match("Cafe\u0301", ["Caf\u00e9"]) == 0.0
    assert exact_match("CAFÉ", ["café"]) == 1.0
    assert exact_match("Don’t", ["Don't"]) == 0.0


def test_exact_match_golden():
    assert exact_match("Paris", ["paris"]) == 1.0
    assert exact_match("the Paris.", ["Paris"]) == 1.0
    assert exact_match("NYC", ["New York City", "NYC"]) == 1.0       # any alias
    assert exact_match("New York", ["New York City", "NYC"]) == 0.0
    assert exact_match("", ["Paris"]) == 0.0                           # empty prediction
    assert exact_match("   ", ["Paris"]) == 0.0


def test_gold_that_normalises_to_empty():
    assert exact_match("", ["The"]) == 1.0
    assert exact_match("a", ["The"]) == 1.0
    assert exact_match("the end", ["The"]) == 0.0
    assert f1("an", ["The"]) == 1.0
    assert f1("dog", ["The"]) == 0.0
    assert f1("", ["Paris"]) == 0.0


def test_f1_golden():
    # pred -> [big, red, dog]; gold -> [red, dog, house]; 2 shared: P = R = 2/3, F1 = 2/3
    assert f1("the big red dog", ["red dog house"]) == pytest.approx(2 / 3)
    # pred [red, red, dog] vs gold [red, dog]: shared 2 (red counted once); P = 2/3, R = 1, F1 = 0.8
    assert f1("red red dog", ["red dog"]) == pytest.approx(0.8)
    # max over aliases: vs [obama] P=1/2 R=1 F1=2/3; vs [barack, hussein, obama] P=1 R=2/3 F1=0.8
    assert f1("Barack Obama", ["Obama", "Barack Hussein Obama"]) == pytest.approx(0.8)
    assert f1("cat", ["dog"]) == 0.0
    assert f1("The Dog.", ["dog"]) == 1.0


def test_empty_or_wrong_golds_raise():
    for fn in (exact_match, f1):
        with pytest.raises(ValueError):
            fn("x", [])
        with pytest.raises(TypeError):
            fn("x", "Paris")
    with pytest.raises(ValueError):
        recall_at_k([], ["text"], 5)


def test_recall_substring_positive_negative():
    assert recall_at_k(["Eiffel Tower"], ["Paris\nThe Eiffel Tower is in Paris."], 1) == 1.0
    assert recall_at_k(["Eiffel Tower"], ["Berlin\nThe Brandenburg Gate."], 1) == 0.0
    # punctuation and articles normalised on both sides: "U.S." -> "us", passage "... in us in 1990"
    assert recall_at_k(["U.S."], ["born in the U.S. in 1990"], 1) == 1.0
    # substring on characters, not whole words (the paper's definition): "art" inside "party"
    assert recall_at_k(["art"], ["a party"], 1) == 1.0
    assert recall_at_k(["x"], [], 3) == 0.0


def test_recall_k_cutoff():
    passages = ["Berlin\nBrandenburg Gate", "Paris\nThe Eiffel Tower"]
    assert recall_at_k(["Eiffel Tower"], passages, 1) == 0.0
    assert recall_at_k(["Eiffel Tower"], passages, 2) == 1.0
    assert recall_at_k(["Eiffel Tower"], passages, 10) == 1.0      # fewer passages than k is fine
    with pytest.raises(ValueError):
        recall_at_k(["Eiffel Tower"], passages, 0)


def test_recall_title_match_and_aliases():
    assert recall_at_k(["Gustave Eiffel"], ["Gustave Eiffel\nHe was a French engineer."], 1) == 1.0
    assert recall_at_k(["Nope", "French engineer"], ["Gustave Eiffel\nHe was a French engineer."], 1) == 1.0


def test_recall_ignores_golds_empty_after_normalisation():
    assert recall_at_k(["The"], ["the end"], 1) == 0.0
    assert recall_at_k(["The", "end"], ["the end"], 1) == 1.0


def test_score_example():
    assert score_example("Paris", ["Paris"], ["France\nParis is the capital."], k=5, recall=True) == \
        {"em": 1.0, "f1": 1.0, "recall": 1.0}
    assert score_example("Lyon", ["Paris"], ["France\nLyon"], k=5, recall=True) == \
        {"em": 0.0, "f1": 0.0, "recall": 0.0}
    assert score_example("True", ["True"], ["Some passage"], k=5, recall=False)["recall"] is None
    out = score_example("the big red dog", ["red dog house"], None, k=5, recall=True)
    assert out["recall"] is None and out["em"] == 0.0 and out["f1"] == pytest.approx(2 / 3)


def test_evaluate_module_offline(tmp_path):
    """evaluate.load on the local folder works with the hub offline and agrees with the functions."""
    preds = ["the big red dog", "Paris", "", "Barack Obama"]
    refs = [["red dog house"], ["paris", "Lutetia"], ["The"], ["Obama", "Barack Hussein Obama"]]
    code = ("import json, sys, evaluate\n"
            "m = evaluate.load(sys.argv[1])\n"
            "print(json.dumps(m.compute(predictions=json.loads(sys.argv[2]), references=json.loads(sys.argv[3]))))\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-c", code, evaluate_module_path(), json.dumps(preds), json.dumps(refs)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # by hand: EM = (0 + 1 + 1 + 0) / 4 = 0.5; F1 = (2/3 + 1 + 1 + 0.8) / 4
    assert got["exact_match"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx((2 / 3 + 1 + 1 + 0.8) / 4)
    assert got["exact_match"] == pytest.approx(sum(exact_match(p, r) for p, r in zip(preds, refs)) / 4)
    assert got["f1"] == pytest.approx(sum(f1(p, r) for p, r in zip(preds, refs)) / 4)
