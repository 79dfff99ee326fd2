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
- `IdsTokenizer`: "texts" are space-separated token ids, so the real model code (ImpRAGModel, LMSliceEncoder)
  runs on random ids of exact lengths with no tokenizer files.
"""
from __future__ import annotations

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


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
