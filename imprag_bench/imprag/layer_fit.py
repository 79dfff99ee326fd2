"""Stage 0b of ImpRAG training on a CPU budget (not in the paper): train layer b-1 together with layer b's
q_proj/k_proj against the whole corpus, after stage 0's linear fit (imprag_bench.imprag.projection_warmup).

Why: stage 0 fits E_q . E_p = pool(W_q x_q) . (W_k x_p) on frozen layer-b inputs x, a bilinear model that
saturates (results/training/stage0-probe: ~33 seen recall@5, and it fits only a third of the training
questions' own pseudo-labels). The next cheapest capacity is the layer just below b: its output at the last
token is x. Its inputs (the output of layers 0..b-2 at every token) do not change while it trains, so they
are computed once for the corpus and the training prompts (`LayerInputs`, ~1 GB bf16 for 13,552 passages of
64 tokens), and one step then costs layer b-1's k/v projections over the batch's tokens plus its query,
attention and MLP at the last token only (`last_features`).

Every corpus passage stays a negative of every query, as in stage 0, with ANCE-style stale keys: all passages'
E_p are recomputed without gradient every `refresh_every` steps; each step recomputes with gradient the
batch's positives and `fresh` random passages (their columns replace the stale ones, and their new values
are written back). The loss is the multi-label NCE of Eq. 3 over the whole corpus.

Layer b-1 is also part of the reader's bottom group, so this moves what generation reads; joint stages after
it (J_gen) would adapt the rest of the model to it.

Measured (benchmarks/probe_stage0b.py, results/training/stage0-probe/session4.csv): it lowers the training
NCE from ~10 to ~6.6 in 600 steps but not seen-dev recall (32 at the start, 18-33 along the fit): more
capacity over-fits the 3,182 training questions. No preset uses it; it stays as the tested, measured
starting point for anyone with more training questions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from imprag_bench.imprag import losses as L
from imprag_bench.imprag.layers import positions_from_mask, self_attention_mask
from imprag_bench.imprag.model import ImpRAGModel, last_index, pad


@dataclass
class LayerFitConfig:
    """Stage-0b settings; `steps` 0 switches the stage off."""

    steps: int = 0
    lr: float = 1e-4  # layer b-1 (a pretrained layer: the small lr of fine-tuning)
    proj_lr: float = 1e-3  # layer b's input norm and q/k projections (already fitted by stage 0)
    batch_size: int = 64  # queries per step
    fresh: int = 256  # random passages recomputed with gradient per step, besides the batch's positives
    refresh_every: int = 100  # steps between full recomputes of the stale passage keys
    grad_clip: float = 1.0
    seed: int = 0
    bf16: bool = True  # autocast for every forward (the parameters and the optimiser stay fp32)


@dataclass
class LayerInputs:
    """The output of layers 0..b-2 at every token of a batch of sequences (the input of layer b-1), with
    the padding mask and RoPE positions the model used: enough to run layer b-1 again with new weights."""

    h: Tensor  # [n, T, hidden]
    mask: Tensor  # [n, T] 1 = real token
    pos: Tensor  # [n, T] positions

    def take(self, idx: Tensor | list[int]) -> LayerInputs:
        return LayerInputs(self.h[idx], self.mask[idx], self.pos[idx])

    def __len__(self) -> int:
        return self.h.shape[0]


def trainable_parameters(model: ImpRAGModel) -> tuple[list[Tensor], list[Tensor]]:
    """(layer b-1's parameters, layer b's input norm + q_proj + k_proj parameters)."""
    r, b = model.runner, model.b
    top = r.layer(b)
    return (list(r.layer(b - 1).parameters()),
            [*top.input_layernorm.parameters(), *top.self_attn.q_proj.parameters(),
             *top.self_attn.k_proj.parameters()])


@torch.no_grad()
def layer_inputs(model: ImpRAGModel, seqs: list[list[int]], side: str, offset: int = 0, batch_size: int = 64,
                 bf16: bool = True, dtype: torch.dtype = torch.bfloat16, desc: str = "layer inputs") -> LayerInputs:
    """Run layers 0..b-2 over token sequences (`side`: "right" padding for passages, "left" for prompts
    starting at position `offset`, as the model embeds each) and keep every token's hidden state (in `dtype`:
    bf16 halves the memory of the corpus's ~0.9M token states)."""
    if model.b < 1:
        raise ValueError("stage 0b trains layer b-1: it needs b >= 1")
    ids, mask = pad(seqs, model.pad_id, side)
    pos = positions_from_mask(mask, offset)
    r = model.runner
    h_all = torch.zeros(*ids.shape, model.lm.config.hidden_size, dtype=dtype)
    for s in tqdm(range(0, len(seqs), batch_size), desc=desc, unit=f"x{batch_size}"):
        i, m, p = (x[s:s + batch_size].to(model.device) for x in (ids, mask, pos))
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            h = r.embed(i)
            cos, sin = r.rope(h, p)
            h = r.run(h, range(model.b - 1), cos, sin, self_attention_mask(m, i.shape[1]))
        h_all[s:s + batch_size] = h.to(dtype).cpu()
    return LayerInputs(h_all, mask, pos)


def last_features(model: ImpRAGModel, x: LayerInputs) -> Tensor:
    """Layer b's normalised input at each sequence's last real token, from layer b-1's cached inputs:
    equals model.passage_features / query_features (up to bf16) with the current weights of layer b-1."""
    r, i, dev = model.runner, model.b - 1, model.device
    h, mask, pos = x.h.to(dev), x.mask.to(dev), x.pos.to(dev)
    h = h.to(next(r.layer(i).parameters()).dtype) if not torch.is_autocast_enabled(dev.type) else h
    last = last_index(mask)
    rows = torch.arange(h.shape[0], device=dev)
    layer = r.layer(i)
    xn = layer.input_layernorm(h)
    a = layer.self_attn
    q_last = a.q_proj(xn[rows, last])  # the query is needed at the last token only
    k, v = a.k_proj(xn), a.v_proj(xn)
    cos, sin = r.rope(h, pos)
    q = q_last[:, None].expand(-1, h.shape[1], -1)
    out = r.finish(i, h, q, k, v, cos, sin, self_attention_mask(mask, h.shape[1]), keep=last)[:, 0]
    return r.layer(model.b).input_layernorm(out)


def query_embeddings(model: ImpRAGModel, x: LayerInputs) -> Tensor:
    """E_q from cached layer-(b-1) inputs."""
    return model.group_mean(model.runner.layer(model.b).self_attn.q_proj(last_features(model, x)))


def passage_embeddings(model: ImpRAGModel, x: LayerInputs) -> Tensor:
    """E_p from cached layer-(b-1) inputs."""
    return model.runner.layer(model.b).self_attn.k_proj(last_features(model, x))


@torch.no_grad()
def embed_all(model: ImpRAGModel, x: LayerInputs, embed, batch_size: int = 512, bf16: bool = True) -> Tensor:
    """`embed` (query_embeddings or passage_embeddings) over all rows of `x`, fp32, no gradient."""
    out = []
    for s in range(0, len(x), batch_size):
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(embed(model, x.take(slice(s, s + batch_size))).float())
    return torch.cat(out)


def fit_layer(model: ImpRAGModel, xq: LayerInputs, xp: LayerInputs, positives: list[list[int]],
              cfg: LayerFitConfig, scale: float, callback=None) -> list[dict]:
    """Train layer b-1 and layer b's norm/q/k in place with multi-label NCE over every row of `xp`;
    `positives[i]` are the passage rows of query i (queries without any are skipped). `callback(step)` runs
    every `refresh_every` steps (e.g. a dev probe). Returns the loss log."""
    layer_params, proj_params = trainable_parameters(model)
    opt = torch.optim.AdamW([{"params": layer_params, "lr": cfg.lr}, {"params": proj_params, "lr": cfg.proj_lr}],
                            weight_decay=0.0)
    usable = [i for i, p in enumerate(positives) if p]
    gen = torch.Generator().manual_seed(cfg.seed)
    n_p, dev = len(xp), model.device
    amp = {"device_type": dev.type, "dtype": torch.bfloat16, "enabled": cfg.bf16}
    logs, order, stale = [], [], None
    for step in tqdm(range(cfg.steps), desc="stage-0b layer fit", unit="step"):
        if step % cfg.refresh_every == 0:
            if callback is not None:
                callback(step)
            stale = embed_all(model, xp, passage_embeddings, bf16=cfg.bf16).to(dev)
        if len(order) < cfg.batch_size:
            order += [usable[j] for j in torch.randperm(len(usable), generator=gen).tolist()]
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        rand = torch.randint(n_p, (cfg.fresh,), generator=gen).tolist()
        fresh = torch.tensor(sorted({*rand, *(j for i in idx for j in positives[i])}), device=dev)
        with torch.autocast(**amp):
            e_q = query_embeddings(model, xq.take(idx)).float()
            e_p = passage_embeddings(model, xp.take(fresh.cpu())).float()
        scores = (e_q @ stale.T).index_copy(1, fresh, e_q @ e_p.T)
        loss = L.corpus_nce(scores, [positives[i] for i in idx], scale=scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(layer_params + proj_params, cfg.grad_clip)
        opt.step()
        stale[fresh] = e_p.detach()
        logs.append({"step": step + 1, "loss": round(loss.item(), 5)})
    if callback is not None:
        callback(cfg.steps)
    return logs
