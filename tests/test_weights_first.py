"""A gated or missing model fails before the corpus (21M passages at the paper's scale) or any task data is read:
`run`, `train` and `reproduce` check every model they will load first. The corpus loader records its reads."""
from __future__ import annotations

import pytest

from imprag_bench.harness.cli import main
from tests.test_lm_hub_errors import gated_hub

GATED = "meta-llama/Llama-3.2-3B"


@pytest.fixture
def reads(monkeypatch):
    gated_hub(monkeypatch)
    seen: list = []
    import imprag_bench.harness.corpus as corpora  # every floor reads corpora through it
    real = corpora.load_corpus
    monkeypatch.setattr(corpora, "load_corpus", lambda *a, **k: (seen.append(a), real(*a, **k))[1])
    return seen


@pytest.mark.parametrize("argv", [
    ["run", "--tasks", "nq", "--systems", "bm25", "imprag", "--model", GATED, "--examples", "2"],
    ["train", "imprag", "--preset", "quick", "--set", f"model={GATED}"],
    ["train", "ra-dit-llama", "--preset", "quick", "--set", f"model={GATED}"],
    ["reproduce", "--preset", "smoke", "--train-set", f"model={GATED}", "--no-costs"],
])
def test_a_gated_model_fails_before_the_corpus_is_read(argv, reads, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "gated and this account has no access" in err and "Traceback" not in err
    assert reads == []
    assert not (tmp_path / "out" / "preds").exists() and not (tmp_path / "out" / "checkpoint").exists()
