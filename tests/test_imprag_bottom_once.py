"""ImpRAG's "bottom layers run once", counted with forward hooks on the Hugging Face modules, not with the
model's own counter (issue 12, "independent references").

LayerRunner calls a decoder layer's sub-modules (input_layernorm, q/k/v/o_proj, mlp) rather than the
`LlamaDecoderLayer` module itself, so the hooks sit on those sub-modules: a token cannot pass a layer without
its q_proj (attention queries), o_proj and mlp. The counter is first checked on a plain HF forward.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.hf_reference import DOCS, plain_ids, reader_passage_ids, reference_e_q, stop_set
from tests.tiny import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

N_LAYERS = 5
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
