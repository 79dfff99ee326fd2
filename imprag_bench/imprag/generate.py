"""Two-stage ImpRAG inference in one forward pass per batch of prompts (paper section 3).

1. bottom: the prompt tokens run layers 0..b-1 once (positions from k*l_max); layer b projects q/k/v and
   the last token's group-averaged q is E_q.
2. search: `retrieve_fn(E_q [B, d] float32, k) -> list[list[str]]` passage ids per example, and
   `passage_text_fn(ids: list[str]) -> list[str]` their texts (e.g. a FAISS index and the corpus).
3. passage encoding: the retrieved passages run layers 0..t; their KV at layers b..t is the reading prefix.
4. reading: layer b finishes from its already computed q/k/v (nothing below is recomputed), layers b..t read
   [passage KV; own causal context] in one softmax, the top layers only their own context.
5. decoding: greedy, with a KV cache of the sequence's own keys/values and the passage KV reused (no
   re-retrieval); a row stops at EOS or at a token containing a newline; the batch stops when all rows have.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from imprag_bench.harness.lm import cut_answer
from imprag_bench.imprag.layers import KVCache, positions_from_mask, self_attention_mask

STAGES = ("bottom", "search", "passage_encoding", "reading", "decoding")


@dataclass
class GenerationOutput:
    """Answers (cut at the first newline), retrieved passage ids, generated token ids (up to and including
    the stop token) and seconds spent per stage, summed over batches."""

    texts: list[str]
    retrieved: list[list[str]]
    tokens: list[list[int]]
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


def stop_token_ids(tok) -> frozenset[int]:
    """EOS plus every token whose text holds a newline (byte-level 'Ċ', sentencepiece '<0x0A>'): the answer
    ends at the first newline, so nothing after such a token can change it."""
    names = tok.convert_ids_to_tokens(list(range(len(tok))))
    ids = {i for i, t in enumerate(names) if t and ("\n" in t or "Ċ" in t or t == "<0x0A>")}
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return frozenset(ids)


@torch.no_grad()
def generate(m, prompts: list[str], retrieve_fn=None, passage_text_fn=None, k: int = 10,
             max_new_tokens: int = 16, batch_size: int = 8, passages: list[list[str]] | None = None
             ) -> GenerationOutput:
    """Greedy ImpRAG answers for `prompts` (length-sorted into batches). Without `retrieve_fn` (and without
    given `passages`) this is the plain LM. `passages` (texts per prompt) skips retrieval: reading only."""
    if retrieve_fn is not None and passage_text_fn is None and passages is None:
        raise ValueError("retrieve_fn needs passage_text_fn (passage ids -> texts)")
    out = GenerationOutput([""] * len(prompts), [[] for _ in prompts], [[] for _ in prompts])
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        given = [passages[i] for i in idx] if passages is not None else None
        texts, ids, toks = _generate_batch(m, [prompts[i] for i in idx], retrieve_fn, passage_text_fn, k,
                                           max_new_tokens, given, out.timings)
        for j, i in enumerate(idx):
            out.texts[i], out.retrieved[i], out.tokens[i] = texts[j], ids[j], toks[j]
    return out


def _generate_batch(m, prompts, retrieve_fn, passage_text_fn, k, max_new_tokens, given, timings):
    r, clock = m.runner, time.perf_counter
    t0 = clock()
    ids, mask = m.prompt_batch(prompts)
    n = ids.shape[0]
    retrieving = given is None and retrieve_fn is not None and k > 0
    n_given = max((len(p) for p in given), default=0) if given else 0
    n_p = k if retrieving else max(k, n_given) if n_given else 0  # never depends on the batch mates (<= k each)
    offset = n_p * m.cfg.l_max
    cache = KVCache()
    h, cos, sin, smask = m.bottom(ids, mask, offset, cache)
    q, kk, v = r.project(m.b, h)
    e_q = m.pool_query_states(q, mask)
    t1 = clock()
    if retrieving:
        ranked = [list(x) for x in retrieve_fn(e_q.float().cpu().numpy(), k)]
        texts = [list(passage_text_fn(x)) if x else [] for x in ranked]
    else:
        ranked, texts = [[] for _ in range(n)], given or [[] for _ in range(n)]
    t2 = clock()
    prefix = m.encode_passages_kv(texts)
    if prefix is not None:
        prefix.offset = offset
    t3 = clock()
    rmask = r.read_mask(prefix, smask) if prefix is not None else smask
    h = r.finish(m.b, h, q, kk, v, cos, sin, rmask, prefix, cache)
    h = r.run(h, range(m.b + 1, m.n_layers), cos, sin, smask, prefix, cache)
    nxt = r.logits(h[:, -1]).argmax(-1)
    t4 = clock()

    stop = m.stop_ids
    pos = positions_from_mask(mask, offset)[:, -1:]
    gen: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    for step in range(max_new_tokens):
        for i, tok_id in enumerate(nxt.tolist()):
            if not done[i]:
                gen[i].append(tok_id)
                done[i] = tok_id in stop
        if all(done) or step == max_new_tokens - 1:
            break
        pos = pos + 1
        cache.mask = torch.cat([cache.mask, torch.ones((n, 1), dtype=torch.bool, device=mask.device)], dim=1)
        h = r.embed(nxt[:, None])
        cos, sin = r.rope(h, pos)
        h = r.run(h, range(m.n_layers), cos, sin, self_attention_mask(cache.mask, 1), prefix, cache)
        nxt = r.logits(h[:, -1]).argmax(-1)
    t5 = clock()
    for name, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
        timings[name] += dt
    answers = [cut_answer(m.tok.decode(g, skip_special_tokens=True)) for g in gen]
    return answers, ranked, gen
