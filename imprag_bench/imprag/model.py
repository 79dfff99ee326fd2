"""ImpRAG on a HF Llama-family causal LM: one set of weights retrieves (bottom layers) and reads (middle).

Layer groups (paper 2.1): bottom 0..b, middle b..t (sharing layer b), top t+1..N-1.
- Passage embedding E_p: the pre-RoPE key (input_layernorm then k_proj) at layer b of the passage's last
  real token, the passage encoded alone with causal attention, positions 0... Pre-RoPE is our choice (the
  paper does not say): it makes the score independent of where the two last tokens sit.
- Query embedding E_q: the pre-RoPE query (q_proj) at layer b of the prompt's last token, the g query heads
  of each GQA group averaged -> [n_kv_heads * head_dim], the same size as E_p. Score: plain dot product.
  (`pooling: mean`, an ablation axis and never the paper's: the mean over the tokens instead of the last;
  harness.pooling.)
- Reading: the k passages (each truncated to l_max tokens, `passage_sep` appended inside that budget) are
  encoded through layers 0..t, concatenated with full causal attention from position 0 ("concat"), or each
  from position 0 alone ("independent"); their RoPE'd KV at layers b..t is a prefix the prompt reads in one
  softmax with its own causal context. The prompt's positions start at k*l_max (paper 2.5), in every layer,
  so E_q is computed with the same positions the reader uses.
Entry points that return numpy run without gradients; the tensor-level methods (`passage_embeddings`,
`query_embeddings`, `encode_passages_kv`, `forward_logits`, `target_loglik`, `score`) keep them for training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from imprag_bench.harness.lm import pad, paper_layer_groups  # noqa: F401  (pad is re-exported)
from imprag_bench.harness.pooling import check as check_pooling, pool_tokens
from imprag_bench.harness.training.engine import run_in
from imprag_bench.harness.training.losses import target_logliks
from imprag_bench.imprag.layers import LayerRunner, PrefixKV, positions_from_mask, self_attention_mask

default_layer_groups = paper_layer_groups  # the paper's (b, t), scaled to other depths


@dataclass
class ImpRAGConfig:
    """ImpRAG hyperparameters. b/t None -> `default_layer_groups`; read_top_layers=True sets t = N-1."""

    b: int | None = None
    t: int | None = None
    k: int = 10
    l_max: int = 128
    passage_encoding: str = "concat"  # or "independent"
    read_top_layers: bool = False
    passage_sep: str = "\n\n"  # appended to each passage the reader sees, as in the explicit readers' context
    pooling: str = "last"  # E_q / E_p from the last token (the paper) or the mean of the tokens (harness.pooling)

    def layer_groups(self, n_layers: int) -> tuple[int, int]:
        """The resolved (b, t), validated."""
        db, dt = default_layer_groups(n_layers)
        b = db if self.b is None else int(self.b)
        t = n_layers - 1 if self.read_top_layers else (dt if self.t is None else int(self.t))
        if not 0 <= b <= t <= n_layers - 1:
            raise ValueError(f"need 0 <= b <= t <= N-1 = {n_layers - 1}, got b={b}, t={t}")
        if self.passage_encoding not in ("concat", "independent"):
            raise ValueError(f"passage_encoding must be 'concat' or 'independent', not {self.passage_encoding!r}")
        check_pooling(self.pooling, "ImpRAGConfig")
        return b, t


def last_index(mask: Tensor) -> Tensor:
    """Index of each row's last real token (works for left or right padding)."""
    return mask.shape[1] - 1 - mask.flip(-1).long().argmax(-1)


class ImpRAGModel(nn.Module):
    """A HF causal LM used as ImpRAG retriever (layers 0..b) and reader (passage KV in layers b..t)."""

    def __init__(self, hf_model, tokenizer, config: ImpRAGConfig | None = None):
        super().__init__()
        self.lm = hf_model
        self.tok = tokenizer
        self.cfg = config or ImpRAGConfig()
        self.runner = LayerRunner(hf_model)
        self.n_layers = self.runner.n_layers
        self.b, self.t = self.cfg.layer_groups(self.n_layers)
        self.pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
        self.bottom_prompt_passes = 0  # examples whose prompt tokens went through layers 0..b-1
        self._stop_ids: frozenset[int] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def stop_ids(self) -> frozenset[int]:
        """Token ids that end an answer: EOS and every token holding a newline (computed once)."""
        if self._stop_ids is None:
            from imprag_bench.imprag.generate import stop_token_ids
            self._stop_ids = stop_token_ids(self.tok)
        return self._stop_ids

    @property
    def dim(self) -> int:
        """Embedding size n_kv_heads * head_dim."""
        return self.runner.n_kv * self.runner.head_dim

    # ---- tokenization -------------------------------------------------------------------------------
    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Plain token ids, no special tokens (as imprag_bench.harness.lm.generate tokenizes prompts)."""
        return [list(x) for x in self.tok(list(texts), add_special_tokens=False)["input_ids"]] if texts else []

    def index_tokens(self, texts: list[str]) -> list[list[int]]:
        """A passage as the index embeds it: its tokens truncated to l_max (never empty)."""
        return [s[: self.cfg.l_max] or [self.pad_id] for s in self.token_ids(texts)]

    def reading_tokens(self, texts: list[str]) -> list[list[int]]:
        """A passage as the reader sees it: tokens truncated so that with `passage_sep` it fits l_max."""
        sep = self.token_ids([self.cfg.passage_sep])[0] if self.cfg.passage_sep else []
        room = max(1, self.cfg.l_max - len(sep))
        return [(s[:room] + sep)[: self.cfg.l_max] for s in self.token_ids(texts)]

    def prompt_batch(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Left-padded prompt ids and mask on the model's device."""
        ids, mask = pad(self.token_ids(prompts), self.pad_id, "left")
        return ids.to(self.device), mask.to(self.device)

    # ---- retrieval embeddings --------------------------------------------------------------------------
    def group_mean(self, q: Tensor) -> Tensor:
        """[n, H_q*d] query heads -> [n, H_kv*d], averaging the g heads that share each KV head."""
        r = self.runner
        return q.view(q.shape[0], r.n_kv, r.group, r.head_dim).mean(2).reshape(q.shape[0], -1)

    def bottom(self, ids: Tensor, mask: Tensor, offset: int, cache=None, count: bool = True):
        """Layers 0..b-1 over a batch -> (h, cos, sin, self_mask); positions start at `offset`."""
        pos = positions_from_mask(mask, offset)
        h = self.runner.embed(ids)
        cos, sin = self.runner.rope(h, pos)
        smask = self_attention_mask(mask, ids.shape[1])
        if cache is not None:
            cache.mask = mask
        h = self.runner.run(h, range(self.b), cos, sin, smask, cache=cache)
        if count:
            self.bottom_prompt_passes += ids.shape[0]
        return h, cos, sin, smask

    def _at_b(self, fn, h_last: Tensor) -> Tensor:
        """`fn(h_last)` on layer b's own modules (norm, q/k projections) as one step of that layer's unit in the
        training engine (under FSDP2 per-layer units its weights are gathered only inside such a step)."""
        return run_in(self.runner.layer(self.b), fn, h_last)

    def _passage_last(self, ids: Tensor, mask: Tensor) -> Tensor:
        """The residual stream entering layer b at each right-padded passage's last real token; with
        `pooling: mean`, at every token [n, T, D] (layer b-1 then runs on all of them)."""
        r, b, last = self.runner, self.b, last_index(mask)
        pos = positions_from_mask(mask)
        h = r.embed(ids)
        cos, sin = r.rope(h, pos)
        smask = self_attention_mask(mask, ids.shape[1])
        if self.cfg.pooling != "last":
            return r.run(h, range(b), cos, sin, smask)
        h = r.run(h, range(max(0, b - 1)), cos, sin, smask)
        if b == 0:
            return h[torch.arange(h.shape[0], device=h.device), last]

        def partial(x: Tensor) -> Tensor:  # layer b-1: keys/values of every token, attention + MLP for the last
            q, k, v = r.project(b - 1, x)
            return r.finish(b - 1, x, q, k, v, cos, sin, smask, keep=last)[:, 0]
        return run_in(r.layer(b - 1), partial, h)  # a unit of the training engine, as every layer step

    def _pooled(self, fn, h: Tensor, mask: Tensor) -> Tensor:
        """`fn` (layer b's norm, then a projection) of the pooled features: the last token's (h is [n, D]
        already) or the mean of the real tokens' normalised inputs (h [n, T, D])."""
        norm = self.runner.layer(self.b).input_layernorm
        if self.cfg.pooling == "last":
            return self._at_b(lambda x: fn(norm(x)), h)
        return self._at_b(lambda x: fn(pool_tokens(norm(x), mask.to(x.device), self.cfg.pooling)), h)

    def passage_features(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Layer b's normalised input (after input RMSNorm) at each right-padded passage's last real token (or
        its mean over the tokens, `pooling: mean`): E_p = k_proj(features)."""
        return self._pooled(lambda x: x, self._passage_last(ids, mask), mask)

    def passage_embeddings(self, ids: Tensor, mask: Tensor) -> Tensor:
        """E_p [n, H_kv*d]: pre-RoPE key at layer b of each (right-padded) passage's last real token."""
        return self._pooled(self.runner.layer(self.b).self_attn.k_proj, self._passage_last(ids, mask), mask)

    def _query_last(self, ids: Tensor, mask: Tensor, offset: int) -> Tensor:
        h, *_ = self.bottom(ids, mask, offset)
        return h[torch.arange(h.shape[0], device=h.device), last_index(mask)] if self.cfg.pooling == "last" else h

    def query_features(self, ids: Tensor, mask: Tensor, offset: int) -> Tensor:
        """Layer b's normalised input at each left-padded prompt's last real token (or its mean over the
        tokens, `pooling: mean`): E_q = group-mean q_proj(features)."""
        return self._pooled(lambda x: x, self._query_last(ids, mask, offset), mask)

    def query_embeddings(self, ids: Tensor, mask: Tensor, offset: int) -> Tensor:
        """E_q [n, H_kv*d]: group-averaged pre-RoPE query at layer b of each prompt's last real token."""
        q_proj = self.runner.layer(self.b).self_attn.q_proj
        return self._pooled(lambda x: self.group_mean(q_proj(x)), self._query_last(ids, mask, offset), mask)

    def pool_query_states(self, q: Tensor, mask: Tensor) -> Tensor:
        """E_q from layer b's q_proj states of a left-padded prompt batch [B, T, H_q*d] (inference's one pass):
        the configured pooling, then the GQA group mean."""
        return self.group_mean(pool_tokens(q, mask, self.cfg.pooling))

    @staticmethod
    def score(e_q: Tensor, e_p: Tensor) -> Tensor:
        """Retrieval scores s(q, p) = E_q . E_p: [n_q, d] x [n_p, d] -> [n_q, n_p]."""
        return e_q @ e_p.transpose(0, 1)

    @torch.no_grad()
    def embed_passages(self, texts: list[str], batch_size: int = 32, bf16: bool = False,
                       features: bool = False) -> np.ndarray:
        """Index vectors float32 [n, H_kv*d] (or, with `features`, the layer-b inputs [n, hidden] they are
        projected from); length-sorted batches; optional bf16 autocast."""
        toks = self.index_tokens(texts)
        fn = self.passage_features if features else self.passage_embeddings
        out = np.zeros((len(texts), self.lm.config.hidden_size if features else self.dim), dtype=np.float32)
        order = sorted(range(len(toks)), key=lambda i: len(toks[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            ids, mask = pad([toks[i] for i in idx], self.pad_id, "right")
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                e = fn(ids.to(self.device), mask.to(self.device))
            out[idx] = e.float().cpu().numpy()
        return out

    @torch.no_grad()
    def embed_queries(self, prompts: list[str], batch_size: int = 32, k: int | None = None, bf16: bool = False,
                      features: bool = False) -> np.ndarray:
        """Query vectors float32 [n, H_kv*d] (or, with `features`, the layer-b inputs [n, hidden]), prompts at
        positions k*l_max.. as in `generate`."""
        offset = (self.cfg.k if k is None else k) * self.cfg.l_max
        fn = self.query_features if features else self.query_embeddings
        parts = []
        for s in range(0, len(prompts), batch_size):
            ids, mask = self.prompt_batch(prompts[s:s + batch_size])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                parts.append(fn(ids, mask, offset).float().cpu().numpy())
        dim = self.lm.config.hidden_size if features else self.dim
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

    # ---- reading ---------------------------------------------------------------------------------------
    def encode_passages_kv(self, passages: list[list[str]]) -> PrefixKV | None:
        """The reading prefix: per example its passages' RoPE'd KV at layers b..t with a padding mask;
        `offset` = max(k, most passages of an example) * l_max, where the prompt's positions start, as at
        inference with k retrieved passages (so an example reads the same whatever its batch mates hold).
        None when no example has passages."""
        n_max = max((len(p) for p in passages), default=0)
        if n_max == 0:
            return None
        layers = range(self.b, self.t + 1)
        if self.cfg.passage_encoding == "concat":
            seqs = [sum(self.reading_tokens(p), []) for p in passages]
            ids, mask = pad(seqs, self.pad_id, "right")
            kv = self.runner.passage_kv(ids.to(self.device), mask.to(self.device), layers)
        else:
            flat = [s for p in passages for s in self.reading_tokens(p) + [[]] * (n_max - len(p))]
            ids, mask = pad(flat, self.pad_id, "right")
            kv = self.runner.passage_kv(ids.to(self.device), mask.to(self.device), layers)
            n, length = len(passages), ids.shape[1]

            def join(x: Tensor) -> Tensor:  # [n*k, H, L, d] -> [n, H, k*L, d]
                _, hh, _, d = x.shape
                return x.view(n, n_max, hh, length, d).permute(0, 2, 1, 3, 4).reshape(n, hh, n_max * length, d)
            kv = PrefixKV({i: join(x) for i, x in kv.keys.items()}, {i: join(x) for i, x in kv.values.items()},
                          kv.mask.view(n, n_max * length))
        kv.offset = max(n_max, self.cfg.k) * self.cfg.l_max
        return kv

    def forward_logits(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                       passages: list[list[str]] | PrefixKV | None = None,
                       position_ids: Tensor | None = None) -> Tensor:
        """Teacher-forcing logits [B, T, V] of (left-padded) inputs; with passages, layers b..t read them as
        prefix KV and positions start at k*l_max (unless `position_ids` is given)."""
        return self.runner.logits(self.forward_hidden(input_ids, attention_mask, passages, position_ids))

    def forward_hidden(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                       passages: list[list[str]] | PrefixKV | None = None,
                       position_ids: Tensor | None = None) -> Tensor:
        """`forward_logits` before the final norm and LM head: the last layer's hidden states [B, T, d]."""
        ids = input_ids.to(self.device)
        mask = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool().to(ids.device)
        prefix = passages if isinstance(passages, PrefixKV) or passages is None else self.encode_passages_kv(passages)
        offset = getattr(prefix, "offset", 0) if prefix is not None else 0
        pos = positions_from_mask(mask, offset) if position_ids is None else position_ids.to(ids.device)
        h = self.runner.embed(ids)
        cos, sin = self.runner.rope(h, pos)
        smask = self_attention_mask(mask, ids.shape[1])
        h = self.runner.run(h, range(self.b), cos, sin, smask)
        self.bottom_prompt_passes += ids.shape[0]
        return self.runner.run(h, range(self.b, self.n_layers), cos, sin, smask, prefix)

    def token_labels(self, prompts: list[list[int]], targets: list[list[int]]) -> tuple[Tensor, Tensor, Tensor]:
        """Left-padded ids, mask and labels (-100 but on target tokens predicted from a real token) of
        prompt + target id lists."""
        ids, mask = pad([p + t for p, t in zip(prompts, targets)], self.pad_id, "left")
        labels = torch.full_like(ids, -100)
        for i, t in enumerate(targets):
            if t:
                labels[i, ids.shape[1] - len(t):] = ids[i, ids.shape[1] - len(t):]
        labels[:, 1:][~mask[:, :-1]] = -100  # an empty prompt's first target token has nothing to predict it
        labels[:, 0] = -100
        return ids.to(self.device), mask.to(self.device), labels.to(self.device)

    def target_logliks(self, prompts: list[list[int]], targets: list[list[int]],
                       passages: list[list[str]] | PrefixKV | None = None) -> tuple[Tensor, int]:
        """(log P(target ids | prompt ids, passages) per example [B], number of target tokens scored), the LM
        head applied at target positions only (harness.training.losses.target_logliks)."""
        ids, mask, labels = self.token_labels(prompts, targets)
        return target_logliks(self.forward_hidden(ids, mask, passages), self.runner.logits, labels)

    def target_loglik(self, prompts: list[str], targets: list[str],
                      passages: list[list[str]] | PrefixKV | None = None) -> Tensor:
        """Sum of log P(target tokens | prompt, passages) per example [B] (targets appended as given: include
        the leading space). The quantity behind J_gen and the self-distillation targets P_T."""
        return self.target_logliks(self.token_ids(prompts), self.token_ids(targets), passages)[0]

    # ---- inference -----------------------------------------------------------------------------------------
    def generate(self, prompts: list[str], retrieve_fn=None, passage_text_fn=None, k: int | None = None,
                 max_new_tokens: int = 16, batch_size: int = 8, passages: list[list[str]] | None = None):
        """Two-stage ImpRAG inference, one forward pass per batch (see `imprag_bench.imprag.generate`).

        retrieve_fn(E_q: float32 [B, dim], k) -> list[list[str]]: ranked passage ids per prompt;
        passage_text_fn(ids: list[str]) -> list[str]: their texts. Without retrieve_fn: the plain LM, or
        reading only when `passages` (texts per prompt) is given. Returns a GenerationOutput (texts,
        retrieved ids, token ids, per-stage seconds)."""
        from imprag_bench.imprag.generate import generate

        return generate(self, prompts, retrieve_fn, passage_text_fn, k=self.cfg.k if k is None else k,
                        max_new_tokens=max_new_tokens, batch_size=batch_size, passages=passages)
