"""Stage 0 / refit of RA-DIT-Llama's retriever (a CPU-budget addition, as ImpRAG's): fit the slice copy's
layer-b q_proj/k_proj against the whole corpus on its frozen layer-b features.

The fit itself is the shared one (harness.training.projection_fit, the same as ImpRAG's stage 0): same
inputs (the retrieval items' prompts, one per question in id order, and their pseudo-positives; every corpus
passage as a candidate), same optimiser, batch, lr and seed, multi-label NCE (Eq. 3) at the recipe's score
scale. Only the features differ, as the retrievers do: the slice embeds the prompt alone from position 0
(`LMSliceEncoder.query_features`) where ImpRAG embeds it after k passages' positions.
"""
from __future__ import annotations

from pathlib import Path

import torch

from imprag_bench.harness.assets import log
from imprag_bench.harness.training import projection_fit as F
from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder


def slice_features(enc: LMSliceEncoder, prompts: list[str], passages: list[str], bf16: bool,
                   cache_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer-b inputs (fp32) of the prompts' and passages' last tokens from the slice's current weights,
    cached under a key of everything they depend on."""
    def compute():
        log(f"q/k fit (stage 0 or refit): slice layer-{enc.b} features of {len(prompts)} prompts and "
            f"{len(passages)} passages")
        return (torch.from_numpy(enc.encode_features(prompts, "query", 32, bf16)),
                torch.from_numpy(enc.encode_features(passages, "passage", 64, bf16)))
    key = ["lm-slice", prompts, passages, enc.b, enc.l_max, bf16, F.weights_sum(enc.hf)]
    return F.cached_features(key, compute, cache_dir)


def fit_slice(enc: LMSliceEncoder, items: list, corpus_ids: list[str], passage_texts: list[str],
              cfg: F.ProjectionFitConfig, work: Path, scale: float, cache_dir: Path | None = None) -> None:
    """Fit the slice's layer-b q_proj/k_proj in place (idempotent: `<work>/projection-warmup.safetensors` is
    loaded if present); only those two modules change."""
    prompts, positives = F.fit_inputs(items)
    Path(work).mkdir(parents=True, exist_ok=True)
    q_proj, k_proj = enc.projections
    F.run_fit(q_proj, k_proj, enc.group_mean,
              lambda: slice_features(enc, prompts, passage_texts, cfg.bf16, cache_dir),
              positives, corpus_ids, cfg, Path(work), scale)
