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

The method-independent part (the fit, its idempotent save/load, the feature cache) is shared with
RA-DIT-Llama's slice retriever: harness.training.projection_fit. This module keeps ImpRAG's feature extraction
(ImpRAGModel.embed_queries / embed_passages with features=True, queries at the inference offset k * l_max).
The fitted weights go to `<out>/projection-warmup.safetensors`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from imprag_bench.harness.assets import log
from imprag_bench.harness.training import projection_fit as F
from imprag_bench.harness.training.projection_fit import ProjectionFitConfig as ProjectionWarmupConfig
from imprag_bench.imprag.model import ImpRAGModel

__all__ = ["ProjectionWarmupConfig", "projection_modules", "features", "fit_projections", "run_stage0"]


def projection_modules(model: ImpRAGModel) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Layer b's q_proj and k_proj: the only parameters stage 0 changes."""
    attn = model.runner.layer(model.b).self_attn
    return attn.q_proj, attn.k_proj


def features(model: ImpRAGModel, prompts: list[str], passages: list[str], offset_k: int, bf16: bool,
             cache_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer-b inputs (fp32) of the prompts' and passages' last tokens, from the current (frozen) weights;
    cached in `cache_dir` under a key of everything they depend on (shared by runs of the same model)."""
    def compute():
        log(f"q/k fit (stage 0 or refit): layer-{model.b} features of {len(prompts)} prompts and "
            f"{len(passages)} passages")
        xq = model.embed_queries(prompts, 32, k=offset_k, bf16=bf16, features=True)
        bar = tqdm(total=len(passages), desc="q/k fit: passage features", unit="passage", mininterval=2.0)
        parts = []
        for s in range(0, len(passages), 128):  # the bar moves every 128 passages (seconds, not minutes)
            parts.append(model.embed_passages(passages[s:s + 128], 64, bf16, features=True))
            bar.update(len(parts[-1]))
        bar.close()
        xp = np.concatenate(parts)
        return torch.from_numpy(xq), torch.from_numpy(xp)
    key = [prompts, passages, offset_k, model.b, model.cfg.l_max, bf16, F.weights_sum(model.lm)]
    return F.cached_features(key, compute, cache_dir)


def fit_projections(model: ImpRAGModel, xq: torch.Tensor, xp: torch.Tensor, positives: list[list[int]],
                    cfg: ProjectionWarmupConfig, scale: float) -> list[dict]:
    """Train layer b's q_proj/k_proj in place (harness.training.projection_fit.fit_projections with ImpRAG's
    GQA group mean as the query pooling). Returns the loss log."""
    return F.fit_projections(*projection_modules(model), model.group_mean, xq, xp, positives, cfg, scale)


def run_stage0(model: ImpRAGModel, prompts: list[str], positive_ids: list[list[str]], corpus_ids: list[str],
               passage_texts: list[str], cfg: ProjectionWarmupConfig, out: Path, offset_k: int, scale: float,
               cache_dir: Path | None = None) -> None:
    """Stage 0 end to end, idempotent (harness.training.projection_fit.run_fit): loads
    `<out>/projection-warmup.safetensors` if it exists, else computes the features (cached in `cache_dir`),
    fits, and saves the projections and `<out>/projection-warmup-log.jsonl`."""
    F.run_fit(*projection_modules(model), model.group_mean,
              lambda: features(model, prompts, passage_texts, offset_k, cfg.bf16, cache_dir),
              positive_ids, corpus_ids, cfg, Path(out), scale)
