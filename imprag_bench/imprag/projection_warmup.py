"""Stage 0 of ImpRAG training on a CPU budget (not in the paper): fit layer b's q_proj/k_proj to the
pseudo-labels on frozen features, with every corpus passage as a negative, before the paper's warmup.

Why: the retrieval score is E_q . E_p = pool(W_q x_q) . (W_k x_p), where x is layer b's normalised input at
the last token. With the bottom layers frozen, x for all passages and training prompts can be computed once
(one pass, the cost of an index build) and W_q, W_k then trained with multi-label NCE (paper Eq. 3) against
the *whole corpus* in well under a minute per thousand steps. That removes the two things that kept the
joint CPU training from learning retrieval (docs/cpu-training.md): the handful of in-batch negatives
never contained the passages raw q.k scores favour for every query, and a few hundred steps of 8 queries
are too few. The paper's joint warmup and self-distillation then start from these projections and adapt
the whole model (the LM re-learns layer b's attention through J_gen).

The features are cached (keyed by the model, corpus and prompts) so that a resumed run, or another preset of
the same model, does not recompute them; the fitted weights go to `<out>/projection-warmup.safetensors`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from imprag_bench.harness.assets import log
from imprag_bench.harness.training import losses as L
from imprag_bench.imprag.model import ImpRAGModel


@dataclass
class ProjectionWarmupConfig:
    """Stage-0 settings; `steps` 0 switches the stage off (the paper's recipe)."""

    steps: int = 0
    lr: float = 3e-3  # the projections alone: a linear model, so a large step is stable (measured 1e-3/3e-3)
    batch_size: int = 64  # queries per step; every corpus passage is a negative of each
    seed: int = 0
    bf16: bool = True  # autocast for the feature pass only; the fit runs in fp32
    cosine: bool = False  # cosine lr decay to 0 over the steps (constant lr otherwise; dev recall oscillates
    # along a constant-lr fit, docs/cpu-training.md)


def projection_modules(model: ImpRAGModel) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Layer b's q_proj and k_proj: the only parameters stage 0 changes."""
    attn = model.runner.layer(model.b).self_attn
    return attn.q_proj, attn.k_proj


def features(model: ImpRAGModel, prompts: list[str], passages: list[str], offset_k: int, bf16: bool,
             cache_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer-b inputs (fp32) of the prompts' and passages' last tokens, from the current (frozen) weights;
    cached in `cache_dir` under a key of everything they depend on (shared by runs of the same model)."""
    key = hashlib.sha256(json.dumps([prompts, passages, offset_k, model.b, model.cfg.l_max, bf16,
                                     float(sum(p.detach().double().sum() for p in model.lm.parameters()))]).encode()).hexdigest()
    cache = None if cache_dir is None else Path(cache_dir) / f"features-{key[:20]}.pt"
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        if saved.get("key") == key:
            return saved["q"], saved["p"]
    log(f"stage 0: layer-{model.b} features of {len(prompts)} prompts and {len(passages)} passages")
    xq = model.embed_queries(prompts, 32, k=offset_k, bf16=bf16, features=True)
    xp = np.concatenate([model.embed_passages(passages[s:s + 1024], 64, bf16, features=True)
                         for s in tqdm(range(0, len(passages), 1024), desc="stage-0 passage features", unit="x1024")])
    xq, xp = torch.from_numpy(xq), torch.from_numpy(xp)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        torch.save({"key": key, "q": xq, "p": xp}, tmp)
        tmp.replace(cache)
    return xq, xp


def fit_projections(model: ImpRAGModel, xq: torch.Tensor, xp: torch.Tensor, positives: list[list[int]],
                    cfg: ProjectionWarmupConfig, scale: float) -> list[dict]:
    """Train q_proj/k_proj in place with multi-label NCE over all passages (rows of `xp`); `positives[i]` are
    the passage rows of query i (queries without positives are skipped). Returns the loss log."""
    q_proj, k_proj = projection_modules(model)
    params = [*q_proj.parameters(), *k_proj.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.steps)) if cfg.cosine else None
    usable = [i for i, p in enumerate(positives) if p]
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = next(q_proj.parameters()).device
    xq, xp = xq.to(dev), xp.to(dev)
    logs, order = [], []
    for step in tqdm(range(cfg.steps), desc="stage-0 projection fit", unit="step"):
        if len(order) < cfg.batch_size:
            order += [usable[j] for j in torch.randperm(len(usable), generator=gen).tolist()]
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        scores = model.score(model.group_mean(q_proj(xq[idx])), k_proj(xp))
        loss = L.corpus_nce(scores, [positives[i] for i in idx], scale=scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        logs.append({"step": step + 1, "loss": round(loss.item(), 5)})
    return logs


def run_stage0(model: ImpRAGModel, prompts: list[str], positive_ids: list[list[str]], corpus_ids: list[str],
               passage_texts: list[str], cfg: ProjectionWarmupConfig, out: Path, offset_k: int, scale: float,
               cache_dir: Path | None = None) -> None:
    """Stage 0 end to end, idempotent: loads `<out>/projection-warmup.safetensors` if it exists, else computes
    the features (cached in `cache_dir`), fits, and saves the projections and `<out>/projection-warmup-log.jsonl`."""
    from safetensors.torch import load_file, save_file

    if cfg.steps <= 0:
        return
    q_proj, k_proj = projection_modules(model)
    done = out / "projection-warmup.safetensors"
    if done.exists():
        state = load_file(str(done))
        q_proj.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("q.")})
        k_proj.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("k.")})
        return
    xq, xp = features(model, prompts, passage_texts, offset_k, cfg.bf16, cache_dir)
    row = {pid: j for j, pid in enumerate(corpus_ids)}
    logs = fit_projections(model, xq, xp, [[row[p] for p in ps if p in row] for ps in positive_ids], cfg, scale)
    (out / "projection-warmup-log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    state = {**{f"q.{k}": v.detach().contiguous() for k, v in q_proj.state_dict().items()},
             **{f"k.{k}": v.detach().contiguous() for k, v in k_proj.state_dict().items()}}
    tmp = out / "projection-warmup.tmp.safetensors"
    save_file(state, str(tmp))
    tmp.replace(done)
