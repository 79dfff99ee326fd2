"""The pooling ablation axis (harness.pooling) for ImpRAG and RA-DIT-Llama alike: mean-pooled E_q / E_p
against Hugging Face's own hidden states, the one-pass inference query, the corpus centring, and the index
bindings that keep every setting's vectors apart. The paper's recipes never set it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder, LMSliceRetriever
from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.prompting import lm_input
from imprag_bench.harness.pooling import centre_vectors, pool_tokens, sample_rows
from imprag_bench.harness.records import Example, Passage
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
from tests.hf_reference import DOCS, reference_e_p, reference_e_q
from tests.tiny import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS = ["Q: who wrote it? A:", "Q: x A:", "a longer prompt about the capital of France, Q: A:"]


def test_pool_tokens_golden():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                      [[9.0, 9.0], [7.0, 0.0], [1.0, 2.0]]])
    right = torch.tensor([[True, True, False], [True, True, True]])  # row 0 right-padded
    left = torch.tensor([[False, True, True], [False, False, True]])  # left padding
    assert pool_tokens(x, right, "last").tolist() == [[3.0, 4.0], [1.0, 2.0]]
    assert pool_tokens(x, left, "last").tolist() == [[5.0, 6.0], [1.0, 2.0]]
    assert torch.allclose(pool_tokens(x, right, "mean"), torch.tensor([[2.0, 3.0], [17 / 3, 11 / 3]]))
    assert pool_tokens(x, left, "mean").tolist() == [[4.0, 5.0], [1.0, 2.0]]


def test_sample_rows_are_even_and_deterministic():
    assert sample_rows(5, 8) == [0, 1, 2, 3, 4]
    rows = sample_rows(10_000, 4)
    assert rows == [0, 3333, 6666, 9999] and rows == sample_rows(10_000, 4)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # qwen2's q/k projections carry a bias
@pytest.mark.parametrize("b", [0, 2, 4])
def test_mean_pooled_imprag_embeddings_equal_hf_hidden_states(tok, arch, b):
    """Mean of every token's key (query) from HF's hidden states == ImpRAG's mean-pooled E_p (E_q), batched
    and padded: projecting the mean feature equals averaging the projections, bias or not."""
    model = tiny_llama(n_layers=5, arch=arch, seed=3)
    l_max, k = 24, 2
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=b, t=4, l_max=l_max, k=k, pooling="mean"))
    e_p = im.embed_passages(DOCS, batch_size=2)
    for i, doc in enumerate(DOCS):
        np.testing.assert_allclose(e_p[i], reference_e_p(model, tok, doc, b, l_max, "mean"), atol=1e-5, rtol=1e-5)
        assert not np.allclose(e_p[i], reference_e_p(model, tok, doc, b, l_max, "last"), atol=1e-3)
    e_q = im.embed_queries(PROMPTS, batch_size=2)
    for i, prompt in enumerate(PROMPTS):
        np.testing.assert_allclose(e_q[i], reference_e_q(model, tok, prompt, b, k * l_max, "mean"),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_generate_retrieves_with_the_configured_pooling(tok, pooling):
    """The one-pass inference hands the retriever the same E_q `embed_queries` computes."""
    model = tiny_llama(n_layers=4, seed=1)
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=16, k=2, pooling=pooling))
    seen = []

    def retrieve(e_q, k):
        seen.append(e_q)
        return [["a", "b"] for _ in range(len(e_q))]
    im.generate(PROMPTS, retrieve, lambda ids: ["Paris.", "Rome."], k=2, max_new_tokens=1, batch_size=8)
    order = sorted(range(len(PROMPTS)), key=lambda i: len(PROMPTS[i]))
    want = im.embed_queries([PROMPTS[i] for i in order], k=2)
    np.testing.assert_allclose(np.concatenate(seen), want, atol=1e-4, rtol=1e-4)


def test_lm_slice_mean_pooling_equals_hf_and_is_saved(tmp_path, tok):
    lm = tiny_llama(n_layers=4, seed=5)
    enc = LMSliceEncoder.from_lm(lm, tok, b=2, l_max=24, pooling="mean")
    e_p, e_q = enc.encode_passages(DOCS, batch_size=2), enc.encode_queries(PROMPTS, batch_size=2)
    for i, doc in enumerate(DOCS):
        np.testing.assert_allclose(e_p[i], reference_e_p(lm, tok, doc, 2, 24, "mean"), atol=1e-5, rtol=1e-5)
    for i, prompt in enumerate(PROMPTS):
        np.testing.assert_allclose(e_q[i], reference_e_q(lm, tok, prompt, 2, 0, "mean"), atol=1e-5, rtol=1e-5)
    enc.save(tmp_path / "r")
    assert json.loads((tmp_path / "r" / "retriever.json").read_text())["pooling_mode"] == "mean"
    assert LMSliceEncoder.load(tmp_path / "r").pooling == "mean"
    assert LMSliceEncoder.load(tmp_path / "r", pooling="last").pooling == "last"  # an evaluation override
    with pytest.raises(UserError, match="pooling must be one of last, mean"):
        LMSliceEncoder.from_lm(lm, tok, b=1, pooling="max")


def corpus() -> Corpus:
    return Corpus("tiny", [Passage(f"d{i}", f"T{i}", doc) for i, doc in enumerate(DOCS * 3)])


def index_bindings(cache) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())["binding"] for p in (cache / "index").glob("*/manifest.json")}


def test_lm_slice_retriever_centres_with_the_corpus_mean(tmp_path, tok):
    """`centre`: the index holds E_p - mu_k and queries search with E_q - mu_q, both projections of the
    corpus mean feature; the centred and plain indexes are apart in the cache, each bound to its setting."""
    lm = tiny_llama(n_layers=4, seed=5)
    LMSliceEncoder.from_lm(lm, tok, b=2, l_max=24).save(tmp_path / "r")
    c = corpus()
    plain = LMSliceRetriever(c, tmp_path, tmp_path / "r", factory="Flat", bf16=False)
    centred = LMSliceRetriever(c, tmp_path, tmp_path / "r", factory="Flat", bf16=False, centre=True)
    enc = centred.encoder
    feats = enc.encode_features(c.texts, "passage")
    mu_q, mu_k = centre_vectors(feats.mean(0), *enc.projections, enc.group_mean)
    np.testing.assert_allclose(centred.mu_q, mu_q, atol=1e-5)
    stored = centred.index.index.reconstruct_n(0, len(c.ids))
    np.testing.assert_allclose(stored, enc.encode_passages(c.texts) - mu_k, atol=1e-5)
    e_q = enc.encode_queries(PROMPTS)
    scores = (e_q - mu_q) @ stored.T
    assert [r[0] for r in centred.search(PROMPTS, 1)] == [c.ids[i] for i in scores.argmax(1)]
    bindings = index_bindings(tmp_path)
    kinds = sorted(b["kind"] for b in bindings.values())
    assert kinds == ["lm-slice", "lm-slice", "lm-slice-centre-features"]
    assert sum("centre" in b for b in bindings.values()) == 1 and plain.mu_q is None


def test_imprag_system_pooling_and_centre_options(tmp_path, tok, monkeypatch):
    """The registered system: `pooling=mean` and `centre=true` build their own, differently bound indexes;
    the predictions' retrieval follows the centred scores."""
    from imprag_bench.harness import lm as hlm
    from imprag_bench.harness.registry import SYSTEMS
    from imprag_bench.harness.system import RunContext

    model = tiny_llama(n_layers=4, seed=2)
    monkeypatch.setattr(hlm, "load_lm", lambda name, dtype=None, device="cpu": (model, tok))
    c = corpus()
    exs = [Example(f"e{i}", "nq", p, "x", ["x"]) for i, p in enumerate(PROMPTS)]
    runs = {}
    for opts in ({}, {"pooling": "mean"}, {"pooling": "mean", "centre": True}):
        ctx = RunContext(options={"model": "tiny/model", "k": 2, "l_max": 24, "max_new_tokens": 1, "bf16": False,
                                  **opts}, cache_dir=tmp_path, demos={})
        system = SYSTEMS.get("imprag")(ctx.options)
        system.prepare(c, ctx)
        runs[json.dumps(opts)] = (system, system.predict(exs))
    bindings = index_bindings(tmp_path)
    assert sorted(b["pooling"] for b in bindings.values() if b["kind"] == "imprag-key") == [
        "k_proj pre-RoPE, last token", "k_proj pre-RoPE, mean of the tokens", "k_proj pre-RoPE, mean of the tokens"]
    assert sum(b["kind"] == "imprag-key-centre-features" for b in bindings.values()) == 1
    system, preds = runs[json.dumps({"pooling": "mean", "centre": True})]
    m = system.model
    e_q = m.embed_queries([lm_input(e) for e in exs], k=2) - system.mu_q
    stored = system.index.index.reconstruct_n(0, len(c.ids))
    want = [[c.ids[j] for j in np.argsort(-(row @ stored.T), kind="stable")[:2]] for row in e_q]
    got = [p.retrieved for p in preds]
    assert [g[0] for g in got] == [w[0] for w in want]


def test_paper_recipes_keep_last_token_pooling():
    from imprag_bench.harness.registry import TRAINERS
    from imprag_bench.harness.training.config import BUDGETS

    for name in ("imprag", "ra-dit-llama"):
        trainer = TRAINERS.get(name)
        for budget in BUDGETS:
            cfg = trainer.config(budget, [], None, "paper")
            assert cfg.pooling == "last", (name, budget)


def test_pooling_preset_runs_end_to_end_on_a_tiny_model(tmp_path):
    """Through the real command: RA-DIT-Llama trained with `pooling=mean` (named `mean-pooling` in its
    additions), its checkpoint evaluated again centred (checkpoint_of), beside the untrained reference."""
    import pandas as pd

    from tests.tiny import run_tiny_reproduce

    out = run_tiny_reproduce(tmp_path, "pooling", ["ra-dit-llama-mean-centre"],
                             ["b=1", "steps=2", "retriever_steps=2"],
                             ["n=3", "tasks=[nq]", f"cache_dir={tmp_path / 'c'}"])
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["system"]) == {"untrained-last", "ra-dit-llama-mean", "ra-dit-llama-mean-centre"}
    systems = json.loads((out / "manifest.json").read_text())["systems"]
    assert "mean-pooling" in systems["ra-dit-llama-mean"]["additions"]
    spec = systems["ra-dit-llama-mean-centre"]["eval_spec"]
    assert spec["centre"] is True and spec["checkpoint"] == systems["ra-dit-llama-mean"]["checkpoint"]
    assert not (out / "train" / "ra-dit-llama-mean-centre").exists()  # nothing trained twice
    rj = out / "train" / "ra-dit-llama-mean" / "retriever" / "checkpoint" / "retriever.json"
    assert json.loads(rj.read_text())["pooling_mode"] == "mean"
    bindings = [json.loads(p.read_text())["binding"] for p in (tmp_path / "c" / "index").glob("*/manifest.json")]
    slice_bindings = [b for b in bindings if b["kind"] == "lm-slice"]
    assert len(slice_bindings) == 2 and sum("centre" in b for b in slice_bindings) == 1
