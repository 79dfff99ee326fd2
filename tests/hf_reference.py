"""References for ImpRAG's layer-group reading, decoding and retrieval embeddings, built apart from
imprag_bench.imprag (issue 12, "independent references"): only Hugging Face's own modules and forward are used.

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

The embedding references take HF's hidden states at layer b's input and apply that layer's own input_layernorm
and k_proj (passages) or q_proj averaged per KV group (queries).
"""
from __future__ import annotations

import numpy as np
import torch

# passages the embedding and call-count checks index (one longer than their l_max, one shaped like a prompt)
DOCS = ["Paris is the capital of France.", "Hamlet was written by Shakespeare.", "Rome.",
        "The quick brown fox jumps over the lazy dog, again and again and again and again.", "Q: x A:"]

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


@torch.no_grad()
def reference_e_p(model, tok, text: str, b: int, l_max: int, pooling: str = "last") -> np.ndarray:
    """HF forward of the passage alone (positions 0..) -> hidden_states[b] (layer b's input) -> layer b's
    input_layernorm -> k_proj, at the last token (or, `pooling` "mean", every token's key, then their mean)."""
    ids = torch.tensor([plain_ids(tok, text)[:l_max]])
    h = model(input_ids=ids, output_hidden_states=True).hidden_states[b][0]
    layer = model.model.layers[b]
    k = layer.self_attn.k_proj(layer.input_layernorm(h))
    return (k[-1] if pooling == "last" else k.mean(0)).numpy()


@torch.no_grad()
def reference_e_q(model, tok, prompt: str, b: int, offset: int, pooling: str = "last") -> np.ndarray:
    """HF forward of the prompt at positions offset.. -> hidden_states[b] -> layer b's input_layernorm ->
    q_proj -> mean of the query heads in each KV group, at the last token (or, `pooling` "mean", the mean of
    every token's)."""
    ids = torch.tensor([plain_ids(tok, prompt)])
    pos = torch.arange(ids.shape[1])[None] + offset
    h = model(input_ids=ids, position_ids=pos, output_hidden_states=True).hidden_states[b][0]
    layer, cfg = model.model.layers[b], model.config
    q = layer.self_attn.q_proj(layer.input_layernorm(h))
    n_kv, d = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    q = q.view(q.shape[0], n_kv, cfg.num_attention_heads // n_kv, d).mean(2).reshape(q.shape[0], -1)
    return (q[-1] if pooling == "last" else q.mean(0)).numpy()
