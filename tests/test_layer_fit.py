"""Stage 0b (imprag_bench.imprag.layer_fit): layer b-1 rerun from cached inputs reproduces the model's own retrieval
features, and the fit is full-corpus NCE that changes only the retriever's top weights."""
import torch

from imprag_bench.imprag import losses as L
from imprag_bench.imprag.layer_fit import (
    LayerFitConfig,
    embed_all,
    fit_layer,
    last_features,
    layer_inputs,
    passage_embeddings,
    query_embeddings,
)
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel, pad
from imprag_bench.imprag.testing import byte_tokenizer, tiny_llama

PASSAGES = ["The cat sat on the mat.", "Paris is in France.", "A short one", "Rivers flow to the sea, mostly.",
            "Bees make honey."]
PROMPTS = ["Q: where is Paris?\nA:", "Q: what do bees make?\nA:", "Q: cats?\nA:"]


def model(b=2):
    return ImpRAGModel(tiny_llama(n_layers=4), byte_tokenizer(), ImpRAGConfig(b=b, t=3, l_max=16, k=2))


def cached(m, dtype=torch.float32):
    xp = layer_inputs(m, m.index_tokens(PASSAGES), "right", bf16=False, dtype=dtype, batch_size=2)
    xq = layer_inputs(m, m.token_ids(PROMPTS), "left", offset=2 * 16, bf16=False, dtype=dtype, batch_size=2)
    return xq, xp


def test_cached_layer_inputs_reproduce_the_models_features():
    m = model()
    xq, xp = cached(m)
    with torch.no_grad():
        ids, mask = pad(m.index_tokens(PASSAGES), m.pad_id, "right")
        torch.testing.assert_close(last_features(m, xp), m.passage_features(ids, mask), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(passage_embeddings(m, xp), m.passage_embeddings(ids, mask), atol=1e-5, rtol=1e-5)
        ids, mask = m.prompt_batch(PROMPTS)
        torch.testing.assert_close(query_embeddings(m, xq), m.query_embeddings(ids, mask, 2 * 16),
                                   atol=1e-5, rtol=1e-5)


def test_fit_is_full_corpus_nce_and_trains_only_layer_b_minus_1_and_layer_b_q_k():
    m = model()
    xq, xp = cached(m)
    positives = [[1], [4], [0, 3]]
    with torch.no_grad():
        s = query_embeddings(m, xq) @ passage_embeddings(m, xp).T
    pos = torch.zeros_like(s, dtype=torch.bool)
    for r, p in enumerate(positives):
        pos[r, p] = True
    expected = L.multilabel_nce(s, pos, ~pos, scale=0.25).item()
    before = {k: v.clone() for k, v in m.lm.state_dict().items()}
    cfg = LayerFitConfig(steps=4, lr=1e-2, proj_lr=1e-2, batch_size=3, fresh=0, refresh_every=2, bf16=False)
    logs = fit_layer(m, xq, xp, positives, cfg, scale=0.25)
    assert abs(logs[0]["loss"] - expected) < 1e-4  # step 1: every query, stale keys == fresh keys
    changed = {k for k, v in m.lm.state_dict().items() if not torch.equal(v, before[k])}
    allowed = {k for k in before if k.startswith("model.layers.1.")} | {
        f"model.layers.2.{n}" for n in ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight")}
    assert changed and changed <= allowed and any(k.startswith("model.layers.1.") for k in changed)
    assert logs[-1]["loss"] < logs[0]["loss"]
    # the stale keys the fit ends with are the model's keys: a full recompute gives the same retrieval
    e = embed_all(m, xp, passage_embeddings, bf16=False)
    ids, mask = pad(m.index_tokens(PASSAGES), m.pad_id, "right")
    with torch.no_grad():
        torch.testing.assert_close(e, m.passage_embeddings(ids, mask), atol=1e-5, rtol=1e-5)
