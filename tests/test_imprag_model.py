"""ImpRAGModel: retrieval embeddings, layer groups, two-stage generation, the registered system."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from imprag_bench.harness.index import build_index
from imprag_bench.imprag.generate import stop_token_ids
from imprag_bench.imprag.layers import positions_from_mask
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel, default_layer_groups, pad
from tests.tiny import tiny_llama

PROMPTS = ["Q: who wrote Hamlet? A:", "Q: x A:", "Q: what is the capital of France and why? A:", "hi"]
DOCS = ["Paris is the capital of France.", "Hamlet was written by Shakespeare.", "Rome.",
        "The quick brown fox jumps over the lazy dog, again and again and again and again.",
        "Q: x A:", "Bananas are yellow.", "Lorem ipsum dolor sit amet.", "Water boils at 100 C."]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_llama(n_layers=4)


def capture(module, store):
    return module.register_forward_hook(lambda mod, inp, out: store.append(out.detach()))


def test_default_layer_groups():
    assert default_layer_groups(28) == (7, 19)
    assert default_layer_groups(32) == (7, 23)
    assert default_layer_groups(30) == (8, 20)  # SmolLM2-135M
    assert default_layer_groups(4) == (0, 2)
    assert ImpRAGConfig(read_top_layers=True).layer_groups(30) == (8, 29)
    with pytest.raises(ValueError):
        ImpRAGConfig(b=3, t=2).layer_groups(4)


def test_passage_embeddings_equal_hooked_k_proj(tok, model):
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=2, t=3, l_max=20))
    got = im.embed_passages(DOCS, batch_size=3)  # mixed lengths: padding inside batches
    assert got.shape == (len(DOCS), 2 * 16)
    for i, doc in enumerate(DOCS):
        ids = torch.tensor([im.token_ids([doc])[0][:20]])
        store = []
        h = capture(model.model.layers[2].self_attn.k_proj, store)
        with torch.no_grad():
            model(input_ids=ids)
        h.remove()
        np.testing.assert_allclose(got[i], store[0][0, -1].numpy(), atol=1e-5, rtol=1e-5)


def test_query_embeddings_equal_hooked_q_proj(tok, model):
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=20, k=3))
    got = im.embed_queries(PROMPTS)
    ids, mask = im.prompt_batch(PROMPTS)
    store = []
    h = capture(model.model.layers[1].self_attn.q_proj, store)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask.long(), position_ids=positions_from_mask(mask, 3 * 20))
    h.remove()
    q = store[0][:, -1].view(len(PROMPTS), 2, 2, 16).mean(2).reshape(len(PROMPTS), -1)  # 4 q heads, 2 groups
    np.testing.assert_allclose(got, q.numpy(), atol=1e-5, rtol=1e-5)


def test_retrieval_index_matches_brute_force_and_generate(tok, model, tmp_path):
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=24, k=3))
    ids = [f"p{i}" for i in range(len(DOCS))]
    index = build_index(tmp_path / "idx", ids, lambda s, e: im.embed_passages(DOCS[s:e]), {"kind": "test"})
    e_p, e_q = im.embed_passages(DOCS), im.embed_queries(PROMPTS)
    brute = im.score(torch.from_numpy(e_q), torch.from_numpy(e_p)).numpy()
    _, ranked = index.search(e_q, 3)
    for i, row in enumerate(ranked):
        assert row == [ids[j] for j in np.argsort(-brute[i])[:3]]
    texts = {pid: doc for pid, doc in zip(ids, DOCS)}
    out = im.generate(PROMPTS, lambda e, k: index.search(e, k)[1], lambda r: [texts[x] for x in r], k=3,
                      max_new_tokens=2)
    assert out.retrieved == ranked  # generate's E_q (inside the one forward pass) == embed_queries


def test_constructed_passage_matches_query(tok):
    """Give layer b's k_proj the group-averaged rows of q_proj: then a passage with the prompt's exact tokens
    has E_p == E_q, although the prompt runs at positions k*l_max.. and the passage at 0.. (RoPE is relative
    and there is nothing before either in the bottom layers), which checks pooling, positions and grouping."""
    model = tiny_llama(n_layers=4, seed=1)
    attn = model.model.layers[1].self_attn
    with torch.no_grad():
        attn.k_proj.weight.copy_(attn.q_proj.weight.view(2, 2, 16, 64).mean(1).reshape(32, 64))
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=64, k=2))
    e_p, e_q = im.embed_passages(DOCS), im.embed_queries(["Q: x A:"])
    np.testing.assert_allclose(e_q[0], e_p[DOCS.index("Q: x A:")], atol=1e-4, rtol=1e-4)


def test_bottom_layers_run_once_per_example(tok, model):
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=24, k=2))
    e_p = torch.from_numpy(im.embed_passages(DOCS))
    calls = []

    def retrieve(e_q, k):
        calls.append(e_q.shape)
        top = im.score(torch.from_numpy(e_q), e_p).topk(k).indices
        return [[str(j) for j in row] for row in top.tolist()]
    im.bottom_prompt_passes = 0
    out = im.generate(PROMPTS, retrieve, lambda r: [DOCS[int(x)] for x in r], max_new_tokens=4, batch_size=3)
    assert im.bottom_prompt_passes == len(PROMPTS)
    assert sum(c[0] for c in calls) == len(PROMPTS) and all(c[1] == im.dim for c in calls)
    assert all(len(r) == 2 for r in out.retrieved)
    assert set(out.timings) == {"bottom", "search", "passage_encoding", "reading", "decoding"}


def test_greedy_without_passages_equals_hf_generate(tok, model):
    im = ImpRAGModel(model, tok, ImpRAGConfig(l_max=24))
    out = im.generate(PROMPTS, max_new_tokens=8, batch_size=4)
    ids, mask = im.prompt_batch(PROMPTS)
    stop = sorted(stop_token_ids(tok))
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask.long(), max_new_tokens=8, do_sample=False,
                             eos_token_id=stop, pad_token_id=tok.pad_token_id)
    order = sorted(range(len(PROMPTS)), key=lambda i: len(PROMPTS[i]))
    assert order != list(range(len(PROMPTS)))  # generate reorders batches internally; outputs come back aligned
    for i in range(len(PROMPTS)):
        want = ref[i, ids.shape[1]:].tolist()
        cut = next((j + 1 for j, t in enumerate(want) if t in stop), len(want))
        assert out.tokens[i] == want[:cut]


@pytest.mark.parametrize("mode", ["concat", "independent"])
def test_cached_decoding_equals_recomputation_with_passages(tok, model, mode):
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=32, passage_encoding=mode))
    passages = [DOCS[:2], DOCS[2:4], DOCS[4:6], DOCS[6:8]]
    out = im.generate(PROMPTS, passages=passages, max_new_tokens=6, batch_size=4)
    stop = stop_token_ids(tok)
    for i, p in enumerate(PROMPTS):
        seq = im.token_ids([p])[0]
        for t in out.tokens[i]:
            with torch.no_grad():
                logits = im.forward_logits(torch.tensor([seq]), passages=[passages[i]])
            assert logits[0, -1].argmax().item() == t
            seq = seq + [t]
        assert len(out.tokens[i]) == 6 or out.tokens[i][-1] in stop


def test_target_loglik_matches_hf(tok, model):
    im = ImpRAGModel(model, tok, ImpRAGConfig(l_max=24))
    got = im.target_loglik(["Q: a A:", "Q: longer question A:"], [" Paris", " no"])
    for j, (p, t) in enumerate([("Q: a A:", " Paris"), ("Q: longer question A:", " no")]):
        pi, ti = im.token_ids([p])[0], im.token_ids([t])[0]
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([pi + ti])).logits[0], -1)
        want = sum(lp[len(pi) - 1 + n, tt] for n, tt in enumerate(ti))
        assert abs(got[j].item() - want.item()) < 1e-4
    assert got.requires_grad


def test_pad_helper():
    ids, mask = pad([[1, 2], [3]], 0, "left")
    assert ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[True, True], [False, True]]


def test_registered_system_end_to_end(tok, model, tmp_path, monkeypatch):
    from imprag_bench.harness import lm as hlm
    from imprag_bench.harness.corpus import Corpus
    from imprag_bench.harness.records import Example, Passage
    from imprag_bench.harness.registry import SYSTEMS
    from imprag_bench.harness.system import RunContext

    monkeypatch.setattr(hlm, "load_lm", lambda name, dtype=None, device="cpu": (model, tok))
    corpus = Corpus("tiny", [Passage(f"d{i}", f"T{i}", doc) for i, doc in enumerate(DOCS)])
    exs = [Example(f"e{i}", "nq", p, "x", ["x"]) for i, p in enumerate(PROMPTS)]
    ctx = RunContext(options={"model": "tiny/model", "k": 2, "l_max": 32, "max_new_tokens": 3},
                     cache_dir=tmp_path, demos={"nq": exs[:1]})
    system = SYSTEMS.get("imprag")(ctx.options)
    system.prepare(corpus, ctx)
    preds = system.predict(exs)
    assert [p.id for p in preds] == [e.id for e in exs]
    assert all(len(p.retrieved) == 2 and p.query is None for p in preds)
    manifest = next((tmp_path / "index").glob("imprag-*")) / "manifest.json"
    binding = __import__("json").loads(manifest.read_text())["binding"]
    assert binding["kind"] == "imprag-key" and binding["b"] == system.model.b and binding["l_max"] == 32
    again = SYSTEMS.get("imprag")(ctx.options)
    again.prepare(corpus, ctx)  # loads the cached index
    assert [p.retrieved for p in again.predict(exs)] == [p.retrieved for p in preds]
