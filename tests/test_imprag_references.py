"""ImpRAG's layer-group reading, greedy decoding and retrieval embeddings against the Hugging Face references
of tests/hf_reference.py (two reading references: per-layer masks over [passages; prompt], and passage KV
injected into a DynamicCache), over Llama, Qwen2, Mistral and MHA/GQA/MQA head layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
from tests.hf_reference import (DOCS, plain_ids, reader_passage_ids, reference_e_p, reference_e_q,
                                reference_greedy, reference_logits, reference_logits_injected_kv)
from tests.tiny import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["Q: who wrote it? A:", "Q: x A:", "a longer prompt about the capital of France, Q: A:"]
PASSAGES = [["Paris is the capital of France.", "Rome is in Italy and old."],
            ["Short one.", "Another passage, longer than l_max = 40 bytes by quite a lot of bytes here."],
            ["Only one passage here."]]
L_MAX = 40
N_LAYERS = 5


# ---- reading and decoding -----------------------------------------------------------------------------
BT = [(0, 1), (1, 3), (2, 2), (1, N_LAYERS - 1), (0, N_LAYERS - 1), (4, 4)]


CASES = [("llama", bt) for bt in BT] + [(arch, bt) for arch in ("qwen2", "mistral", "llama-mha", "llama-mqa")
                                        for bt in [(1, 3), (2, 2)]]


def make_model(arch: str, seed: int):
    """tiny_llama by name; "llama-mha" has 4 KV heads for 4 query heads (no grouping), "llama-mqa" one."""
    kv = {"llama-mha": 4, "llama-mqa": 1}.get(arch, 2)
    return tiny_llama(n_layers=N_LAYERS, arch=arch.split("-")[0], kv_heads=kv, seed=seed)


@pytest.mark.parametrize("mode", ["concat", "independent"])
@pytest.mark.parametrize("arch,bt", CASES)
def test_reading_equals_hf_references(tok, arch, bt, mode):
    """forward_logits on a batch (left-padded prompts, right-padded passages, 1 or 2 passages per example, one
    passage cut at l_max) == both references per example (HF layers with 4-D masks; HF layers with injected
    DynamicCache KV), at every prompt position. (b, t) covers b = 0, b = t, t = N-1, b > 0 with t < N-1,
    and b = t = N-1."""
    model = make_model(arch, seed=3)
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=bt[0], t=bt[1], l_max=L_MAX, passage_encoding=mode))
    ids, mask = im.prompt_batch(PROMPTS)
    assert not mask.all()
    with torch.no_grad():
        got = im.forward_logits(ids, mask, passages=PASSAGES)
    k_max = max(im.cfg.k, *(len(p) for p in PASSAGES))  # the prompt starts at k*l_max, as at inference
    assert any(len(plain_ids(tok, p)) > L_MAX for ps in PASSAGES for p in ps)  # one passage is cut
    for i, (prompt, passages) in enumerate(zip(PROMPTS, PASSAGES)):
        p_ids = [reader_passage_ids(tok, p, L_MAX, im.cfg.passage_sep) for p in passages]
        args = (model, p_ids, plain_ids(tok, prompt), *bt, mode, k_max * L_MAX)
        torch.testing.assert_close(got[i][mask[i]], reference_logits(*args), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[i][mask[i]], reference_logits_injected_kv(*args), atol=1e-5, rtol=1e-5)


def test_reference_is_sensitive(tok):
    """The two references agree, and the mask reference distinguishes what the tests rely on: which layers
    read, the encoding mode, the prompt offset."""
    model = tiny_llama(n_layers=N_LAYERS, seed=3)
    p_ids = [reader_passage_ids(tok, p, L_MAX, "\n\n") for p in PASSAGES[0]]
    q = plain_ids(tok, PROMPTS[0])
    base = reference_logits(model, p_ids, q, 1, 3, "concat", 2 * L_MAX)
    torch.testing.assert_close(reference_logits_injected_kv(model, p_ids, q, 1, 3, "concat", 2 * L_MAX), base,
                               atol=1e-5, rtol=1e-5)
    for other in [reference_logits(model, p_ids, q, 1, 2, "concat", 2 * L_MAX),
                  reference_logits(model, p_ids, q, 2, 3, "concat", 2 * L_MAX),
                  reference_logits(model, p_ids, q, 1, 3, "independent", 2 * L_MAX),
                  reference_logits(model, p_ids, q, 1, 3, "concat", 0)]:
        assert (base - other).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["concat", "independent"])
@pytest.mark.parametrize("bt", [(1, 3), (2, 2), (0, N_LAYERS - 1)])
def test_greedy_with_passages_equals_recomputed_reference(tok, mode, bt):
    """generate(passages=...) (cached decoding, batched) == greedy over the reference recomputed per token."""
    model = tiny_llama(n_layers=N_LAYERS, seed=5)
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=bt[0], t=bt[1], l_max=L_MAX, passage_encoding=mode))
    out = im.generate(PROMPTS, passages=PASSAGES, max_new_tokens=5, batch_size=3)
    k_max = max(im.cfg.k, *(len(p) for p in PASSAGES))  # the prompt starts at k*l_max, as at inference
    for i, (prompt, passages) in enumerate(zip(PROMPTS, PASSAGES)):
        p_ids = [reader_passage_ids(tok, p, L_MAX, im.cfg.passage_sep) for p in passages]
        want = reference_greedy(model, tok, p_ids, plain_ids(tok, prompt), *bt, mode, k_max * L_MAX, 5)
        assert out.tokens[i] == want


def test_greedy_with_retrieval_equals_recomputed_reference(tok):
    """The retrieval path: the ranking == the reference E_q . E_p ranking; the retrieved passages are read at
    offset k*l_max (k requested) and the answer tokens == the recomputed reference."""
    model = tiny_llama(n_layers=N_LAYERS, seed=5)
    docs = [p for ps in PASSAGES for p in ps]
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=2, t=3, l_max=L_MAX, k=3))
    e_p = torch.from_numpy(im.embed_passages(docs))

    def retrieve(e_q, k):
        return [[str(j) for j in row] for row in (torch.from_numpy(e_q) @ e_p.T).topk(k).indices.tolist()]
    out = im.generate(PROMPTS, retrieve, lambda r: [docs[int(x)] for x in r], max_new_tokens=4)
    ref_p = np.stack([reference_e_p(model, tok, d, 2, L_MAX) for d in docs])
    for i, prompt in enumerate(PROMPTS):
        ref_scores = ref_p @ reference_e_q(model, tok, prompt, 2, 3 * L_MAX)
        assert out.retrieved[i] == [str(j) for j in np.argsort(-ref_scores)[:3]]
        p_ids = [reader_passage_ids(tok, docs[int(x)], L_MAX, "\n\n") for x in out.retrieved[i]]
        assert len(p_ids) == 3
        assert out.tokens[i] == reference_greedy(model, tok, p_ids, plain_ids(tok, prompt), 2, 3, "concat",
                                                 3 * L_MAX, 4)


def test_reading_does_not_depend_on_batch_mates(tok):
    """Example 3 has one passage, its batch mates two: its prompt starts at k*l_max either way, as at inference
    with k retrieved passages (before, the offset was the batch's most passages * l_max)."""
    model = tiny_llama(n_layers=N_LAYERS, seed=5)
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=3, l_max=L_MAX))
    batch = im.generate(PROMPTS, passages=PASSAGES, max_new_tokens=8, batch_size=3).tokens[2]
    alone = im.generate(PROMPTS[2:], passages=PASSAGES[2:], max_new_tokens=8).tokens[0]
    assert batch == alone


# ---- retrieval embeddings from HF's hidden states -------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2", "llama-mha", "llama-mqa"])
@pytest.mark.parametrize("b", [0, 1, 2, 4])
def test_embeddings_equal_hf_hidden_states(tok, arch, b):
    """embed_passages / embed_queries (batched, padded) == the reference at the implementation's offset k*l_max.

    Pre-RoPE q/k at layer b depend on positions only through the attention of layers 0..b-1, where RoPE
    scores depend on position differences only and the prompt has nothing before it: so E_q at offset
    k*l_max equals E_q at offset 0 up to rounding (checked on the reference, and with k=0 on the
    implementation). That is what lets E_q (prompt at k*l_max..) be compared with E_p (passage at 0..)."""
    model = make_model(arch, seed=7)
    l_max, k = 24, 3
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=b, t=max(b, 3), l_max=l_max, k=k))
    e_p = im.embed_passages(DOCS, batch_size=2)
    for i, doc in enumerate(DOCS):
        np.testing.assert_allclose(e_p[i], reference_e_p(model, tok, doc, b, l_max), atol=1e-5, rtol=1e-5)
    e_q = im.embed_queries(PROMPTS, batch_size=2)
    for i, prompt in enumerate(PROMPTS):
        want = reference_e_q(model, tok, prompt, b, k * l_max)
        np.testing.assert_allclose(e_q[i], want, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(reference_e_q(model, tok, prompt, b, 0), want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(im.embed_queries(PROMPTS, k=0), e_q, atol=1e-4, rtol=1e-4)
