"""ImpRAG's layer-group reading, decoding, "bottom layers once" and retrieval embeddings, each checked against
a reference built apart from imprag_bench.imprag (issue 12, "independent references").

The reading reference runs Hugging Face's own decoder layers (`model.model.layers[i](...)`, eager attention,
HF's `rotary_emb`, `norm`, `lm_head`) over the one sequence [passages; prompt] with a 4-D additive mask per
layer:
- passages -> passages: causal over the concatenation ("concat"), or causal inside each passage only
  ("independent"), in every layer;
- prompt -> passages: allowed in layers b..t only, never in 0..b-1 or t+1..N-1;
- prompt -> prompt: causal; passages never see the prompt.
Passage positions run 0.. over the concatenation ("concat") or restart at 0 in each passage ("independent");
the prompt's positions start at k*l_max (k: the most passages of an example in the batch, or the retrieval
k). Because passage tokens never attend to the prompt, their layer-i keys/values in this sequence are exactly
the passage KV computed alone, so this is the same computation as reading passage KV as a prefix in layers
b..t -- but with none of LayerRunner's code (its RoPE, SDPA call, masks, prefix/caches). A second reference
injects the passage KV from HF's own forward (`use_cache=True`) into a transformers DynamicCache for layers
b..t only and runs the prompt alone through HF's layers with it. Passage tokens for the reader are rebuilt
here from the documented rule: text tokens cut to l_max - len(sep), then `passage_sep`.

"Bottom layers once" is counted with forward hooks on the HF modules, not with the model's own counter.
LayerRunner calls a decoder layer's sub-modules (input_layernorm, q/k/v/o_proj, mlp) rather than the
`LlamaDecoderLayer` module itself, so the hooks sit on those sub-modules: a token cannot pass a layer without
its q_proj (attention queries), o_proj and mlp. The counter is first checked on a plain HF forward.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
from tests.tiny import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["Q: who wrote it? A:", "Q: x A:", "a longer prompt about the capital of France, Q: A:"]
PASSAGES = [["Paris is the capital of France.", "Rome is in Italy and old."],
            ["Short one.", "Another passage, longer than l_max = 40 bytes by quite a lot of bytes here."],
            ["Only one passage here."]]
L_MAX = 40
N_LAYERS = 5


# ---- the reference ------------------------------------------------------------------------------------
def plain_ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def reader_passage_ids(tok, text: str, l_max: int, sep: str) -> list[int]:
    """The passage as the reader sees it, by the rule in ImpRAGConfig's docs: cut to l_max with the separator
    inside that budget."""
    s = plain_ids(tok, sep) if sep else []
    return (plain_ids(tok, text)[: max(1, l_max - len(s))] + s)[:l_max]


@torch.no_grad()
def reference_logits(model, passages: list[list[int]], prompt: list[int], b: int, t: int, mode: str,
                     offset: int) -> torch.Tensor:
    """HF decoder layers over [passages; prompt] with a per-layer 4-D mask -> logits [len(prompt), V]."""
    model.set_attn_implementation("eager")  # plain matmul + additive mask + softmax inside HF's attention
    seq = [x for p in passages for x in p]
    n_p, n_q = len(seq), len(prompt)
    if mode == "concat":
        p_pos, seg = list(range(n_p)), [0] * n_p
    else:
        p_pos = [j for p in passages for j in range(len(p))]
        seg = [i for i, p in enumerate(passages) for _ in p]
    ids = torch.tensor([seq + prompt])
    pos = torch.tensor([p_pos + [offset + j for j in range(n_q)]])
    n = n_p + n_q
    qi, kj = torch.arange(n)[:, None], torch.arange(n)[None, :]
    is_p = torch.arange(n) < n_p
    segment = torch.tensor(seg + [-1] * n_q)
    causal = kj <= qi
    p_to_p = is_p[:, None] & is_p[None, :] & causal & (segment[:, None] == segment[None, :])
    q_to_q = ~is_p[:, None] & ~is_p[None, :] & causal
    q_to_p = ~is_p[:, None] & is_p[None, :]
    h = model.model.embed_tokens(ids)
    rope = model.model.rotary_emb(h, pos)
    neg = torch.finfo(h.dtype).min
    for i, layer in enumerate(model.model.layers):
        allowed = p_to_p | q_to_q | (q_to_p if b <= i <= t else torch.zeros_like(q_to_p))
        mask = torch.zeros(n, n).masked_fill(~allowed, neg)[None, None]
        h = layer(h, attention_mask=mask, position_ids=pos, position_embeddings=rope)
    return model.lm_head(model.model.norm(h))[0, n_p:]


@torch.no_grad()
def reference_logits_injected_kv(model, passages: list[list[int]], prompt: list[int], b: int, t: int, mode: str,
                                 offset: int) -> torch.Tensor:
    """The second reference: passage KV from HF's own forward (`use_cache=True`: over the concatenation, or
    over each passage alone for "independent"), put into a transformers DynamicCache for layers b..t only
    (the other layers' cache entries stay empty); then the prompt alone runs HF's decoder layers with that
    cache -> logits [len(prompt), V]. In reading layers the mask is [all passage keys; causal self]."""
    from transformers import DynamicCache

    model.set_attn_implementation("eager")
    chunks = [[x for p in passages for x in p]] if mode == "concat" else passages
    kvs = [model(input_ids=torch.tensor([c]), use_cache=True).past_key_values for c in chunks]
    data = [(torch.cat([c.layers[i].keys for c in kvs], 2), torch.cat([c.layers[i].values for c in kvs], 2))
            if b <= i <= t else (None, None) for i in range(len(model.model.layers))]
    cache = DynamicCache(ddp_cache_data=data)
    n_p, n_q = sum(len(c) for c in chunks), len(prompt)
    ids = torch.tensor([prompt])
    pos = torch.arange(n_q)[None] + offset
    h = model.model.embed_tokens(ids)
    rope = model.model.rotary_emb(h, pos)
    neg = torch.finfo(h.dtype).min
    self_mask = torch.zeros(n_q, n_q).masked_fill(torch.ones(n_q, n_q, dtype=torch.bool).triu(1), neg)
    read_mask = torch.cat([torch.zeros(n_q, n_p), self_mask], 1)
    for i, layer in enumerate(model.model.layers):
        mask = (read_mask if b <= i <= t else self_mask)[None, None]
        h = layer(h, attention_mask=mask, position_ids=pos, position_embeddings=rope, cache=cache, use_cache=True)
    assert all((cache.layers[i].keys.shape[2] == n_p + n_q) == (b <= i <= t) for i in range(len(data)))
    return model.lm_head(model.model.norm(h))[0]


def stop_set(tok) -> set[int]:
    """EOS and every token whose text holds a newline (the answer ends at the first newline)."""
    return {i for i in range(len(tok)) if "\n" in tok.decode([i])} | {tok.eos_token_id}


def reference_greedy(model, tok, passages, prompt, b, t, mode, offset, max_new) -> list[int]:
    """Greedy decoding that recomputes the whole reference forward for every new token (no KV cache)."""
    seq, out, stop = list(prompt), [], stop_set(tok)
    for _ in range(max_new):
        nxt = int(reference_logits(model, passages, seq, b, t, mode, offset)[-1].argmax())
        out.append(nxt)
        if nxt in stop:
            break
        seq.append(nxt)
    return out


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
DOCS = ["Paris is the capital of France.", "Hamlet was written by Shakespeare.", "Rome.",
        "The quick brown fox jumps over the lazy dog, again and again and again and again.", "Q: x A:"]


@torch.no_grad()
def reference_e_p(model, tok, text: str, b: int, l_max: int) -> np.ndarray:
    """HF forward of the passage alone (positions 0..) -> hidden_states[b] (layer b's input) at the last
    token -> layer b's input_layernorm -> k_proj."""
    ids = torch.tensor([plain_ids(tok, text)[:l_max]])
    h = model(input_ids=ids, output_hidden_states=True).hidden_states[b][0, -1]
    layer = model.model.layers[b]
    return layer.self_attn.k_proj(layer.input_layernorm(h)).numpy()


@torch.no_grad()
def reference_e_q(model, tok, prompt: str, b: int, offset: int) -> np.ndarray:
    """HF forward of the prompt at positions offset.. -> hidden_states[b] at the last token -> layer b's
    input_layernorm -> q_proj -> mean of the query heads in each KV group."""
    ids = torch.tensor([plain_ids(tok, prompt)])
    pos = torch.arange(ids.shape[1])[None] + offset
    h = model(input_ids=ids, position_ids=pos, output_hidden_states=True).hidden_states[b][0, -1]
    layer, cfg = model.model.layers[b], model.config
    q = layer.self_attn.q_proj(layer.input_layernorm(h))
    n_kv, d = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    return q.view(n_kv, cfg.num_attention_heads // n_kv, d).mean(1).reshape(-1).numpy()


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


# ---- "bottom layers run once", counted with hooks on the HF modules -----------------------------------
MODULES = ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp")


class CallLog:
    """Forward hooks on each decoder layer's sub-modules (and lm_head): one event (layer, module, leading input
    shape) per call, plus markers the test adds (e.g. when retrieval happens)."""

    def __init__(self, model):
        self.events: list[tuple] = []
        self.handles = []
        for i, layer in enumerate(model.model.layers):
            for name in MODULES:
                self.handles.append(layer.get_submodule(name).register_forward_hook(self._hook(i, name)))
        self.handles.append(model.lm_head.register_forward_hook(self._hook(-1, "lm_head")))

    def _hook(self, i, name):
        def hook(module, args, output):
            self.events.append((i, name, tuple(args[0].shape[:-1]), output.detach()))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def count(self, layer, name, shape, events=None) -> int:
        return sum(1 for e in (self.events if events is None else events)
                   if e[0] == layer and e[1] == name and e[2] == shape)


def test_call_log_counts_hf_forward_once(tok):
    """The counter itself: one HF forward of a [1, 7] input -> each hooked module of each layer once, [1, 7]."""
    model = tiny_llama(n_layers=N_LAYERS)
    log = CallLog(model)
    with torch.no_grad():
        model(input_ids=torch.tensor([list(range(7))]))
    log.remove()
    assert len(log.events) == N_LAYERS * len(MODULES) + 1
    assert all(log.count(i, m, (1, 7)) == 1 for i in range(N_LAYERS) for m in MODULES)


@pytest.mark.parametrize("mode", ["concat", "independent"])
def test_bottom_layers_run_once_by_hooks(tok, tmp_path, monkeypatch, mode):
    """One example through the registered system's predict (retrieval, passage encoding, reading, decoding).

    Expected calls, with Lq the prompt length, P the passage batch shape ([1, sum of passage lengths] for
    concat, [k, longest passage] for independent), D the decoding steps after the first token:
    - prompt [1, Lq]: every layer's q/k/v/o_proj and mlp exactly once -- so layers 0..b-1 see the prompt once,
      and layer b's q/k/v (E_q) are not recomputed after retrieval; lm_head once (the last position);
    - all prompt calls of layers 0..b-1 and layer b's input_layernorm/q/k/v come before retrieval; layer b's
      o_proj/mlp and everything above come after it;
    - passages P: q/k/v of layers 0..t once (layer t only projects its KV), o_proj/mlp of layers 0..t-1 once,
      nothing of layers t+1..N-1; all after retrieval;
    - decoding [1, 1]: every layer exactly D times; lm_head D + 1 times on one position [1] (the first
      token, then each step), its argmaxes being the answer's tokens;
    - nothing else (every call is one of these three shapes);
    - E_q handed to retrieval == the group-averaged output of layer b's hooked q_proj at the prompt's last
      token == the HF hidden-state reference (section 3).
    """
    from imprag_bench.harness import lm as hlm
    from imprag_bench.harness.corpus import Corpus
    from imprag_bench.harness.lm import cut_answer
    from imprag_bench.harness.prompting import lm_input
    from imprag_bench.harness.records import Example, Passage
    from imprag_bench.harness.registry import SYSTEMS
    from imprag_bench.harness.system import RunContext

    b, t, k, l_max, max_new = 2, 3, 2, 32, 4
    model = tiny_llama(n_layers=N_LAYERS, seed=11)
    monkeypatch.setattr(hlm, "load_lm", lambda name, dtype=None, device="cpu": (model, tok))
    corpus = Corpus("tiny", [Passage(f"d{i}", f"T{i}", doc) for i, doc in enumerate(DOCS)])
    ex = Example("e0", "nq", "Q: who wrote Hamlet, the play? A:", "x", ["x"])
    ctx = RunContext(options={"model": "tiny/model", "k": k, "b": b, "t": t, "l_max": l_max,
                              "max_new_tokens": max_new, "passage_encoding": mode}, cache_dir=tmp_path, demos={})
    system = SYSTEMS.get("imprag")(ctx.options)
    system.prepare(corpus, ctx)  # the index build (layers 0..b over the corpus) happens here, before hooks
    assert (system.model.b, system.model.t) == (b, t)
    seen = []
    retrieve = system.retrieve

    def logged_retrieve(e_q, kk):
        seen.append(e_q.copy())
        log.events.append(("retrieve",))
        return retrieve(e_q, kk)
    system.retrieve = logged_retrieve
    log = CallLog(model)
    try:
        pred = system.predict([ex])[0]
    finally:
        log.remove()

    lq = len(plain_ids(tok, lm_input(ex, [])))
    texts = [p.as_text() for p in corpus.get_many(pred.retrieved)]
    p_lens = [len(reader_passage_ids(tok, x, l_max, "\n\n")) for x in texts]
    shape_q, shape_d = (1, lq), (1, 1)
    shape_p = (1, sum(p_lens)) if mode == "concat" else (k, max(p_lens))
    assert len(pred.retrieved) == k and len({shape_q, shape_p, shape_d}) == 3
    cut = log.events.index(("retrieve",))
    before, after = log.events[:cut], log.events[cut + 1:]
    calls = [e for e in log.events if e != ("retrieve",)]
    assert {e[2] for e in calls if e[1] != "lm_head"} == {shape_q, shape_p, shape_d}
    heads = [e for e in calls if e[1] == "lm_head"]  # one per generated token, on the last position only
    assert all(e[2] == (1,) for e in heads)
    generated = [int(e[3].argmax()) for e in heads]
    stops = [j for j, x in enumerate(generated) if x in stop_set(tok)]
    assert stops in ([], [len(generated) - 1]) and (stops or len(generated) == max_new)
    assert pred.text == cut_answer(tok.decode(generated, skip_special_tokens=True))
    n_dec = len(generated) - 1
    assert n_dec >= 1
    for i in range(N_LAYERS):
        for name in MODULES:
            assert log.count(i, name, shape_q) == 1, (i, name)
            assert log.count(i, name, shape_d) == n_dec, (i, name)
            reads_p = i < t or (i == t and name not in ("self_attn.o_proj", "mlp"))
            assert log.count(i, name, shape_p) == int(reads_p), (i, name)
            assert log.count(i, name, shape_p, before) == 0
            early = i < b or (i == b and name not in ("self_attn.o_proj", "mlp"))
            assert log.count(i, name, shape_q, before if early else after) == 1, (i, name)
    q_b = next(e[3] for e in before if e[:3] == (b, "self_attn.q_proj", shape_q))[0, -1]
    cfg = model.config
    n_kv, head_dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    pooled = q_b.view(n_kv, -1, head_dim).mean(1).reshape(-1).numpy()  # the query heads of each KV group
    np.testing.assert_allclose(seen[0][0], pooled, atol=1e-6)
    np.testing.assert_allclose(seen[0][0], reference_e_q(model, tok, lm_input(ex, []), b, k * l_max),
                               atol=1e-5, rtol=1e-5)
