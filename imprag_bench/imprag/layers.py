"""Run the decoder layers of a HF Llama-family causal LM one by one, the way ImpRAG needs them.

HF's own forward runs all layers in one go with one kind of attention. ImpRAG cuts the stack into groups
(bottom 0..b, middle b..t, top t+1..N-1) and needs, between and inside them: explicit position ids (the
prompt starts at k*l_max), the pre-RoPE q/k projections of layer b (the retrieval embeddings), a pause
inside layer b (q/k/v are projected, retrieval happens, then the same layer's attention reads the passages),
passage KV read as a prefix in the same softmax as the prompt's causal self-attention, and a KV cache for
decoding. `LayerRunner` does this with the layer's own modules (input_layernorm, q/k/v/o_proj,
post_attention_layernorm, mlp), the model's `rotary_emb`, `model.norm` and `lm_head`, and SDPA with
explicit boolean masks. It adds no parameters. Works for LlamaForCausalLM, Qwen2 (q/k/v biases come with the
Linear modules) and Mistral; sliding-window attention is not applied, so Mistral/Qwen2 windows are exact only
while sequences are shorter than the window.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from imprag_bench.harness.training.engine import run_in


def rotate_half(x: Tensor) -> Tensor:
    """Swap the two halves of the last dim with a sign flip (the RoPE rotation, HF's layout)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate heads x [B, H, T, d] by the position embeddings cos/sin [B, T, d]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """[B, H_kv, T, d] -> [B, H_kv * n_rep, T, d]: each KV head serves its group of n_rep query heads."""
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


def positions_from_mask(mask: Tensor, offset: int = 0) -> Tensor:
    """Position ids for a (left- or right-) padded batch: real tokens count 0, 1, ... from `offset`;
    padding gets `offset` (it is masked everywhere, so its value does not matter). Same rule as HF generate."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0) + offset


def self_attention_mask(key_mask: Tensor, n_new: int) -> Tensor:
    """Boolean SDPA mask [B, 1, n_new, Tk] for the last `n_new` of Tk tokens attending causally to real
    (key_mask True) tokens. Every query also sees itself, so a padding query never has an empty row (its
    output is garbage but finite, and no real token ever reads it)."""
    tk = key_mask.shape[1]
    qi = torch.arange(n_new, device=key_mask.device)[:, None] + (tk - n_new)
    kj = torch.arange(tk, device=key_mask.device)[None, :]
    allowed = (kj <= qi)[None] & key_mask.bool()[:, None, :]
    allowed = allowed | (kj == qi)[None]
    return allowed[:, None]


@dataclass
class PrefixKV:
    """Passage keys (already RoPE'd at the passages' own positions) and values for each reading layer,
    read by the prompt tokens as a prefix in one softmax with their causal self-attention.

    keys/values: layer index -> [B, H_kv, P, d]; mask: [B, P] bool, True for real passage tokens;
    offset: the first position id after the passages (k*l_max), where the reading sequence starts.
    """

    keys: dict[int, Tensor]
    values: dict[int, Tensor]
    mask: Tensor
    offset: int = 0

    def __len__(self) -> int:
        return self.mask.shape[1]


@dataclass
class KVCache:
    """The sequence's own RoPE'd keys/values per layer plus the key padding mask [B, T_total], so that
    decoding runs one new token through every layer without recomputing the past."""

    keys: dict[int, Tensor] = field(default_factory=dict)
    values: dict[int, Tensor] = field(default_factory=dict)
    mask: Tensor | None = None


class LayerRunner:
    """Layer-by-layer forward of a HF Llama-family causal LM with prefix KV, caches and q/k capture.

    The same modules and weights as `hf_model`; gradients flow unless the caller disables them.
    """

    def __init__(self, hf_model):
        self.lm = hf_model
        self.base = hf_model.model
        cfg = hf_model.config
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.group = self.n_heads // self.n_kv
        qpas = getattr(cfg, "query_pre_attn_scalar", None)
        attn0 = self.base.layers[0].self_attn
        self.scale = qpas ** -0.5 if qpas else getattr(attn0, "scaling", self.head_dim ** -0.5)

    def layer(self, i: int):
        return self.base.layers[i]

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings [B, T, hidden]."""
        return self.base.embed_tokens(input_ids)

    def rope(self, h: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """cos/sin [B, T, d] of the model's rotary embedding at explicit positions."""
        return self.base.rotary_emb(h, position_ids)

    def logits(self, h: Tensor) -> Tensor:
        """Final norm + LM head."""
        return self.lm.lm_head(self.base.norm(h))

    def project(self, i: int, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Layer i's input_layernorm then q/k/v projections, pre-RoPE and flat: [B, T, H*d] each."""
        layer = self.layer(i)
        x = layer.input_layernorm(h)
        a = layer.self_attn
        return a.q_proj(x), a.k_proj(x), a.v_proj(x)

    def _heads(self, x: Tensor, n: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, n, self.head_dim).transpose(1, 2)

    def rope_kv(self, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        """Flat pre-RoPE k/v [B, T, H_kv*d] -> RoPE'd keys and values [B, H_kv, T, d]."""
        return apply_rope(self._heads(k, self.n_kv), cos, sin), self._heads(v, self.n_kv)

    def finish(self, i: int, h: Tensor, q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor,
               mask: Tensor, prefix: PrefixKV | None = None, cache: KVCache | None = None,
               keep: Tensor | None = None) -> Tensor:
        """The rest of layer i after `project`: RoPE, (cache append), attention over [prefix KV; self KV]
        in one softmax, o_proj, residual, post-attention norm + MLP, residual.

        mask: [B, 1, T, P + Tk] if this layer reads `prefix`, else [B, 1, T, Tk] (Tk includes cached tokens).
        keep: optional [B] query index per row; then only that token's output is computed -> [B, 1, hidden]
        (keys/values still cover every token), e.g. the last real token at the last layer one needs.
        """
        layer = self.layer(i)
        kh, vh = self.rope_kv(k, v, cos, sin)
        if keep is not None:
            rows = torch.arange(h.shape[0], device=h.device)
            h, q, mask = h[rows, keep][:, None], q[rows, keep][:, None], mask[rows, :, keep][:, :, None]
            cos, sin = cos[rows, keep][:, None], sin[rows, keep][:, None]
        qh = apply_rope(self._heads(q, self.n_heads), cos, sin)
        if cache is not None:
            if i in cache.keys:
                kh = torch.cat([cache.keys[i], kh], dim=2)
                vh = torch.cat([cache.values[i], vh], dim=2)
            cache.keys[i], cache.values[i] = kh, vh
        if prefix is not None and i in prefix.keys:
            kh = torch.cat([prefix.keys[i].to(kh.dtype), kh], dim=2)
            vh = torch.cat([prefix.values[i].to(vh.dtype), vh], dim=2)
        kh, vh = repeat_kv(kh, self.group), repeat_kv(vh, self.group)
        out = F.scaled_dot_product_attention(qh, kh.to(qh.dtype), vh.to(qh.dtype), attn_mask=mask, scale=self.scale)
        b, _, t, _ = out.shape
        h = h + layer.self_attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
        return h + layer.mlp(layer.post_attention_layernorm(h))

    @staticmethod
    def read_mask(prefix: PrefixKV, self_mask: Tensor) -> Tensor:
        """[prefix padding mask ; causal self mask] for a layer that reads the passages."""
        b, _, t, _ = self_mask.shape
        pm = prefix.mask.bool()[:, None, None, :].expand(b, 1, t, prefix.mask.shape[1])
        return torch.cat([pm, self_mask], dim=-1)

    def run(self, h: Tensor, layers: range, cos: Tensor, sin: Tensor, self_mask: Tensor,
            prefix: PrefixKV | None = None, cache: KVCache | None = None,
            capture: dict[int, tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """Run `layers` in order. Layers listed in `prefix.keys` read the passages; the others attend to
        the sequence itself only. Layers present in `capture` (a dict pre-filled with their indices as keys)
        get their pre-RoPE (q, k) projections stored there."""
        rmask = self.read_mask(prefix, self_mask) if prefix is not None and prefix.keys else None
        for i in layers:
            reads = prefix is not None and i in prefix.keys
            # one layer as one unit of the training engine (activation checkpointing recomputes it in backward)
            h, q, k = run_in(self.layer(i), self._layer_step, i, h, cos, sin, rmask if reads else self_mask,
                             prefix, cache)
            if capture is not None and i in capture:
                capture[i] = (q, k)
        return h

    def _layer_step(self, i: int, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, prefix, cache):
        q, k, v = self.project(i, h)
        return self.finish(i, h, q, k, v, cos, sin, mask, prefix, cache), q, k

    def _passage_step(self, i: int, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, keep_kv: bool):
        q, k, v = self.project(i, h)
        kh, vh = self.rope_kv(k, v, cos, sin) if keep_kv else (None, None)
        return self.finish(i, h, q, k, v, cos, sin, mask), kh, vh

    def passage_kv(self, input_ids: Tensor, mask: Tensor, layers: range, position_ids: Tensor | None = None
                   ) -> PrefixKV:
        """Encode (right-padded) passage sequences with causal attention through layers 0..max(layers) and
        keep the RoPE'd keys/values of `layers`. The last layer only projects k/v (its attention and MLP
        output would never be read)."""
        pos = positions_from_mask(mask) if position_ids is None else position_ids
        h = self.embed(input_ids)
        cos, sin = self.rope(h, pos)
        smask = self_attention_mask(mask, input_ids.shape[1])
        keys, values = {}, {}
        last = layers.stop - 1
        for i in range(last):
            h, kh, vh = run_in(self.layer(i), self._passage_step, i, h, cos, sin, smask, i in layers)
            if i in layers:
                keys[i], values[i] = kh, vh
        keys[last], values[last] = run_in(self.layer(last), self._kv_step, last, h, cos, sin)
        return PrefixKV(keys, values, mask.bool())

    def _kv_step(self, i: int, h: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        _, k, v = self.project(i, h)
        return self.rope_kv(k, v, cos, sin)

    def forward(self, input_ids: Tensor, mask: Tensor, position_ids: Tensor, prefix: PrefixKV | None = None,
                cache: KVCache | None = None) -> Tensor:
        """Whole-stack forward of new tokens -> logits [B, T, V]; with a cache, `mask` covers cached + new
        tokens and is stored as the cache's mask."""
        h = self.embed(input_ids)
        cos, sin = self.rope(h, position_ids)
        if cache is not None:
            cache.mask = mask
        h = self.run(h, range(self.n_layers), cos, sin, self_attention_mask(mask, input_ids.shape[1]), prefix, cache)
        return self.logits(h)
