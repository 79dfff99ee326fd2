"""Measuring tools of benchmarks/bench_train_memory.py: activation bytes of one training forward, per stream and
decoder layer, with and without activation checkpointing.

- `LiveBytes` (a TorchDispatchMode) records every tensor storage an op creates while it is active, labelled with
  (stream, layer): the stream is set by the caller ("gen.prompt", "ret.passages", ...), the layer by forward
  pre-hooks on each decoder layer's modules (`label_layers`; "-" for embeddings, rotary, final norm, lm_head).
  Storages are deduplicated (views count once) and held by weak reference, so `live()` after the forward is
  what the autograd graph (saved tensors, checkpoint inputs) and the outputs still hold: the activation memory
  of the step. `peak` is the largest live total seen at any op (forward, and backward when it runs inside),
  `at_peak` the live bytes by label at that moment and `grads_at_peak` the part of them that is parameter
  gradients (2-D tensors of a trainable weight's shape created in the backward: partial sums of a weight used by
  several forward calls wait in autograd's input buffer until its last use is back-propagated).
  Parameters and buffers are excluded. It works the same with checkpointing, where saved-tensor hooks do not
  see what a non-reentrant checkpoint keeps; `saved_bytes` (torch.autograd.graph.saved_tensors_hooks) is the
  cross-check without it.
- `CheckpointedRunner` / `CheckpointedImpRAG`: ImpRAG's LayerRunner with each decoder layer's step (prompt
  layers, passage-KV layers, the retrieval pass's partial layer b-1) wrapped in torch.utils.checkpoint
  (use_reentrant=False), as the FSDP2 engine checkpoints each decoder layer. The HF models use HF's own
  `activation_checkpointing_enable` (non-reentrant), which wraps each decoder layer.
- `IdsTokenizer`: "texts" are space-separated token ids, so the real model code (ImpRAGModel, LMSliceEncoder)
  runs on random ids of exact lengths with no tokenizer files.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.checkpoint import checkpoint

from imprag_bench.imprag.layers import LayerRunner, PrefixKV, positions_from_mask, self_attention_mask
from imprag_bench.imprag.model import ImpRAGModel, last_index

LABEL = {"stream": "-", "layer": "-"}  # what the hooks and the caller set; read at each allocation


class IdsTokenizer:
    """A stand-in tokenizer: each text is its token ids written as decimal numbers separated by spaces."""

    pad_token_id = eos_token_id = 0

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[int(x) for x in t.split()] for t in texts]}


def texts(gen: torch.Generator, vocab: int, n: int, length: int) -> list[str]:
    """n random token sequences of `length` ids (never the pad id 0), as IdsTokenizer texts."""
    ids = torch.randint(1, vocab, (n, length), generator=gen)
    return [" ".join(map(str, row.tolist())) for row in ids]


def label_layers(hf) -> None:
    """Forward pre-hooks: every module of decoder layer i sets LABEL["layer"] = i; the embeddings, rotary
    embedding, final norm, lm_head and the base model set "-" (fixed, per-stream costs)."""
    def setter(value):
        return lambda *_: LABEL.__setitem__("layer", value)
    for i, layer in enumerate(hf.model.layers):
        for mod in layer.modules():
            mod.register_forward_pre_hook(setter(i))
    for mod in (hf.model, hf.model.embed_tokens, hf.model.rotary_emb, hf.model.norm, hf.lm_head):
        mod.register_forward_pre_hook(setter("-"))


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages created while active and still alive, by (stream, layer) label."""

    def __init__(self, model):
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
        self.grad_shapes = {tuple(p.shape) for p in model.parameters() if p.requires_grad and p.dim() == 2}
        self.refs: dict[int, tuple[StorageWeakRef, int, tuple]] = {}
        self.peak, self.at_peak, self.grads_at_peak = 0, {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                ptr = st.data_ptr()
                if ptr == 0 or ptr in self.skip:
                    continue
                old = self.refs.get(ptr)
                if old is None or old[0].expired():
                    grad = LABEL["stream"] == "backward" and tuple(t.shape) in self.grad_shapes
                    self.refs[ptr] = (StorageWeakRef(st), st.nbytes(), (LABEL["stream"], LABEL["layer"]), grad)
        now = self.total()
        if now > self.peak:
            self.peak, self.at_peak = now, self.live()
            self.grads_at_peak = sum(r[1] for r in self.refs.values() if r[3])
        return out

    def total(self) -> int:
        """Live bytes now (expired entries are dropped)."""
        dead = [p for p, r in self.refs.items() if r[0].expired()]
        for p in dead:
            del self.refs[p]
        return sum(r[1] for r in self.refs.values())

    def live(self) -> dict[tuple, int]:
        """Live bytes by (stream, layer)."""
        self.total()
        out: dict[tuple, int] = {}
        for r in self.refs.values():
            out[r[2]] = out.get(r[2], 0) + r[1]
        return out


def saved_bytes(fn, skip: set[int]) -> tuple[object, int]:
    """(fn(), bytes of the tensors autograd saved for backward while it ran, deduplicated by storage, storages in
    `skip` (the parameters) left out). Sees nothing inside a non-reentrant checkpoint: the check without it."""
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def chunked_nll(h: torch.Tensor, targets: torch.Tensor, hf, chunk: int, norm: bool = True) -> torch.Tensor:
    """-sum log p(targets) from the hidden states at the predicting positions h [n, hidden]: final norm (unless
    already applied), lm_head and fp32 cross-entropy `chunk` positions at a time (never the batch's whole logits)."""
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk):
        x = hf.model.norm(h[s:s + chunk]) if norm else h[s:s + chunk]
        total = total + F.cross_entropy(hf.lm_head(x).float(), targets[s:s + chunk], reduction="sum")
    return total


class CheckpointedRunner(LayerRunner):
    """LayerRunner whose `run` and `passage_kv` checkpoint each decoder layer's step (non-reentrant)."""

    def run(self, h, layers, cos, sin, self_mask, prefix=None, cache=None, capture=None):
        if cache is not None or capture is not None:
            return super().run(h, layers, cos, sin, self_mask, prefix, cache, capture)
        rmask = self.read_mask(prefix, self_mask) if prefix is not None and prefix.keys else None
        for i in layers:
            reads = prefix is not None and i in prefix.keys

            def step(x, i=i, reads=reads):
                q, k, v = self.project(i, x)
                return self.finish(i, x, q, k, v, cos, sin, rmask if reads else self_mask, prefix)
            h = checkpoint(step, h, use_reentrant=False)
        return h

    def passage_kv(self, input_ids, mask, layers, position_ids=None):
        pos = positions_from_mask(mask) if position_ids is None else position_ids
        h = self.embed(input_ids)
        cos, sin = self.rope(h, pos)
        smask = self_attention_mask(mask, input_ids.shape[1])
        keys, values, last = {}, {}, layers.stop - 1
        for i in range(last + 1):
            def step(x, i=i):
                q, k, v = self.project(i, x)
                kv = self.rope_kv(k, v, cos, sin) if i in layers else None
                return (self.finish(i, x, q, k, v, cos, sin, smask) if i < last else None), kv
            nxt, kv = checkpoint(step, h, use_reentrant=False)
            if kv is not None:
                keys[i], values[i] = kv
            h = nxt
        return PrefixKV(keys, values, mask.bool())


class CheckpointedImpRAG(ImpRAGModel):
    """ImpRAGModel on a CheckpointedRunner; the retrieval pass's partial layer b-1 is checkpointed too."""

    def __init__(self, hf_model, tokenizer, config=None):
        super().__init__(hf_model, tokenizer, config)
        self.runner = CheckpointedRunner(hf_model)

    def passage_features(self, ids, mask):
        r, b, last = self.runner, self.b, last_index(mask)
        pos = positions_from_mask(mask)
        h = r.embed(ids)
        cos, sin = r.rope(h, pos)
        smask = self_attention_mask(mask, ids.shape[1])
        h = r.run(h, range(max(0, b - 1)), cos, sin, smask)
        if b == 0:
            h_last = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            def partial(x):
                q, k, v = r.project(b - 1, x)
                return r.finish(b - 1, x, q, k, v, cos, sin, smask, keep=last)[:, 0]
            h_last = checkpoint(partial, h, use_reentrant=False)
        return r.layer(b).input_layernorm(h_last)
